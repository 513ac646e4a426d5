"""Zero-shot image classification (CLIP, SigLIP): texts and images in one graph with independent
batch axes, parity with PyTorch at other batch sizes, and transformers' pipeline."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers

sys.path.insert(0, str(Path(__file__).parent / "coverage"))
from tiny_configs import build_tiny  # noqa: E402
from tiny_models import VOCAB_SIZE, make_tokenizer  # noqa: E402

from optibridge import export  # noqa: E402

TASK = "zero-shot-image-classification"


@pytest.fixture(scope="module")
def zero_shot(tmp_path_factory):
    root = tmp_path_factory.mktemp("zero-shot")
    done: dict = {}

    def get(model_type: str):
        if model_type not in done:
            source = root / model_type
            build_tiny(model_type, TASK, source)
            config = transformers.AutoConfig.from_pretrained(source)
            make_tokenizer(("input_ids", "attention_mask")).save_pretrained(source)
            size = config.vision_config.image_size
            transformers.ViTImageProcessorPil(size={"height": size, "width": size}).save_pretrained(source)
            done[model_type] = source, export(source, root / f"{model_type}-onnx", task=TASK).artifact
        return done[model_type]

    return get


@pytest.mark.parametrize("model_type", ["clip", "siglip"])
def test_texts_and_images_have_their_own_batch_axes_and_match_pytorch(model_type, zero_shot):
    from optibridge import OBModelForZeroShotImageClassification

    source, artifact = zero_shot(model_type)
    meta = artifact.metadata
    assert meta.validation["passed"]
    shapes = {s.name: s.shape for s in meta.inputs}
    assert shapes["input_ids"][:2] == ("text_batch_size", "sequence_length") and shapes["pixel_values"][0] == "image_batch_size"
    reference = transformers.AutoModelForZeroShotImageClassification.from_pretrained(source, attn_implementation="eager").eval()
    size = reference.config.vision_config.image_size
    g = torch.Generator().manual_seed(4)
    vocab = min(reference.config.text_config.vocab_size, VOCAB_SIZE)
    inputs = {"input_ids": torch.randint(5, vocab, (5, 11), generator=g), "attention_mask": torch.ones(5, 11, dtype=torch.long),
              "pixel_values": torch.randn(3, 3, size, size, generator=g)}
    with torch.no_grad():
        want = reference(**inputs)
    got = OBModelForZeroShotImageClassification.from_pretrained(artifact.path)(**inputs)
    assert type(got) is type(want) and got.logits_per_image.shape == (3, 5)
    for name in ("logits_per_image", "logits_per_text", "text_embeds", "image_embeds"):
        np.testing.assert_allclose(got[name].numpy(), want[name].numpy(), atol=1e-4, rtol=0)


def test_zero_shot_pipeline_gives_pytorch_labels_and_scores(zero_shot):
    from PIL import Image

    from optibridge import OBModelForZeroShotImageClassification

    source, artifact = zero_shot("clip")
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8))
    labels = ["cat", "dog", "a red car"]
    processor = transformers.ViTImageProcessorPil.from_pretrained(artifact.path)
    tokenizer = transformers.AutoTokenizer.from_pretrained(artifact.path)
    # The tiny CLIP pools its text at the highest token id (legacy eos_token_id 2), which the default
    # template "This is a photo of {}." holds before the label: every label would then get the same
    # embedding, the scores would tie at 1/3 and their order would be float noise. Label first.
    template = "{} is in this photo."
    run = lambda model: transformers.pipeline(TASK, model=model, tokenizer=tokenizer, image_processor=processor)(  # noqa: E731
        image, candidate_labels=labels, hypothesis_template=template)
    want = run(transformers.AutoModelForZeroShotImageClassification.from_pretrained(source).eval())
    got = run(OBModelForZeroShotImageClassification.from_pretrained(artifact.path))
    scores = sorted(w["score"] for w in want)
    assert scores[-1] - scores[-2] > 1e-3 and scores[1] - scores[0] > 1e-3, want  # an order float noise cannot flip
    assert [g["label"] for g in got] == [w["label"] for w in want]
    np.testing.assert_allclose([g["score"] for g in got], [w["score"] for w in want], atol=1e-4)


@pytest.mark.parametrize("model_type", ["clip", "siglip"])
def test_another_image_size_with_unequal_text_and_image_counts(model_type, zero_shot):
    """SigLIP's pooling head is an nn.MultiheadAttention: traced as plain ops (exporter/traceable.py),
    it takes any size too (TorchScript would freeze the key length, the number of patches)."""
    from optibridge import OBModelForZeroShotImageClassification

    source, artifact = zero_shot(model_type)
    size = artifact.metadata.extra["image_size"]
    assert size["dynamic"] and size["interpolate_pos_encoding"], size
    shapes = {s.name: s.shape for s in artifact.metadata.inputs}
    assert shapes["pixel_values"] == ("image_batch_size", 3, "height", "width") and shapes["input_ids"][0] == "text_batch_size"
    reference = transformers.AutoModelForZeroShotImageClassification.from_pretrained(source, attn_implementation="eager").eval()
    g = torch.Generator().manual_seed(5)
    vocab = min(reference.config.text_config.vocab_size, VOCAB_SIZE)
    # neither the traced (48x40) nor the validated (32x32) size; 4 texts, 2 images (traced 3 × 2, validated 2 × 4)
    inputs = {"input_ids": torch.randint(5, vocab, (4, 7), generator=g), "attention_mask": torch.ones(4, 7, dtype=torch.long),
              "pixel_values": torch.randn(2, 3, 40, 56, generator=g)}
    with torch.no_grad():
        want = reference(**inputs, interpolate_pos_encoding=True)
    got = OBModelForZeroShotImageClassification.from_pretrained(artifact.path)(**inputs)
    assert got.logits_per_image.shape == (2, 4)
    for name in ("logits_per_image", "logits_per_text", "text_embeds", "image_embeds"):
        np.testing.assert_allclose(got[name].numpy(), want[name].numpy(), atol=1e-4, rtol=0)


@pytest.mark.parametrize("batch_first", [True, False])
def test_the_traceable_multihead_attention_computes_what_the_module_does(batch_first):
    from optibridge.exporter.traceable import TraceableMultiheadAttention, traceable_attention_modules

    torch.manual_seed(0)
    holder = torch.nn.Sequential(torch.nn.MultiheadAttention(16, 4, batch_first=batch_first)).eval()
    original = holder[0]
    q, kv = (torch.randn(2, 3, 16), torch.randn(2, 9, 16)) if batch_first else (torch.randn(3, 2, 16), torch.randn(9, 2, 16))
    with torch.no_grad():
        want_out, want_weights = original(q, kv, kv)
        with traceable_attention_modules(holder) as swapped:
            assert swapped == 1 and isinstance(holder[0], TraceableMultiheadAttention)
            got_out, got_weights = holder[0](q, kv, kv)
            per_head = holder[0](q, kv, kv, average_attn_weights=False)[1]
            masked = holder[0](q, kv, kv, key_padding_mask=torch.zeros(2, 9, dtype=torch.bool))  # goes to the module itself
    assert holder[0] is original  # put back
    torch.testing.assert_close(got_out, want_out, atol=1e-6, rtol=0)
    torch.testing.assert_close(got_weights, want_weights, atol=1e-6, rtol=0)
    assert per_head.shape == (2, 4, 3, 9)
    torch.testing.assert_close(masked[0], want_out, atol=1e-6, rtol=0)


def test_optimize_quantize_and_bench_give_a_text_and_image_graph_images_of_its_size(zero_shot, tmp_path):
    # Their text batches once gave pixel_values a placeholder size (7x7), smaller than one patch: every
    # step failed in the patch embedding's Conv.
    from optibridge import OptimizationConfig, QuantizationConfig, optimize, quantize
    from optibridge.bench.measure import encoder_inputs
    from optibridge.errors import InputError

    from optibridge.steps.samples import recorded_image_size

    _, artifact = zero_shot("clip")
    height, width = recorded_image_size(artifact)  # the size the export traced (its height/width axes are dynamic)
    assert min(height, width) >= transformers.AutoConfig.from_pretrained(artifact.path).vision_config.patch_size
    for step in (optimize(artifact.path, OptimizationConfig(level=2), tmp_path / "o2").step,
                 quantize(artifact.path, QuantizationConfig(mode="dynamic"), tmp_path / "int8").step):
        checked = step["accuracy"]["model"]
        assert checked["input_shapes"]["pixel_values"][2:] == [height, width]
        assert checked["input_shapes"]["input_ids"][1] <= 77  # CLIP's text positions: samples are cut to fit
        assert min(o["cosine_mean"] for o in checked["outputs"]) >= 0.99
    # bench feeds the model's own size, where PyTorch's CLIP runs without interpolate_pos_encoding
    assert encoder_inputs(artifact, 2, 16)[0]["pixel_values"].shape[2:] == recorded_image_size(artifact, "validated") != (height, width)
    with pytest.raises(InputError, match="128 tokens is past this model's 77 text positions; pass --seq-lens 77 or less"):
        encoder_inputs(artifact, 1, 128)


def test_optibridge_run_labels_images_as_the_zero_shot_pipeline_does(zero_shot, tmp_path):
    """`optibridge run --labels` on a CLIP artifact: each row an image, the best label and its score as
    transformers' zero-shot pipeline gives them on the PyTorch model; fewer than two labels is refused."""
    from PIL import Image

    from optibridge.batch import run_file
    from optibridge.errors import InputError

    source, artifact = zero_shot("clip")
    rng = np.random.default_rng(1)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (40, 40 + 4 * i, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
    (tmp_path / "rows.txt").write_text("0.png\n1.png\n2.png\n")
    labels, template = ["cat", "dog", "a red car"], "{} is in this photo."  # label first: see the pipeline test above
    run_file(artifact.path, tmp_path / "rows.txt", tmp_path / "out.parquet", batch_size=2, labels=labels, template=template)
    import pyarrow.parquet as pq

    out = pq.read_table(tmp_path / "out.parquet").to_pydict()
    pipe = transformers.pipeline(TASK, model=transformers.AutoModelForZeroShotImageClassification.from_pretrained(source).eval(),
                                 tokenizer=transformers.AutoTokenizer.from_pretrained(source),
                                 image_processor=transformers.ViTImageProcessorPil.from_pretrained(source))
    want = [pipe(Image.open(tmp_path / f"{i}.png"), candidate_labels=labels, hypothesis_template=template)[0] for i in range(3)]
    assert out["error"] == [None] * 3 and out["label"] == [w["label"] for w in want]
    np.testing.assert_allclose(out["score"], [w["score"] for w in want], atol=1e-4)
    with pytest.raises(InputError, match="give at least two"):
        run_file(artifact.path, tmp_path / "rows.txt", tmp_path / "none.parquet", labels=["cat"])
