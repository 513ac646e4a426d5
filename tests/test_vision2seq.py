"""image-to-text: a vision encoder-decoder (ViT → GPT-2 with cross-attention) and BLIP's captioner
exported as encoder + decoder graphs with KV cache; greedy generate() token-identical to PyTorch on
ONNX Runtime and OpenVINO."""

from __future__ import annotations

import pytest
import torch
import transformers

from optibridge.errors import InputError
from tiny_vision import build_tiny_blip, build_tiny_captioner


@pytest.fixture(scope="module")
def captioner(tmp_path_factory):
    from optibridge import export

    root = tmp_path_factory.mktemp("captioner")
    source = build_tiny_captioner(root / "src")
    result = export(source, root / "onnx")  # the task is inferred from VisionEncoderDecoderModel
    return source, result


def _generate(model, pixels, **kwargs):
    out = model.generate(pixel_values=pixels, max_new_tokens=10, min_new_tokens=10, output_scores=True, return_dict_in_generate=True, **kwargs)
    return out.sequences, torch.stack(out.scores)


def test_export_infers_image_to_text_and_records_the_layout(captioner):
    _, result = captioner
    meta = result.artifact.metadata
    assert result.task == "image-to-text" and result.task_inferred and meta.validation["passed"]
    assert set(meta.graphs) == {"encoder", "decoder", "decoder_with_past"}
    assert meta.graphs["encoder"].inputs[0].shape == ("batch_size", 3, "height", "width")
    assert meta.extra["image_size"]["interpolate_pos_encoding"] and meta.extra["kv_cache"]["encoder_input"] == "pixel_values"
    # the captions' tokenizer and the image processor travel with the graphs (until 2026-12-03 only the processor did)
    assert transformers.AutoTokenizer.from_pretrained(result.artifact.path).vocab_size > 0
    assert transformers.AutoImageProcessor.from_pretrained(result.artifact.path) is not None


@pytest.mark.parametrize("class_name", ["optibridge.OBModelForVision2Seq", "optibridge.onnxruntime.ORTModelForVision2Seq",
                                        "optibridge.openvino.OVModelForVision2Seq"])
def test_greedy_generate_matches_pytorch_step_by_step(captioner, class_name):
    import importlib

    module, name = class_name.rsplit(".", 1)
    model_class = getattr(importlib.import_module(module), name)
    source, result = captioner
    reference = transformers.VisionEncoderDecoderModel.from_pretrained(source).eval()
    model = model_class.from_pretrained(result.artifact.path)
    pixels = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    want, want_scores = _generate(reference, pixels)
    got, got_scores = _generate(model, pixels)
    assert torch.equal(got, want) and len(set(want[:, 1:].flatten().tolist())) > 3  # several distinct tokens
    torch.testing.assert_close(got_scores, want_scores, atol=1e-4, rtol=0)
    # another image size: the encoder graph interpolates its position table as PyTorch does when asked
    other = torch.randn(2, 3, 40, 56, generator=torch.Generator().manual_seed(2))
    assert torch.equal(_generate(model, other)[0], _generate(reference, other, interpolate_pos_encoding=True)[0])


def test_text_inputs_to_the_image_encoder_are_refused(captioner):
    from optibridge import OBModelForVision2Seq

    model = OBModelForVision2Seq.from_pretrained(captioner[1].artifact.path)
    with pytest.raises(InputError, match="encoder takes pixel_values"):
        model(input_ids=torch.ones(1, 4, dtype=torch.long), decoder_input_ids=torch.ones(1, 1, dtype=torch.long))


def test_cli_info_shows_the_image_size(captioner, capsys):
    from optibridge.cli import main

    assert main(["info", str(captioner[1].artifact.path)]) == 0
    out = capsys.readouterr().out
    assert "task=image-to-text" in out and "image size: any (validated at 32x32, traced at 48x40)" in out


@pytest.fixture(scope="module")
def blip(tmp_path_factory):
    from optibridge import export

    root = tmp_path_factory.mktemp("blip")
    source = build_tiny_blip(root / "src")
    return source, export(source, root / "onnx")  # inferred from BlipForConditionalGeneration


def test_blip_exports_as_an_encoder_decoder_and_says_it_is_untested(blip):
    _, result = blip
    meta = result.artifact.metadata
    assert result.task == "image-to-text" and meta.validation["passed"] and "blip is not in the tested list" in result.note
    assert set(meta.graphs) == {"encoder", "decoder", "decoder_with_past"} and meta.extra["image_size"]["dynamic"]
    saved = transformers.AutoConfig.from_pretrained(result.artifact.path)
    # BLIP's generate() starts its text decoder at bos and stops at sep: the encoder-decoder form says so
    assert saved.is_encoder_decoder and saved.decoder_start_token_id == saved.text_config.bos_token_id
    assert transformers.GenerationConfig.from_pretrained(result.artifact.path).eos_token_id == saved.text_config.sep_token_id


