"""optimum-intel's OVQuantizer / OVQuantizationConfig / OVConfig, run as its guides write them with only
the import changed: the same artifacts as optibridge's own OpenVINO quantize steps make."""

from __future__ import annotations

import json
import logging

import pytest
import torch

pytest.importorskip("nncf")

from optibridge import CalibrationConfig as OBCalibrationConfig  # noqa: E402
from optibridge import OBModelForSequenceClassification, quantize  # noqa: E402
from optibridge import QuantizationConfig as OBQuantizationConfig  # noqa: E402
from optibridge.artifact import Artifact  # noqa: E402
from optibridge.errors import ConfigError  # noqa: E402
from optibridge.openvino import (  # noqa: E402
    OVConfig, OVModelForSequenceClassification, OVQuantizationConfig, OVQuantizer, OVWeightQuantizationConfig,
)

SENTENCES = ["the cat sat on the mat", "hello world", "a dog ran in the park today", "is this it",
             "numbers like 12 and 7", "one more sentence for the rows"]
IDS = torch.randint(5, 100, (2, 9), generator=torch.Generator().manual_seed(0))


def _csv_dataset(folder):
    folder.mkdir()
    (folder / "train.csv").write_text("sentence,label\n" + "".join(f"{s},{i % 2}\n" for i, s in enumerate(SENTENCES)))
    return folder


def test_static_int8_as_optimum_intels_guide_writes_it(exported, tmp_path):
    """from_pretrained(model) → get_calibration_dataset → quantize(ov_config=OVConfig(OVQuantizationConfig())):
    the artifact optibridge's own static step makes from the same token rows."""
    from transformers import AutoTokenizer

    artifact = exported("bert", "text-classification")
    tokenizer = AutoTokenizer.from_pretrained(artifact.path)
    quantizer = OVQuantizer.from_pretrained(OVModelForSequenceClassification.from_pretrained(artifact.path))
    dataset = quantizer.get_calibration_dataset(str(_csv_dataset(tmp_path / "data")), num_samples=5, dataset_split="train",
                                                preprocess_function=lambda rows: tokenizer(rows["sentence"]))
    assert len(dataset) == 5 and "input_ids" in dataset.column_names
    config = OVConfig(quantization_config=OVQuantizationConfig(num_samples=4))
    assert config.dtype == "int8"
    out = quantizer.quantize(calibration_dataset=dataset, save_directory=tmp_path / "q", ov_config=config)
    step = Artifact.load(out, verify_hashes=True, require_hashes=True).metadata.steps[-1]
    assert step["backend"] == "openvino" and step["config"]["mode"] == "static" and step["calibration"]["samples"] == 4

    # the same four rows as token ids, through optibridge's own API
    rows = [{name: dataset[i][name] for name in ("input_ids", "attention_mask", "token_type_ids")} for i in range(4)]
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    longest = max(len(row["input_ids"]) for row in [dataset[i] for i in range(5)])
    ours = quantize(artifact.path, OBQuantizationConfig(mode="static", calibration=OBCalibrationConfig(
        source=str(tmp_path / "rows.jsonl"), num_samples=4, max_length=longest)), tmp_path / "ours", backend="openvino").artifact
    want = OBModelForSequenceClassification.from_pretrained(ours.path)(input_ids=IDS).logits
    assert torch.equal(OVModelForSequenceClassification.from_pretrained(out)(input_ids=IDS).logits, want)


def test_without_a_config_weights_only_without_data_as_optimum_intel(tiny_model, exported, tmp_path, caplog):
    """A PyTorch model is exported first; no config and no dataset compresses the weights to int8 (data-free)."""
    from transformers import AutoModelForSequenceClassification

    source = AutoModelForSequenceClassification.from_pretrained(tiny_model("bert", "text-classification")).eval()
    out = OVQuantizer(source).quantize(save_directory=tmp_path / "w8")
    artifact = Artifact.load(out)
    assert [s["step"] for s in artifact.metadata.steps] == ["export", "quantize"]
    assert artifact.metadata.steps[-1]["config"]["mode"] == "int8-weights"
    with torch.no_grad():
        want = source(input_ids=IDS).logits
    got = OVModelForSequenceClassification.from_pretrained(out)(input_ids=IDS).logits
    assert torch.nn.functional.cosine_similarity(got, want, dim=-1).min() > 0.99

    weights = OVWeightQuantizationConfig(bits=8)
    with caplog.at_level(logging.WARNING, logger="optibridge.ov_tools"):
        again = OVQuantizer(exported("bert", "text-classification").path).quantize(calibration_dataset=[{"input_ids": [1, 2, 3]}], save_directory=tmp_path / "again",
                                          ov_config=OVConfig(quantization_config=weights))
    assert "the calibration dataset is not used" in caplog.text
    assert Artifact.load(again).metadata.steps[-1]["config"]["mode"] == "int8-weights"
    half = OVQuantizer(exported("bert", "text-classification").path).quantize(save_directory=tmp_path / "f16",
                                                                              ov_config=OVConfig(dtype="fp16"))
    assert Artifact.load(half).metadata.steps[-1]["config"]["mode"] == "f16-weights"


