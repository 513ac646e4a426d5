"""Sentence embeddings of a sentence-transformers model (the real all-MiniLM-L6-v2): pooling and
normalisation inside the graph, ``encode()`` equal to ``SentenceTransformer.encode``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from optibridge import export
from optibridge.errors import UnsupportedModelError

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
    normalized = model.encode(SENTENCES[:2], normalize_embeddings=True, convert_to_numpy=False)
    assert isinstance(normalized, torch.Tensor) and normalized.shape == (2, 384)


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