@pytest.mark.parametrize("class_name", ["optibridge.OBModelForVision2Seq", "optibridge.openvino.OVModelForVision2Seq"])
def test_blip_captions_like_blips_own_generate_step_by_step(blip, class_name):
    import importlib

    module, name = class_name.rsplit(".", 1)
    source, result = blip
    reference = transformers.BlipForConditionalGeneration.from_pretrained(source).eval()
    model = getattr(importlib.import_module(module), name).from_pretrained(result.artifact.path)
    pixels = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want, want_scores = _generate(reference, pixels)
    got, got_scores = _generate(model, pixels)
    assert torch.equal(got, want) and len(set(want[:, 1:].flatten().tolist())) > 3
    torch.testing.assert_close(got_scores, want_scores, atol=1e-4, rtol=0)
    other = torch.randn(2, 3, 40, 56, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = _generate(reference, other, interpolate_pos_encoding=True)[0]
    assert torch.equal(_generate(model, other)[0], expected)


@pytest.mark.parametrize("class_name", ["optibridge.onnxruntime.ORTModelForPix2Struct", "optibridge.openvino.OVModelForPix2Struct",
                                        "optibridge.OBModelForVision2Seq"])
def test_pix2struct_generates_pytorchs_tokens_from_its_image_processors_patches(class_name, tmp_path):
    """Pix2Struct: the encoder takes the image processor's flattened_patches and their mask (a number of
    patches the export never traced, padded rows included); greedy tokens and scores equal PyTorch's."""
    import importlib

    import numpy as np
    from PIL import Image

    from optibridge import export
    from tiny_vision import build_tiny_pix2struct

    source = build_tiny_pix2struct(tmp_path / "src")
    result = export(source, tmp_path / "onnx")  # the task is inferred from Pix2StructForConditionalGeneration
    assert result.task == "image-to-text" and result.artifact.metadata.graphs["encoder"].input_names == ["flattened_patches", "attention_mask"]
    processor = transformers.Pix2StructImageProcessor.from_pretrained(source)
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, size, dtype=np.uint8)) for size in ((40, 72, 3), (64, 30, 3))]
    inputs = processor(images=images, return_tensors="pt")
    assert inputs["attention_mask"].shape == (2, 16) and not inputs["attention_mask"].all()  # padded patch rows
    reference = transformers.Pix2StructForConditionalGeneration.from_pretrained(source).eval()
    greedy = dict(max_new_tokens=8, min_new_tokens=8, output_scores=True, return_dict_in_generate=True)
    with torch.no_grad():
        want = reference.generate(**inputs, **greedy)
    module, name = class_name.rsplit(".", 1)
    model = getattr(importlib.import_module(module), name).from_pretrained(result.artifact.path)
    got = model.generate(**inputs, **greedy)
    assert len(set(want.sequences[0].tolist())) > 2  # the random model does not repeat one token
    assert torch.equal(got.sequences, want.sequences)
    torch.testing.assert_close(torch.stack(got.scores), torch.stack(want.scores), atol=1e-4, rtol=0)
    with pytest.raises(InputError, match="encoder takes flattened_patches, not pixel_values"):
        model(pixel_values=torch.zeros(1, 3, 16, 16), decoder_input_ids=torch.zeros(1, 1, dtype=torch.long))


def test_optibridge_run_captions_image_files_as_pytorch(captioner, tmp_path):
    """`optibridge run` on an image-to-text artifact: each row an image file, the caption PyTorch's greedy
    generate() decodes to through the artifact's own image processor and tokenizer."""
    import numpy as np
    import pyarrow.parquet as pq
    from PIL import Image

    from optibridge.batch import run_file

    source, result = captioner
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (24 + 8 * i, 40, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
    (tmp_path / "rows.txt").write_text("0.png\n1.png\n2.png\n")
    run_file(result.artifact.path, tmp_path / "rows.txt", tmp_path / "out.parquet", batch_size=2, max_new_tokens=6)
    out = pq.read_table(tmp_path / "out.parquet").to_pydict()
    reference = transformers.VisionEncoderDecoderModel.from_pretrained(source).eval()
    processor = transformers.AutoImageProcessor.from_pretrained(source)
    tokenizer = transformers.AutoTokenizer.from_pretrained(source)
    want = []
    for i in range(3):
        pixels = processor(images=Image.open(tmp_path / f"{i}.png").convert("RGB"), return_tensors="pt")["pixel_values"]
        with torch.no_grad():
            tokens = reference.generate(pixel_values=pixels, max_new_tokens=6, do_sample=False)
        want.append(tokenizer.batch_decode(tokens, skip_special_tokens=True)[0].strip())
    assert out["error"] == [None] * 3 and any(want)
    assert out["generated_text"] == want
