"""Optimum's ORTQuantizer / ORTOptimizer and their configs, run as Optimum's guides write them with
only the import changed: the same graphs as optibridge's own quantize/optimize, named as Optimum names them."""

from __future__ import annotations

import pytest
import torch
from optimum_layout import write_optimum_folder

from optibridge import OBModelForSequenceClassification
from optibridge import OptimizationConfig as OBOptimizationConfig
from optibridge import QuantizationConfig as OBQuantizationConfig
from optibridge import optimize, quantize
from optibridge.artifact import Artifact
from optibridge.errors import ConfigError
from optibridge.onnxruntime import (
    AutoOptimizationConfig, AutoQuantizationConfig, OptimizationConfig, ORTModelForSequenceClassification, ORTOptimizer, ORTQuantizer,
)

IDS = torch.randint(5, 100, (2, 7))


def _ops(artifact_path, graph_file):
    import onnx

    return {node.op_type for node in onnx.load(str(artifact_path / graph_file), load_external_data=False).graph.node}


def test_dynamic_quantization_as_optimums_guide_writes_it(exported, tmp_path):
    artifact = exported("bert", "text-classification")
    model = ORTModelForSequenceClassification.from_pretrained(artifact.path)
    quantizer = ORTQuantizer.from_pretrained(model)
    config = AutoQuantizationConfig.avx2(is_static=False, per_channel=False)
    out = quantizer.quantize(save_dir=tmp_path / "q", quantization_config=config)
    assert out == tmp_path / "q" and "MatMulInteger" in _ops(out, "model_quantized.onnx") and not (out / "model.onnx").exists()
    step = Artifact.load(out, verify_hashes=True, require_hashes=True).metadata.steps[-1]
    assert step["step"] == "quantize" and step["settings"]["preset"] == "avx2" and step["settings"]["per_channel"] is False
    # the same graph as optibridge's own quantize with those settings
    ours = quantize(artifact.path, OBQuantizationConfig(mode="dynamic", preset="avx2", per_channel=False), tmp_path / "ours").artifact
    want = OBModelForSequenceClassification.from_pretrained(ours.path)(input_ids=IDS).logits
    loaded = ORTModelForSequenceClassification.from_pretrained(out, file_name="model_quantized.onnx")
    assert torch.equal(loaded(input_ids=IDS).logits, want)
    assert torch.equal(ORTModelForSequenceClassification.from_pretrained(out)(input_ids=IDS).logits, want)


def test_a_quantizer_keeps_an_exported_models_folder_alive(tiny_model, tmp_path):
    import gc

    # export=True writes to a temporary folder owned by the model: the quantizer holds the model
    quantizer = ORTQuantizer.from_pretrained(ORTModelForSequenceClassification.from_pretrained(tiny_model("bert", "text-classification"), export=True))
    gc.collect()
    out = quantizer.quantize(AutoQuantizationConfig.avx2(is_static=False), tmp_path / "q")
    assert "MatMulInteger" in _ops(out, "model_quantized.onnx")


def test_an_optimum_folder_is_quantized_and_optimized_from_its_path(exported, tmp_path):
    artifact = exported("bert", "text-classification")
    folder = write_optimum_folder(artifact, tmp_path / "optimum")
    out = ORTQuantizer.from_pretrained(folder).quantize(AutoQuantizationConfig.avx512_vnni(is_static=False), tmp_path / "q")
    assert "MatMulInteger" in _ops(out, "model_quantized.onnx")
    optimized = ORTOptimizer.from_pretrained(folder).optimize(AutoOptimizationConfig.O2(), tmp_path / "o")
    step = Artifact.load(optimized).metadata.steps[-1]
    assert step["step"] == "optimize" and step["config"]["level"] == 2
    ours = optimize(artifact.path, OBOptimizationConfig(level=2), tmp_path / "ours").artifact
    assert _ops(optimized, "model_optimized.onnx") == _ops(ours.path, ours.metadata.main_graph.file)
    torch.testing.assert_close(ORTModelForSequenceClassification.from_pretrained(optimized, file_name="model_optimized.onnx")(input_ids=IDS).logits,
                               OBModelForSequenceClassification.from_pretrained(artifact.path)(input_ids=IDS).logits, atol=1e-4, rtol=0)


def test_optimization_levels_map_to_optibridges():
    assert AutoOptimizationConfig.O1().to_optibridge() == OBOptimizationConfig(level=1)
    assert AutoOptimizationConfig.O3().to_optibridge() == OBOptimizationConfig(level=3)
    assert AutoOptimizationConfig.O4().to_optibridge() == OBOptimizationConfig(level=4, device="gpu")
    assert OptimizationConfig(optimization_level=99).to_optibridge() == OBOptimizationConfig(level=2)
    with pytest.raises(ConfigError, match="optimization_level=0"):
        OptimizationConfig(optimization_level=0).to_optibridge()
    with pytest.raises(ConfigError, match="choose O1, O2, O3 or O4"):
        AutoOptimizationConfig.with_optimization_level("O5")


def test_static_quantization_names_the_command_that_takes_text(exported, tmp_path):
    quantizer = ORTQuantizer.from_pretrained(exported("bert", "text-classification").path)
    with pytest.raises(ConfigError, match="optibridge quantize MODEL_DIR OUT --mode static --calibration FILE"):
        quantizer.fit(dataset=None, calibration_config=None)
    with pytest.raises(ConfigError, match="--mode static --calibration FILE"):
        quantizer.quantize(AutoQuantizationConfig.avx512_vnni(is_static=True), tmp_path / "q")
    assert not (tmp_path / "q").exists()
    with pytest.raises(ConfigError, match="arm64 has no 16-bit saturation"):
        AutoQuantizationConfig.arm64(is_static=False, reduce_range=True)
