"""A decoder LM that takes images (llava) exported for image-text-to-text: the vision graph and the
decoder that merges its rows into the placeholder tokens, generating token-identically to
``LlavaForConditionalGeneration.generate`` with the same images."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest
import torch
import transformers

from optibridge.artifact import Artifact
from optibridge.cli import main
from optibridge.errors import ArtifactError, InputError
from tiny_vision import build_tiny_captioner, build_tiny_llava

PROMPT = 6  # text tokens after the image placeholders
NEW = 10


@pytest.fixture(scope="module")
def llava(tmp_path_factory):
    root = tmp_path_factory.mktemp("visual-lm")
    source = build_tiny_llava(root / "src")
    assert main(["export", "--model", str(source), str(root / "onnx")]) == 0  # task inferred from LlavaForConditionalGeneration
    return source, Artifact.load(root / "onnx")


@pytest.fixture(scope="module")
def reference(llava):
    return transformers.LlavaForConditionalGeneration.from_pretrained(llava[0]).eval()


def prompt_with_images(artifact, seed=1):
    """Two rows (the second left-padded by 3), each one image's placeholders then text, as a processor builds them."""
    tokens = artifact.metadata.extra["image_tokens"]
    per_image, token_id, size = tokens["per_image"], tokens["token_id"], tokens["image_size"]
    ids = torch.randint(5, 500, (2, per_image + PROMPT), generator=torch.Generator().manual_seed(seed))
    mask = torch.ones_like(ids)
    mask[1, :3] = 0
    ids[0, :per_image] = token_id
    ids[1, 3:3 + per_image] = token_id
    pixels = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(seed + 1))
    return dict(input_ids=ids, attention_mask=mask, pixel_values=pixels)


GREEDY = dict(max_new_tokens=NEW, min_new_tokens=NEW, do_sample=False, output_scores=True, return_dict_in_generate=True)


