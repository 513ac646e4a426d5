"""Static int8 of a pipeline artifact with NNCF on the openvino backend (tiny random SD 1.x pipeline,
the session's export from conftest.py): calibrated on what the float pipeline feeds its graphs,
judged on the images, refused below the PSNR gate."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("diffusers")
pytest.importorskip("openvino")
pytest.importorskip("nncf")

from optibridge.artifact import Artifact  # noqa: E402


def _quantized_convolutions(xml: Path) -> tuple[int, int]:
    """(convolutions, convolutions whose input comes through a FakeQuantize) in an IR."""
    import openvino as ov

    convolutions = [op for op in ov.Core().read_model(str(xml)).get_ordered_ops() if op.get_type_name() == "Convolution"]
    return len(convolutions), sum(op.input_value(0).get_node().get_type_name() == "FakeQuantize" for op in convolutions)


def test_openvino_static_int8_quantizes_unet_matmuls_keeps_convolutions_and_vae_float(sd_artifact: Artifact, tmp_path: Path) -> None:
    from optibridge import CalibrationConfig, OBStableDiffusionPipeline, QuantizationConfig, quantize

    out = tmp_path / "ov-s8"
    result = quantize(sd_artifact.path, QuantizationConfig(mode="static", calibration=CalibrationConfig(num_samples=4)), out,
                      backend="openvino")
    graphs = result.report["graphs"]
    assert graphs["unet"]["quantized"].get("FakeQuantize", 0) > 0 and graphs["text_encoder"]["quantized"].get("FakeQuantize", 0) > 0
    assert graphs["vae_decoder"]["quantized"] == {} and graphs["vae_encoder"]["quantized"] == {}
    assert {spec.format for spec in result.artifact.metadata.graphs.values()} == {"openvino-ir"}
    assert result.step["settings"]["graphs"]["unet"]["scheme"] == "matmul"
    convolutions, quantized = _quantized_convolutions(out / result.artifact.metadata.graphs["unet"].file)
    assert convolutions > 0 and quantized == 0  # int8 activations there cost ~9 dB (pipeline_quantize.py)
    calibration = result.step["calibration"]
    assert calibration["samples"] == 4 and "recorded from the float pipeline" in calibration["description"]
    images = result.step["image_accuracy"]
    assert 30 <= images["psnr_db"] < 100 and images["mean_abs_pixel_diff"] > 0  # changed, but within the gate
    # The result loads and runs like any pipeline artifact.
    pipe = OBStableDiffusionPipeline.from_pretrained(out, backend="openvino")
    image = pipe("a red cube", num_inference_steps=2, output_type="np").images[0]
    assert image.shape[-1] == 3 and float(image.std()) > 0


def test_openvino_static_int8_below_the_image_gate_is_refused_and_writes_nothing(sd_artifact: Artifact, tmp_path: Path,
                                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from optibridge import CalibrationConfig, QuantizationConfig, quantize
    from optibridge.diffusion import calibration
    from optibridge.errors import AccuracyBudgetError

    monkeypatch.setattr(calibration.image_gate, "__defaults__", (200.0,))
    out = tmp_path / "refused"
    with pytest.raises(AccuracyBudgetError, match=r"PSNR \d+\.\d dB against the float pipeline.*below the 200 dB gate"):
        quantize(sd_artifact.path, QuantizationConfig(mode="static", calibration=CalibrationConfig(num_samples=2)), out,
                 backend="openvino")
    assert not out.exists()
