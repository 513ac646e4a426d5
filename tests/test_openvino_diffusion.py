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


def test_weights_compressed_at_load_per_graph_as_optimum_intel_takes_them(sd_artifact, tmp_path):
    """optimum-intel's quantization_config on a pipeline: OVPipelineQuantizationConfig per graph (the others
    stay float), an OVWeightQuantizationConfig or load_in_8bit=True for every graph; reshape() keeps the
    compression; the images stay close to the float pipeline's; what it cannot do is refused by name."""
    import numpy as np
    import torch

    from optibridge.errors import ArtifactError, ConfigError
    from optibridge.openvino import (
        OVPipelineQuantizationConfig,
        OVQuantizationConfig,
        OVStableDiffusionPipeline,
        OVWeightQuantizationConfig,
    )

    def images(pipe):
        return pipe("a cat on the mat", num_inference_steps=3, height=32, width=32, generator=torch.Generator().manual_seed(0),
                    output_type="np").images

    def weights(pipe):
        return {name: getattr(component.sessions[name], "weights", None)
                for component in (pipe.text_encoder, pipe.unet, pipe.vae) for name in component.sessions}

    float_images = images(OVStableDiffusionPipeline.from_pretrained(sd_artifact.path))
    per_graph = OVStableDiffusionPipeline.from_pretrained(
        sd_artifact.path, quantization_config=OVPipelineQuantizationConfig({"unet": OVWeightQuantizationConfig(bits=8)}))
    assert weights(per_graph) == {"text_encoder": None, "unet": "int8", "vae_decoder": None, "vae_encoder": None}
    got = images(per_graph)
    assert 0 < np.abs(got - float_images).mean() < 0.02  # changed by int8 weights, still the same picture
    per_graph.reshape(batch_size=1, height=32, width=32)
    assert weights(per_graph)["unet"] == "int8" and np.abs(images(per_graph) - got).mean() < 1e-5
    assert set(weights(OVStableDiffusionPipeline.from_pretrained(sd_artifact.path, load_in_8bit=True)).values()) == {"int8"}
    # a weight config for the whole pipeline is the default of every graph (what load_in_8bit=True passes)
    every = OVPipelineQuantizationConfig({}, default_config=OVWeightQuantizationConfig(bits=4, sym=True, group_size=16))
    assert {g: (c.mode, c.block_size) for g, c in every.for_graphs(["unet", "vae_decoder"]).items()} == {
        "unet": ("int4-weights", 16), "vae_decoder": ("int4-weights", 16)}
    with pytest.raises(ArtifactError, match="compressed at load.*optibridge quantize"):
        per_graph.save_pretrained(tmp_path / "saved")
    assert not (tmp_path / "saved").exists()
    with pytest.raises(ConfigError, match="names transformer, which this pipeline does not have; its graphs are text_encoder, unet"):
        OVStableDiffusionPipeline.from_pretrained(sd_artifact.path, quantization_config=OVPipelineQuantizationConfig(
            {"transformer": {"bits": 8}}))
    with pytest.raises(ConfigError, match="int8 activations need calibration prompts"):
        OVPipelineQuantizationConfig({"unet": OVQuantizationConfig()})
    with pytest.raises(ConfigError, match="got dataset, num_samples"):
        OVPipelineQuantizationConfig({"unet": {"bits": 8}}, dataset="conceptual_captions", num_samples=8)