def test_artifact_has_the_vision_graph_and_the_image_decoder(llava, capsys):
    _, artifact = llava
    meta = artifact.metadata
    assert meta.task == "image-text-to-text" and meta.model_type == "llava" and meta.validation["passed"] and meta.exporter == "torchscript"
    assert set(meta.graphs) == {"model", "vision_embeddings"}
    assert meta.graphs["vision_embeddings"].input_names == ["pixel_values"]
    assert [s.name for s in meta.inputs][:4] == ["input_ids", "attention_mask", "position_ids", "image_features"]
    checked = [o["name"] for o in meta.validation["outputs"]]
    assert any("image_features" in name for name in checked) and any("images" in name for name in checked)
    tokens = meta.extra["image_tokens"]
    assert tokens["per_image"] == (32 // 8) ** 2 and tokens["width"] == 32  # CLIP's patches without the class token; llama's width
    assert main(["info", str(artifact.path)]) == 0
    assert "images: 16 placeholder tokens (id 538) per 32x32 image, filled by the vision_embeddings graph" in capsys.readouterr().out


@pytest.mark.parametrize("backend, options", [("ort", {}), ("openvino", {}), ("openvino", {"stateful": True})],
                         ids=["ort", "openvino", "openvino-stateful"])
def test_generate_with_images_matches_llava(llava, reference, backend, options):
    from optibridge import OBModelForVisualCausalLM
    from optibridge.backend import is_stateful

    _, artifact = llava
    inputs = prompt_with_images(artifact)
    want = reference.generate(**inputs, **GREEDY)
    model = OBModelForVisualCausalLM.from_pretrained(artifact.path, backend=backend, **options)
    assert is_stateful(model.session) == bool(options.get("stateful"))
    got = model.generate(**inputs, **GREEDY)
    assert torch.equal(got.sequences, want.sequences) and len(set(want.sequences[:, -NEW:].flatten().tolist())) > 5
    torch.testing.assert_close(torch.stack(got.scores), torch.stack(want.scores), atol=1e-4, rtol=0)
    # the images matter: other pixels, other tokens (on both sides)
    other = {**inputs, "pixel_values": torch.randn(inputs["pixel_values"].shape, generator=torch.Generator().manual_seed(9))}
    want_other = reference.generate(**other, **GREEDY).sequences
    assert not torch.equal(want_other, want.sequences)
    assert torch.equal(model.generate(**other, **GREEDY).sequences, want_other)


@pytest.mark.parametrize("backend, options", [("ort", {}), ("openvino", {"stateful": True})], ids=["ort", "openvino-stateful"])
def test_beam_search_over_two_images_in_one_prompt_matches_llava(llava, reference, backend, options):
    """Beams repeat each row with its images (not image by image); the reference's first beam token is the
    placeholder id itself, which after the prompt keeps its embedding."""
    from optibridge import OBModelForVisualCausalLM

    tokens = llava[1].metadata.extra["image_tokens"]
    per_image, token_id = tokens["per_image"], tokens["token_id"]
    ids = torch.randint(5, 500, (1, 2 * per_image + 5), generator=torch.Generator().manual_seed(3))
    ids[0, 1:1 + per_image] = token_id
    ids[0, 2 + per_image:2 + 2 * per_image] = token_id
    pixels = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    kwargs = dict(input_ids=ids, attention_mask=torch.ones_like(ids), pixel_values=pixels, max_new_tokens=8, do_sample=False,
                  num_beams=3, num_return_sequences=2)
    want = reference.generate(**kwargs)
    assert (want[:, ids.shape[1]:] == token_id).any()  # the case this covers
    got = OBModelForVisualCausalLM.from_pretrained(llava[1].path, backend=backend, **options).generate(**kwargs)
    assert torch.equal(got, want)


def test_the_artifacts_processor_and_pipeline_drive_it(llava, reference):
    """The artifact keeps the LlavaProcessor (it expands each <image> into the placeholders): only the import changes."""
    from PIL import Image

    from optibridge import OBModelForVisualCausalLM

    processor = transformers.AutoProcessor.from_pretrained(llava[1].path)
    assert type(processor).__name__ == "LlavaProcessor"
    images = [Image.fromarray(np.random.default_rng(i).integers(0, 256, (40 + 8 * i, 50, 3), dtype=np.uint8)) for i in range(2)]
    inputs = processor(images=images, text=["<image> describe this", "<image> what is it here now"], return_tensors="pt", padding=True)
    model = OBModelForVisualCausalLM.from_pretrained(llava[1].path)
    want = reference.generate(**inputs, max_new_tokens=8, do_sample=False)
    assert torch.equal(model.generate(**inputs, max_new_tokens=8, do_sample=False), want)
    pipe = transformers.pipeline("image-text-to-text", model=model, processor=processor)
    text = pipe(images=images[0], text="<image> describe this", max_new_tokens=5)[0]["generated_text"]
    alone = processor(images=images[:1], text=["<image> describe this"], return_tensors="pt")
    expected = processor.batch_decode(reference.generate(**alone, max_new_tokens=5, do_sample=False)[:, alone["input_ids"].shape[1]:])[0]
    assert text.startswith("<image> describe this") and text.endswith(expected) and expected.strip()


def test_optimum_intel_name_loads_it(llava, reference):
    from optibridge.openvino import OVModelForVisualCausalLM

    _, artifact = llava
    inputs = prompt_with_images(artifact, seed=4)
    model = OVModelForVisualCausalLM.from_pretrained(artifact.path)
    want = reference.generate(**inputs, max_new_tokens=4, do_sample=False)
    assert torch.equal(model.generate(**inputs, max_new_tokens=4, do_sample=False), want)


def test_image_inputs_that_do_not_fit_the_prompt_are_errors(llava):
    from optibridge import OBModelForVisualCausalLM

    _, artifact = llava
    model = OBModelForVisualCausalLM.from_pretrained(artifact.path)
    inputs = prompt_with_images(artifact)
    per_image = artifact.metadata.extra["image_tokens"]["per_image"]
    with pytest.raises(InputError, match=f"input_ids hold {2 * per_image} image placeholder token\\(s\\) but 1 image\\(s\\) give {per_image} feature rows"):
        model.generate(**{**inputs, "pixel_values": inputs["pixel_values"][:1]}, max_new_tokens=2)
    with pytest.raises(InputError, match="but no pixel_values were given"):
        model.generate(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], max_new_tokens=2)
    text_only = torch.randint(5, 500, (1, 6))
    with pytest.raises(InputError, match="pixel_values were given but input_ids hold no image placeholder token"):
        model.generate(input_ids=text_only, pixel_values=inputs["pixel_values"][:1], max_new_tokens=2)
    with pytest.raises(InputError, match=r"pixel_values: expected floats of shape \(images, 3, 32, 32\), got float32 \(2, 3, 48, 48\)"):
        model.generate(**{**inputs, "pixel_values": torch.zeros(2, 3, 48, 48)}, max_new_tokens=2)
    with pytest.raises(InputError, match="image_sizes: not supported"):
        model.generate(**inputs, image_sizes=torch.tensor([[32, 32], [32, 32]]), max_new_tokens=2)
    # text alone runs: no placeholders, no pixels
    assert model.generate(input_ids=text_only, max_new_tokens=3, do_sample=False).shape == (1, 9)


