"""Sentence embeddings of a sentence-transformers model (the real all-MiniLM-L6-v2): pooling and
normalisation inside the graph, ``encode()`` equal to ``SentenceTransformer.encode``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from optibridge import export
from optibridge.errors import InputError, UnsupportedModelError

SENTENCES = [
    "A man is eating food.", "Ok.", "The new movie is awesome, the actors were great and the music too.",
    "A cat sits on the mat", "Paris is the capital of France.",
]


@pytest.fixture(scope="module")
def sentence_artifact(minilm_path, tmp_path_factory):
    return export(minilm_path, tmp_path_factory.mktemp("st") / "artifact", task="sentence-similarity").artifact


@pytest.fixture(scope="module")
def reference(minilm_path):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(minilm_path), device="cpu")


def test_export_puts_pooling_in_the_graph_and_validates(sentence_artifact):
    meta = sentence_artifact.metadata
    assert meta.task == "sentence-similarity" and meta.validation["passed"]
    assert [o.name for o in meta.outputs] == ["token_embeddings", "sentence_embedding"]
    assert meta.outputs[1].shape[0] == "batch_size" and len(meta.outputs[1].shape) == 2
    assert meta.extra["max_seq_length"] == 256


def test_encode_matches_sentence_transformers(sentence_artifact, reference):
    from optibridge import OBModelForSentenceEmbedding

    model = OBModelForSentenceEmbedding.from_pretrained(sentence_artifact.path)
    want = reference.encode(SENTENCES, batch_size=2)
    got = model.encode(SENTENCES, batch_size=2)
    assert got.shape == want.shape == (5, 384)
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)  # the model's Normalize module ran
    single = model.encode("Ok.")
    np.testing.assert_allclose(single, want[1], atol=1e-4, rtol=0)
    # convert_to_numpy=False is a list of vectors in sentence-transformers; convert_to_tensor=True one matrix
    listed = model.encode(SENTENCES[:2], normalize_embeddings=True, convert_to_numpy=False)
    assert isinstance(listed, list) and len(listed) == 2 and all(isinstance(t, torch.Tensor) and t.shape == (384,) for t in listed)
    matrix = model.encode(SENTENCES, convert_to_tensor=True)
    assert isinstance(matrix, torch.Tensor) and matrix.shape == (5, 384)
    np.testing.assert_allclose(matrix.numpy(), reference.encode(SENTENCES, convert_to_tensor=True).numpy(), atol=1e-4, rtol=0)
    assert model.get_sentence_embedding_dimension() == reference.get_embedding_dimension() == 384


def test_encode_takes_sentence_transformers_arguments(sentence_artifact, reference):
    from optibridge import OBModelForSentenceEmbedding

    model = OBModelForSentenceEmbedding.from_pretrained(sentence_artifact.path)
    assert model.prompts == reference.prompts and model.similarity_fn_name == reference.similarity_fn_name == "cosine"
    same = dict(atol=1e-4, rtol=0)
    np.testing.assert_allclose(model.encode(SENTENCES, prompt="query: "), reference.encode(SENTENCES, prompt="query: "), **same)
    assert np.abs(model.encode(SENTENCES, prompt="query: ") - model.encode(SENTENCES)).max() > 1e-2  # the prompt was used
    prompts = {"search": "search_query: "}
    model.prompts, reference.prompts = dict(prompts), dict(prompts)
    np.testing.assert_allclose(model.encode(SENTENCES, prompt_name="search"), reference.encode(SENTENCES, prompt_name="search"), **same)
    with pytest.raises(InputError, match="prompt_name 'nope' is not one of this model's prompts: \\['search'\\]"):
        model.encode(SENTENCES, prompt_name="nope")
    # Matryoshka truncation happens after the model's own Normalize module, before normalize_embeddings
    for normalize in (False, True):
        got = model.encode(SENTENCES, truncate_dim=8, normalize_embeddings=normalize)
        np.testing.assert_allclose(got, reference.encode(SENTENCES, truncate_dim=8, normalize_embeddings=normalize), **same)
        assert got.shape == (5, 8)
    tokens, want = model.encode(SENTENCES, output_value="token_embeddings"), reference.encode(SENTENCES, output_value="token_embeddings")
    assert [t.shape for t in tokens] == [w.shape for w in want] and len({t.shape[0] for t in tokens}) > 1  # padding cut off
    for got, expected in zip(tokens, want):
        np.testing.assert_allclose(got.numpy(), expected.numpy(), **same)
    np.testing.assert_allclose(model.encode(inputs=SENTENCES[:2]), reference.encode(SENTENCES[:2]), **same)
    np.testing.assert_allclose(model.encode(SENTENCES, batch_size=2, show_progress_bar=True), reference.encode(SENTENCES), **same)
    assert model.encode([]).shape == (0,)


@pytest.mark.parametrize("name", ["cosine", "dot", "euclidean", "manhattan"])
def test_similarity_matches_sentence_transformers(sentence_artifact, reference, name):
    from optibridge import OBModelForSentenceEmbedding

    model = OBModelForSentenceEmbedding.from_pretrained(sentence_artifact.path)
    model.similarity_fn_name, reference.similarity_fn_name = name, name
    try:
        a, b = reference.encode(SENTENCES[:3], convert_to_tensor=True), reference.encode(SENTENCES[2:], convert_to_tensor=True)
        scores = model.similarity(a, b)
        assert scores.shape == (3, 3)
        torch.testing.assert_close(scores, reference.similarity(a, b), atol=1e-5, rtol=0)
        torch.testing.assert_close(model.similarity(a.numpy()[0], b.numpy()), reference.similarity(a[0], b), atol=1e-5, rtol=0)
        torch.testing.assert_close(model.similarity_pairwise(a, b), reference.similarity_pairwise(a, b), atol=1e-5, rtol=0)
    finally:
        reference.similarity_fn_name = "cosine"


def test_encode_refuses_what_it_would_not_honour(sentence_artifact):
    from optibridge import OBModelForSentenceEmbedding

    model = OBModelForSentenceEmbedding.from_pretrained(sentence_artifact.path)
    cases = [
        (dict(precision="int8"), "quantize_embeddings"),
        (dict(output_value=None), "output_value=None: choose one of sentence_embedding, token_embeddings"),
        (dict(pool={"processes": []}), "does not take: pool"),
        (dict(device="cuda"), "device='cuda': this model runs on cpu"),
        (dict(batch_size=0), "batch_size must be a positive integer"),
        (dict(truncate_dim=0), "truncate_dim must be a positive integer"),
    ]
    for kwargs, message in cases:
        with pytest.raises(InputError, match=message.replace("(", "\\(").replace("[", "\\[")):
            model.encode(SENTENCES, **kwargs)
    with pytest.raises(InputError, match="not both"):
        model.encode(SENTENCES, inputs=SENTENCES)
    with pytest.raises(InputError, match="similarity function 'jaccard' is not one of cosine, dot, euclidean, manhattan"):
        model.similarity_fn_name = "jaccard"


def test_prompt_settings_in_optibridge_json_are_read_as_untrusted(sentence_artifact, tmp_path):
    import json
    import shutil

    from optibridge import OBModelForSentenceEmbedding
    from optibridge.errors import ArtifactError

    meta = sentence_artifact.metadata.extra
    assert meta["prompts"] == {"query": "", "document": ""} and meta["include_prompt"] is True
    folder = tmp_path / "copy"
    shutil.copytree(sentence_artifact.path, folder)
    record = json.loads((folder / "optibridge.json").read_text())
    record["extra"].update(prompts={"ok": "q: ", "bad": ["not", "text"], "7": 7}, default_prompt_name="bad", include_prompt=False)
    (folder / "optibridge.json").write_text(json.dumps(record))
    model = OBModelForSentenceEmbedding.from_pretrained(folder)
    assert model.prompts == {"ok": "q: "} and model.default_prompt_name is None
    assert model.encode("Ok.").shape == (384,)  # no prompt: fine
    with pytest.raises(InputError, match="pooling leaves the prompt's tokens out"):
        model.encode("Ok.", prompt_name="ok")
    record["extra"]["similarity_fn_name"] = ["cosine"]
    (folder / "optibridge.json").write_text(json.dumps(record))
    with pytest.raises(ArtifactError, match="optibridge.json: similarity function \\['cosine'\\] is not one of"):
        OBModelForSentenceEmbedding.from_pretrained(folder)


def test_calling_the_model_returns_token_and_sentence_embeddings(sentence_artifact, reference):
    from optibridge import OBModelForSentenceEmbedding
    from optibridge.modeling.sentence import SentenceEmbeddingOutput

    model = OBModelForSentenceEmbedding.from_pretrained(sentence_artifact.path)
    batch = model.tokenizer(SENTENCES[:3], padding=True, return_tensors="pt")
    out = model(**batch)
    assert isinstance(out, SentenceEmbeddingOutput) and isinstance(out.sentence_embedding, torch.Tensor)
    assert out.token_embeddings.shape[:2] == batch["input_ids"].shape
    with torch.no_grad():
        want = reference(dict(batch))
    np.testing.assert_allclose(out.sentence_embedding.numpy(), want["sentence_embedding"].numpy(), atol=1e-4, rtol=0)


def test_a_folder_that_is_not_a_sentence_transformers_model_is_a_clear_error(tiny_model, tmp_path):
    # a plain transformers folder: sentence-transformers wraps it with mean pooling, as it does itself
    result = export(tiny_model("bert", "feature-extraction"), tmp_path / "out", task="sentence-embeddings")
    assert result.task == "sentence-similarity" and result.validation.passed
    with pytest.raises(UnsupportedModelError, match="task 'sentence-similarity' embeds text; vit is a vision model"):
        export(tiny_model("vit", "image-classification"), tmp_path / "vit", task="sentence-similarity")


@pytest.mark.parametrize("layout", ["artifact", "optimum folder"])
def test_custom_tasks_return_every_output_of_the_graph_by_name(layout, sentence_artifact, reference, tmp_path):
    """Optimum's ORTModelForCustomTasks use: a sentence-transformers graph (pooling inside) whose outputs no
    task class names, from an artifact or from a folder laid out as Optimum writes it."""
    from optimum_layout import write_optimum_folder
    from transformers import AutoTokenizer

    from optibridge.onnxruntime import ORTModelForCustomTasks
    from optibridge.openvino import OVModelForCustomTasks

    folder = sentence_artifact.path if layout == "artifact" else write_optimum_folder(sentence_artifact, tmp_path / "optimum")
    tokenizer = AutoTokenizer.from_pretrained(sentence_artifact.path)
    inputs = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    want = reference.encode(SENTENCES, convert_to_numpy=True)
    for cls in (ORTModelForCustomTasks, OVModelForCustomTasks):
        outputs = cls.from_pretrained(folder)(**inputs)
        assert list(outputs.keys()) == ["token_embeddings", "sentence_embedding"]
        assert outputs.token_embeddings.shape == (*inputs["input_ids"].shape, 384)
        np.testing.assert_allclose(outputs["sentence_embedding"].numpy(), want, atol=1e-4, rtol=0)
    with pytest.raises(InputError, match="unexpected input"):
        ORTModelForCustomTasks.from_pretrained(folder)(**inputs, pixel_values=torch.zeros(1))


def test_ov_sentence_transformer_as_optimum_intel_writes_it(minilm_path, reference):
    """optimum-intel's OVSentenceTransformer: export on load, encode(), and the module call
    model(model.tokenize(texts)) of sentence-transformers, all equal to SentenceTransformer."""
    from optibridge.openvino import OVSentenceTransformer

    model = OVSentenceTransformer.from_pretrained(minilm_path, export=True)
    assert model.backend == "openvino" and model.artifact.metadata.task == "sentence-similarity"
    want = reference.encode(SENTENCES, convert_to_numpy=True)
    np.testing.assert_allclose(model.encode(SENTENCES), want, atol=1e-4, rtol=0)
    features = model.tokenize(SENTENCES)
    theirs = reference.tokenize(SENTENCES)  # may carry metadata besides the tensors (modality)
    assert features.keys() == {name for name, value in theirs.items() if isinstance(value, torch.Tensor)}
    for name in features:
        assert torch.equal(features[name], theirs[name])
    for given in (features, theirs):
        out = model(given)
        assert list(out.keys()) == ["token_embeddings", "sentence_embedding"]
        np.testing.assert_allclose(out["sentence_embedding"].numpy(), want, atol=1e-4, rtol=0)
    pairs = [("A man is eating food.", "Ok."), ("Paris", "is the capital of France.")]
    assert torch.equal(model.tokenize(pairs)["input_ids"], reference.tokenize(pairs)["input_ids"])
    with pytest.raises(InputError, match="tokenize\\(\\) takes strings or"):
        model.tokenize([1, 2])
