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


SENTENCES = ["the cat sat on the mat", "hello world", "a dog ran in the park today", "is this it",
             "the quick brown fox jumps", "no", "we went to the sea and back again", "good morning"]


def test_static_quantization_as_optimums_guide_writes_it(exported, tmp_path):
    """get_calibration_dataset → fit → quantize(calibration_tensors_range=...), with only the import changed:
    the graph is the one optibridge's own static step makes from the same token rows."""
    import json

    from transformers import AutoTokenizer

    from optibridge import CalibrationConfig as OBCalibrationConfig
    from optibridge.onnxruntime import AutoCalibrationConfig

    artifact = exported("bert", "text-classification")
    tokenizer = AutoTokenizer.from_pretrained(artifact.path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.csv").write_text("sentence,label\n" + "".join(f"{s},{i % 2}\n" for i, s in enumerate(SENTENCES)))
    quantizer = ORTQuantizer.from_pretrained(ORTModelForSequenceClassification.from_pretrained(artifact.path))
    dataset = quantizer.get_calibration_dataset(str(tmp_path / "data"), num_samples=6, dataset_split="train",
                                                preprocess_function=lambda rows: tokenizer(rows["sentence"]))
    assert len(dataset) == 6 and "input_ids" in dataset.column_names
    ranges = quantizer.fit(dataset=dataset, calibration_config=AutoCalibrationConfig.minmax(dataset))
    config = AutoQuantizationConfig.avx512_vnni(is_static=True, per_channel=False)
    out = quantizer.quantize(save_dir=tmp_path / "q", quantization_config=config, calibration_tensors_range=ranges)
    assert "QuantizeLinear" in _ops(out, "model_quantized.onnx")
    step = Artifact.load(out, verify_hashes=True, require_hashes=True).metadata.steps[-1]
    assert step["config"]["mode"] == "static" and step["calibration"]["samples"] == 6 and step["settings"]["per_channel"] is False

    # the same six rows, as token ids in a JSONL file, through optibridge's own API
    rows = [{name: dataset[i][name] for name in ("input_ids", "attention_mask", "token_type_ids")} for i in range(6)]
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    longest = max(len(row["input_ids"]) for row in rows)
    ours = quantize(artifact.path, OBQuantizationConfig(mode="static", preset="avx512-vnni", per_channel=False, calibration=OBCalibrationConfig(
        source=str(tmp_path / "rows.jsonl"), num_samples=6, max_length=longest)), tmp_path / "ours").artifact
    want = OBModelForSequenceClassification.from_pretrained(ours.path)(input_ids=IDS).logits
    assert torch.equal(ORTModelForSequenceClassification.from_pretrained(out, file_name="model_quantized.onnx")(input_ids=IDS).logits, want)


def test_partial_fit_adds_rows_and_percentiles_carry_their_percentile(exported):
    import datasets
    from transformers import AutoTokenizer

    from optibridge.onnxruntime import AutoCalibrationConfig

    artifact = exported("bert", "text-classification")
    tokenizer = AutoTokenizer.from_pretrained(artifact.path)
    first = datasets.Dataset.from_dict({"text": SENTENCES[:3]}).map(lambda rows: tokenizer(rows["text"]), batched=True)
    second = datasets.Dataset.from_dict({"text": SENTENCES[3:]}).map(lambda rows: tokenizer(rows["text"]), batched=True)
    quantizer = ORTQuantizer.from_pretrained(artifact.path)
    quantizer.partial_fit(first, AutoCalibrationConfig.percentiles(first, percentile=99.9))
    quantizer.partial_fit(second, AutoCalibrationConfig.percentiles(second, percentile=99.9))
    ranges = quantizer.compute_ranges()
    assert ranges.rows == len(SENTENCES) and ranges.config.method == "percentile" and ranges.config.percentile == 99.9
    assert sorted(datasets.load_from_disk(str(ranges.folder)).column_names) == ["attention_mask", "input_ids", "token_type_ids"]


def test_static_quantization_without_its_calibration_says_how_to_give_it(exported, tmp_path):
    import datasets

    from optibridge.onnxruntime import AutoCalibrationConfig

    quantizer = ORTQuantizer.from_pretrained(exported("bert", "text-classification").path)
    with pytest.raises(ConfigError, match=r"ranges = quantizer.fit\(dataset, AutoCalibrationConfig.minmax\(dataset\)\)"):
        quantizer.quantize(AutoQuantizationConfig.avx512_vnni(is_static=True), tmp_path / "q")
    text_only = datasets.Dataset.from_dict({"sentence": SENTENCES})
    with pytest.raises(ConfigError, match=r"columns sentence but none of the model's inputs \(input_ids, .*\): map it through the tokenizer"):
        quantizer.fit(text_only, AutoCalibrationConfig.minmax(text_only))
    with pytest.raises(ConfigError, match="nothing to calibrate on"):
        quantizer.compute_ranges()
    with pytest.raises(ConfigError, match="moving_average is not offered"):
        AutoCalibrationConfig.minmax(text_only, moving_average=True)
    with pytest.raises(ConfigError, match="must come from AutoCalibrationConfig"):
        quantizer.fit(text_only, calibration_config={"method": "minmax"})
    with pytest.raises(ConfigError, match="takes no dict of ranges"):
        quantizer.quantize(AutoQuantizationConfig.avx512_vnni(is_static=True), tmp_path / "q", calibration_tensors_range={"x": (0, 1)})
    assert not (tmp_path / "q").exists()
    with pytest.raises(ConfigError, match="arm64 has no 16-bit saturation"):
        AutoQuantizationConfig.arm64(is_static=False, reduce_range=True)


def test_static_quantization_of_a_vision_model_from_an_image_dataset(exported, tmp_path):
    """Optimum's guide for an image model: the dataset mapped through the image processor; the graph is
    the one optibridge's own static step makes from the same images in a folder."""
    from tiny_vision import write_images
    from transformers import AutoImageProcessor

    from optibridge import CalibrationConfig as OBCalibrationConfig
    from optibridge import OBModelForImageClassification
    from optibridge.onnxruntime import AutoCalibrationConfig, ORTModelForImageClassification

    artifact = exported("vit", "image-classification")
    images = write_images(tmp_path / "images", 4)
    processor = AutoImageProcessor.from_pretrained(artifact.path)
    quantizer = ORTQuantizer.from_pretrained(artifact.path)
    dataset = quantizer.get_calibration_dataset(str(images), num_samples=4, dataset_split="train",
                                                preprocess_function=lambda rows: processor(images=[i.convert("RGB") for i in rows["image"]]))
    assert len(dataset) == 4 and "pixel_values" in dataset.column_names
    ranges = quantizer.fit(dataset, AutoCalibrationConfig.minmax(dataset))
    out = quantizer.quantize(AutoQuantizationConfig.avx512_vnni(is_static=True, per_channel=False), tmp_path / "q",
                             calibration_tensors_range=ranges)
    assert "QuantizeLinear" in _ops(out, "model_quantized.onnx")
    assert Artifact.load(out).metadata.steps[-1]["calibration"]["samples"] == 4

    ours = quantize(artifact.path, OBQuantizationConfig(mode="static", preset="avx512-vnni", per_channel=False,
                                                        calibration=OBCalibrationConfig(source=str(images))), tmp_path / "ours").artifact
    pixels = torch.randn(2, 3, 32, 32)
    want = OBModelForImageClassification.from_pretrained(ours.path)(pixel_values=pixels).logits
    got = ORTModelForImageClassification.from_pretrained(out)(pixel_values=pixels).logits
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