@pytest.mark.parametrize("value", [10**9, "16", -1, None])
def test_a_tampered_image_record_is_refused_at_load(llava, tmp_path, value):
    from optibridge import OBModelForVisualCausalLM

    copy = tmp_path / "copy"
    shutil.copytree(llava[1].path, copy)
    meta = json.loads((copy / "optibridge.json").read_text())
    meta["extra"]["image_tokens"]["per_image"] = value
    (copy / "optibridge.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="extra.image_tokens.per_image must be an integer in 1..65536"):
        OBModelForVisualCausalLM.from_pretrained(copy)


def test_dynamic_int8_quantizes_both_graphs_and_still_takes_images(llava, tmp_path):
    from optibridge import OBModelForVisualCausalLM

    _, artifact = llava
    out = tmp_path / "int8"
    assert main(["quantize", str(artifact.path), "--mode", "dynamic", str(out)]) == 0
    quantized = Artifact.load(out)
    for graph in ("model", "vision_embeddings"):
        ops = {n.op_type for n in onnx.load(str(quantized.graph_path(graph)), load_external_data=False).graph.node}
        assert "MatMulInteger" in ops, graph
    inputs = prompt_with_images(quantized)
    model = OBModelForVisualCausalLM.from_pretrained(out)
    features = model.image_features(inputs["pixel_values"])
    float_features = OBModelForVisualCausalLM.from_pretrained(artifact.path).image_features(inputs["pixel_values"])
    cosine = (features * float_features).sum(-1) / np.linalg.norm(features, axis=-1) / np.linalg.norm(float_features, axis=-1)
    assert features.shape == float_features.shape and 0.99 < cosine.min() < 1.0 - 1e-7
    assert model.generate(**inputs, max_new_tokens=4, do_sample=False).shape == (2, inputs["input_ids"].shape[1] + 4)


def test_captioners_and_text_only_exports_are_pointed_to_their_task(llava, tmp_path, capsys):
    captioner = build_tiny_captioner(tmp_path / "captioner")
    assert main(["export", "--model", str(captioner), "--task", "image-text-to-text", str(tmp_path / "unused")]) != 0
    assert "export it with --task image-to-text" in capsys.readouterr().err
    assert main(["export", "--model", str(llava[0]), "--task", "image-to-text", str(tmp_path / "unused2")]) != 0
    assert "export it with --task image-text-to-text" in capsys.readouterr().err


def test_optibridge_run_asks_every_image_the_prompt(llava, reference, tmp_path):
    """`optibridge run` on image-text-to-text: each row names an image; the answer is what the PyTorch model
    generates for that image and the run's prompt (the image's placeholder put first)."""
    import pyarrow.parquet as pq
    from PIL import Image

    from optibridge.batch import run_file

    images = [Image.fromarray(np.random.default_rng(i).integers(0, 256, (40 + 8 * i, 50, 3), dtype=np.uint8)) for i in range(3)]
    for i, image in enumerate(images):
        image.save(tmp_path / f"{i}.png")
    (tmp_path / "list.txt").write_text("0.png\n1.png\n2.png\n")
    result = run_file(llava[1].path, tmp_path / "list.txt", tmp_path / "answers.parquet", batch_size=2, max_new_tokens=6,
                      prompt="what is in the picture?")
    rows = pq.read_table(tmp_path / "answers.parquet").to_pylist()
    assert result.rows == 3 and [row["error"] for row in rows] == [None] * 3
    processor = transformers.AutoProcessor.from_pretrained(llava[1].path)
    for image, row in zip(images, rows):
        alone = processor(images=[image], text=["<image>\nwhat is in the picture?"], return_tensors="pt")
        want = reference.generate(**alone, max_new_tokens=6, do_sample=False)[:, alone["input_ids"].shape[1]:]
        expected = processor.batch_decode(want, skip_special_tokens=True)[0].strip()
        assert row["generated_text"] == expected and expected
    assert len({row["generated_text"] for row in rows}) > 1  # the images matter
    with pytest.raises(InputError, match="the prompt is empty"):
        run_file(llava[1].path, tmp_path / "list.txt", tmp_path / "unused.parquet", prompt="  ")


def test_bench_prompts_hold_an_image(llava):
    """bench's prompts for a visual LM: one image's placeholders, then the text, with the image's pixels (a whole
    bench run with images is below, on llava-next, whose prompts also carry image_sizes)."""
    from optibridge.bench.measure import prompt_inputs

    _, artifact = llava
    prompt = prompt_inputs(artifact, 2, 5, variant=1)
    per_image, token_id = artifact.metadata.extra["image_tokens"]["per_image"], artifact.metadata.extra["image_tokens"]["token_id"]
    assert prompt["input_ids"].shape == (2, per_image + 5) and prompt["pixel_values"].shape == (2, 3, 32, 32)
    assert ((prompt["input_ids"] == token_id).sum(axis=1) == per_image).all()
    assert (prompt["input_ids"][:, per_image:] != token_id).all()


def test_a_model_whose_images_need_more_than_their_sizes_is_refused_by_name(tmp_path, capsys):
    """llava-next-video also takes videos: not handled, and said so before anything is written."""
    text = transformers.LlamaConfig(vocab_size=99, hidden_size=32, intermediate_size=40, num_hidden_layers=1, num_attention_heads=4,
                                    num_key_value_heads=2, max_position_embeddings=128)
    vision = transformers.CLIPVisionConfig(hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=4,
                                           image_size=32, patch_size=8, projection_dim=32)
    config = transformers.LlavaNextVideoConfig(vision_config=vision.to_dict(), text_config=text.to_dict(), image_token_index=98,
                                               video_token_index=97, image_grid_pinpoints=[[32, 32], [32, 64]])
    config.architectures = ["LlavaNextVideoForConditionalGeneration"]
    transformers.LlavaNextVideoForConditionalGeneration(config).save_pretrained(tmp_path / "video")
    assert main(["export", "--model", str(tmp_path / "video"), "--task", "image-text-to-text", str(tmp_path / "out")]) != 0
    err = capsys.readouterr().err
    assert "llava_next_video: its images need image_sizes besides the pixels" in err and "--task text-generation" in err
    assert not (tmp_path / "out").exists()


def test_preprocess_inputs_as_optimum_intel_offers_it(llava, reference):
    from PIL import Image

    from optibridge.openvino import OVModelForVisualCausalLM

    processor = transformers.AutoProcessor.from_pretrained(llava[1].path)
    image = Image.fromarray(np.random.default_rng(7).integers(0, 256, (40, 50, 3), dtype=np.uint8))
    model = OVModelForVisualCausalLM.from_pretrained(llava[1].path)
    inputs = model.preprocess_inputs(text="what is it?", image=image, processor=processor)
    per_image = llava[1].metadata.extra["image_tokens"]["per_image"]
    assert int((inputs["input_ids"] == llava[1].metadata.extra["image_tokens"]["token_id"]).sum()) == per_image
    assert torch.equal(inputs["input_ids"], processor(images=image, text="<image>\nwhat is it?", return_tensors="pt")["input_ids"])
    want = reference.generate(**inputs, max_new_tokens=5, do_sample=False)
    assert torch.equal(model.generate(**inputs, max_new_tokens=5, do_sample=False), want)
    # a processor with a chat template: the prompt goes through it, the image where the template puts it
    processor.chat_template = ("{% for m in messages %}USER: {% for c in m['content'] %}{% if c['type'] == 'image' %}<image>\n"
                               "{% else %}{{ c['text'] }}{% endif %}{% endfor %}{% endfor %} ASSISTANT:")
    templated = model.preprocess_inputs(text="what is it?", image=image, processor=processor)
    expected = processor(images=image, text="USER: <image>\nwhat is it? ASSISTANT:", return_tensors="pt")["input_ids"]
    assert torch.equal(templated["input_ids"], expected) and not torch.equal(expected, inputs["input_ids"])
    with pytest.raises(InputError, match="needs the model's processor"):
        model.preprocess_inputs(text="what is it?", image=image)
    with pytest.raises(InputError, match="video inputs are not supported"):
        model.preprocess_inputs(text="what is it?", video=[image], processor=processor)


# -- llava-next: each image tiled by its size, packed by the model class's own code ------------------------

@pytest.fixture(scope="module")
def llava_next(tmp_path_factory):
    from tiny_vision import build_tiny_llava_next

    root = tmp_path_factory.mktemp("llava-next")
    source = build_tiny_llava_next(root / "src")
    assert main(["export", "--model", str(source), str(root / "onnx")]) == 0
    return source, Artifact.load(root / "onnx"), transformers.LlavaNextForConditionalGeneration.from_pretrained(source).eval()


def next_images():
    from PIL import Image

    # (height, width) 40x50 and 100x50: different grids, so different numbers of tiles and of placeholder tokens
    return [Image.fromarray(np.random.default_rng(i).integers(0, 256, (40 + 60 * i, 50, 3), dtype=np.uint8)) for i in range(2)]


def test_llava_next_artifact_tiles_images_by_size(llava_next, capsys):
    _, artifact, _ = llava_next
    meta = artifact.metadata
    assert meta.task == "image-text-to-text" and meta.validation["passed"] and meta.extra["image_tokens"]["packing"] == "anyres"
    assert meta.exporter == "torchscript"  # the fast path held (its constant newline output once fell back to dynamo)
    assert main(["info", str(artifact.path)]) == 0
    assert "images: 16 placeholder tokens (id 538) per 32x32 tile (each image tiled by its size, then packed)" in capsys.readouterr().out
    assert meta.graphs["vision_embeddings"].output_names == ["image_features", "image_newline"]
    processor = transformers.AutoProcessor.from_pretrained(artifact.path)
    inputs = processor(images=next_images(), text=["<image> describe this", "<image> what"], return_tensors="pt", padding=True)
    counts = (inputs["input_ids"] == meta.extra["image_tokens"]["token_id"]).sum(dim=1).tolist()
    assert counts[0] != counts[1] and inputs["pixel_values"].ndim == 5  # the case: two tilings, padded tiles


@pytest.mark.parametrize("backend, options", [("ort", {}), ("openvino", {"stateful": True})], ids=["ort", "openvino-stateful"])
def test_llava_next_generates_as_pytorch_from_its_processor(llava_next, backend, options):
    from optibridge import OBModelForVisualCausalLM

    _, artifact, reference = llava_next
    processor = transformers.AutoProcessor.from_pretrained(artifact.path)
    inputs = processor(images=next_images(), text=["<image> describe this", "<image> what"], return_tensors="pt", padding=True)
    want = reference.generate(**inputs, **GREEDY)
    model = OBModelForVisualCausalLM.from_pretrained(artifact.path, backend=backend, **options)
    got = model.generate(**inputs, **GREEDY)
    assert torch.equal(got.sequences, want.sequences) and len(set(want.sequences[:, -NEW:].flatten().tolist())) > 5
    torch.testing.assert_close(torch.stack(got.scores), torch.stack(want.scores), atol=1e-4, rtol=0)
    with pytest.raises(InputError, match="image_sizes: required with pixel_values for this model"):
        model.generate(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], pixel_values=inputs["pixel_values"],
                       max_new_tokens=2)