def test_config_fields_map_onto_optibridges_static_plan():
    calibration = OBCalibrationConfig()
    plain = OVQuantizationConfig().to_quantization_config(calibration)
    assert (plain.mode, plain.smooth, plain.smooth_alpha, plain.reduce_range, plain.exclude_nodes) == ("static", None, None, None, ())
    tuned = OVQuantizationConfig(smooth_quant_alpha=0.7, overflow_fix="enable",
                                 ignored_scope={"names": ["/classifier/MatMul"], "types": ["Softmax"]}).to_quantization_config(calibration)
    assert (tuned.smooth_alpha, tuned.reduce_range, tuned.exclude_nodes, tuned.exclude_ops) == (0.7, True, ("/classifier/MatMul",), ("Softmax",))
    assert OVQuantizationConfig(smooth_quant_alpha=-1).to_quantization_config(calibration).smooth is False
    assert isinstance(OVConfig(quantization_config={"bits": 4, "sym": True}).quantization_config, OVWeightQuantizationConfig)
    assert isinstance(OVConfig(quantization_config={"smooth_quant_alpha": 0.5}).quantization_config, OVQuantizationConfig)
    assert isinstance(OVConfig(quantization_config={"bits": 8, "weight_only": False}).quantization_config, OVQuantizationConfig)
    assert OVConfig().quantization_config is None
    with pytest.raises(ConfigError, match=r"OVConfig\(dtype='int4'\) without a quantization_config"):
        OVConfig(dtype="int4")


@pytest.mark.parametrize("fields,says", [
    ({"sym": True}, r"sym=True\) is not offered: the plan keeps NNCF's transformer scheme"),
    ({"bits": 4}, r"bits=4\) is not offered: activations and weights are int8"),
    ({"dtype": "f8e4m3"}, r"dtype='f8e4m3'\) is not offered"),
    ({"dataset": "wikitext2"}, r"dataset='wikitext2'\) is not offered: give the rows: quantizer.quantize\(calibration_dataset="),
    ({"model_type": "cnn"}, r"model_type='cnn'\) is not offered"),
    ({"overflow_fix": "first_layer"}, r"overflow_fix='first_layer'\) is not offered: 'enable'"),
    ({"num_samples": 0}, r"num_samples=0\): a positive number of rows"),
])
def test_full_quantization_settings_the_plan_does_not_honour_are_refused(fields, says):
    with pytest.raises(ConfigError, match=says):
        OVQuantizationConfig(**fields)


def test_quantize_calls_optibridge_cannot_honour_say_what_to_do(exported, tmp_path):
    artifact = exported("bert", "text-classification")
    quantizer = OVQuantizer.from_pretrained(artifact.path)
    static = OVConfig(quantization_config=OVQuantizationConfig())
    with pytest.raises(ConfigError, match="needs calibration rows: give the rows"):
        quantizer.quantize(save_directory=tmp_path / "q", ov_config=static)
    with pytest.raises(ConfigError, match="save_directory is needed"):
        quantizer.quantize()
    with pytest.raises(ConfigError, match="an nncf.Dataset is not read"):
        quantizer.quantize(calibration_dataset=object(), save_directory=tmp_path / "q", ov_config=static)
    with pytest.raises(ConfigError, match=r"columns sentence but none of the model's inputs"):
        quantizer.quantize(calibration_dataset=[{"sentence": "hello"}], save_directory=tmp_path / "q", ov_config=static)
    with pytest.raises(ConfigError, match="data_collator is not applied"):
        quantizer.quantize(calibration_dataset=[{"input_ids": [1, 2]}], save_directory=tmp_path / "q", data_collator=lambda rows: rows)
    with pytest.raises(ConfigError, match="ignored_scope patterns / subgraphs are not offered"):
        quantizer.quantize(calibration_dataset=[{"input_ids": [1, 2]}], save_directory=tmp_path / "q",
                           ov_config=OVConfig(quantization_config=OVQuantizationConfig(ignored_scope={"patterns": [".*dense.*"]})))
    with pytest.raises(ConfigError, match="trust_remote_code is not offered"):
        OVQuantizer.from_pretrained(artifact.path, trust_remote_code=True)
    with pytest.raises(ConfigError, match=r"int8 activations need calibration rows, which loading does not take: quantize with OVQuantizer"):
        OVModelForSequenceClassification.from_pretrained(artifact.path, quantization_config=OVQuantizationConfig())
    assert not (tmp_path / "q").exists()


def test_static_int8_of_a_vision_model_from_processor_mapped_rows(exported, tmp_path):
    """Image rows (a dataset mapped through the image processor) calibrate the OpenVINO static plan as the
    same images given to optibridge's own step as a folder do."""
    from tiny_vision import write_images
    from transformers import AutoImageProcessor

    from optibridge import OBModelForImageClassification
    from optibridge.openvino import OVModelForImageClassification

    artifact = exported("vit", "image-classification")
    images = write_images(tmp_path / "images", 4)
    processor = AutoImageProcessor.from_pretrained(artifact.path)
    quantizer = OVQuantizer.from_pretrained(artifact.path)
    rows = quantizer.get_calibration_dataset(str(images), num_samples=4, preprocess_function=lambda batch: processor(
        images=[image.convert("RGB") for image in batch["image"]]))
    out = quantizer.quantize(calibration_dataset=rows, save_directory=tmp_path / "q", ov_config=OVConfig(quantization_config=OVQuantizationConfig()))
    assert Artifact.load(out).metadata.steps[-1]["calibration"]["samples"] == 4
    ours = quantize(artifact.path, OBQuantizationConfig(mode="static", calibration=OBCalibrationConfig(source=str(images))),
                    tmp_path / "ours", backend="openvino").artifact
    pixels = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    want = OBModelForImageClassification.from_pretrained(ours.path)(pixel_values=pixels).logits
    torch.testing.assert_close(OVModelForImageClassification.from_pretrained(out)(pixel_values=pixels).logits, want, rtol=0, atol=1e-5)