def test_llava_next_beams_keep_two_differently_tiled_images_with_their_prompt(llava_next):
    from optibridge import OBModelForVisualCausalLM

    _, artifact, reference = llava_next
    processor = transformers.AutoProcessor.from_pretrained(artifact.path)
    images = next_images()
    inputs = processor(images=[images[1], images[0], images[0]], text=["<image> and <image> compare", "<image> what"],
                       return_tensors="pt", padding=True)
    kwargs = dict(**inputs, max_new_tokens=6, do_sample=False, num_beams=3, num_return_sequences=2)
    want = reference.generate(**kwargs)
    assert torch.equal(OBModelForVisualCausalLM.from_pretrained(artifact.path).generate(**kwargs), want)


def test_llava_next_also_exports_its_language_model_alone(llava_next, tmp_path):
    source, _, _ = llava_next
    assert main(["export", "--model", str(source), "--task", "text-generation", str(tmp_path / "text")]) == 0
    meta = Artifact.load(tmp_path / "text").metadata
    assert meta.validation["passed"] and meta.extra["text_only"]["source_model_type"] == "llava_next" and "image_tokens" not in meta.extra


def test_bench_on_llava_next_gives_each_prompt_a_tiled_image(llava_next, tmp_path):
    """The cell's accuracy is against the PyTorch model given the same image (a candidate that dropped the
    image measured cosine -0.32 on llava, checked by hand)."""
    from optibridge.bench import load_run

    _, artifact, _ = llava_next
    code = main(["bench", "--model", str(artifact.path), "--configs", "ort:fp32", "--batch-sizes", "1", "--seq-lens", "4",
                 "--warmup", "1", "--runs", "2", "--no-progress", "--out", str(tmp_path / "b")])
    assert code == 0
    ort = {c.name: c for c in load_run(tmp_path / "b" / "results.json").cells}["ort:fp32"]
    assert ort.ok, ort.reason
    assert ort.accuracy.cosine > 0.9999 and "image_sizes" in ort.accuracy.input_shapes


def test_bench_refuses_an_image_record_that_would_draw_gigabytes(llava, tmp_path):
    """The image size and channels come from the artifact folder (untrusted): within the record's limits they can
    still make a 4 GB sample, refused before any allocation."""
    from optibridge.bench.measure import prompt_inputs

    copy = tmp_path / "copy"
    shutil.copytree(llava[1].path, copy)
    meta = json.loads((copy / "optibridge.json").read_text())
    meta["extra"]["image_tokens"].update(image_size=8192, channels=16)
    (copy / "optibridge.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match=r"make a bench sample of shape \(1, 16, 8192, 8192\), over 134217728 values"):
        prompt_inputs(Artifact.load(copy), 1, 4)


# -- gemma3: each image's placeholders attend to each other both ways; sliding-window layers ----------------

@pytest.fixture(scope="module")
def gemma3(tmp_path_factory):
    from tiny_vision import build_tiny_gemma3

    root = tmp_path_factory.mktemp("gemma3")
    source = build_tiny_gemma3(root / "src")
    assert main(["export", "--model", str(source), str(root / "onnx")]) == 0
    return Artifact.load(root / "onnx"), transformers.Gemma3ForConditionalGeneration.from_pretrained(source).eval()


def gemma3_prompt(token_id):
    """Two rows (the second left-padded by 2), each one image's 4 placeholders among text, and the token types
    gemma3's processor gives them (1 on the placeholders)."""
    ids = torch.randint(3, 290, (2, 12), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[1, :2] = 0
    ids[0, 1:5] = token_id
    ids[1, 3:7] = token_id
    pixels = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    return dict(input_ids=ids, attention_mask=mask, pixel_values=pixels, token_type_ids=(ids == token_id).long())


def test_gemma3_exports_with_image_blocks_on_the_dynamo_path(gemma3):
    artifact, _ = gemma3
    meta = artifact.metadata
    assert meta.task == "image-text-to-text" and meta.validation["passed"] and meta.extra["image_tokens"]["attention"] == "image-blocks"
    # the fast path would replace the sliding window and the blocks by a plain causal mask (its text config says so)
    assert meta.exporter == "dynamo"


@pytest.mark.parametrize("backend, options", [("ort", {}), ("openvino", {"stateful": True})], ids=["ort", "openvino-stateful"])
def test_gemma3_generates_as_pytorch_with_its_image_blocks(gemma3, backend, options):
    from optibridge import OBModelForVisualCausalLM

    artifact, reference = gemma3
    inputs = gemma3_prompt(artifact.metadata.extra["image_tokens"]["token_id"])
    settings = dict(GREEDY, repetition_penalty=1.5)  # the tiny gemma3 repeats a token without it (on both sides alike)
    want = reference.generate(**inputs, **settings)
    without_blocks = reference.generate(**{**inputs, "token_type_ids": None}, **settings)
    assert (torch.stack(without_blocks.scores) - torch.stack(want.scores)).abs().nan_to_num().max() > 1e-2  # the blocks shape these scores (eos is -inf in both)
    model = OBModelForVisualCausalLM.from_pretrained(artifact.path, backend=backend, **options)
    got = model.generate(**inputs, **settings)
    assert torch.equal(got.sequences, want.sequences) and len(set(want.sequences[:, -NEW:].flatten().tolist())) > 5
    torch.testing.assert_close(torch.stack(got.scores), torch.stack(want.scores), atol=1e-4, rtol=0)
    with pytest.raises(InputError, match="token_type_ids must be 1 exactly on the image placeholder tokens"):
        model.generate(**{**inputs, "token_type_ids": torch.zeros_like(inputs["input_ids"])}, max_new_tokens=2)


def test_bench_on_gemma3_passes_the_block_types_to_both_sides(gemma3, tmp_path):
    from optibridge.bench import load_run
    from optibridge.bench.measure import prompt_inputs

    artifact, _ = gemma3
    prompt = prompt_inputs(artifact, 1, 4)
    assert prompt["token_type_ids"].sum() == 4 and (prompt["token_type_ids"] == (prompt["input_ids"] == 299)).all()
    code = main(["bench", "--model", str(artifact.path), "--configs", "ort:fp32", "--batch-sizes", "1", "--seq-lens", "6",
                 "--warmup", "1", "--runs", "2", "--no-progress", "--out", str(tmp_path / "b")])
    assert code == 0
    ort = {c.name: c for c in load_run(tmp_path / "b" / "results.json").cells}["ort:fp32"]
    assert ort.ok and ort.accuracy.cosine > 0.9999, (ort.reason, ort.accuracy)


def test_optimum_intels_visual_lm_folder_is_named_with_what_to_do(llava, tmp_path):
    """optimum-intel writes a language model that takes embeddings plus text and vision embedding models; optibridge
    reads its own layout only, and says so instead of asking which of the three files to load."""
    from optibridge.openvino import OVModelForVisualCausalLM

    folder = tmp_path / "optimum-intel"
    folder.mkdir()
    shutil.copy(llava[1].path / "config.json", folder / "config.json")
    for name in ("language_model", "text_embeddings_model", "vision_embeddings_model"):
        (folder / f"openvino_{name}.xml").write_text("<net/>")
        (folder / f"openvino_{name}.bin").write_bytes(b"")
    with pytest.raises(ArtifactError, match="optimum-intel's layout for a decoder LM that takes images .* export the PyTorch model"):
        OVModelForVisualCausalLM.from_pretrained(folder)
