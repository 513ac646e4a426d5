"""Neural Compressor (PyTorch weight-only int4) as a quantizer before export, packed into MatMulNBits."""

from __future__ import annotations

import json

import onnx
import pytest
import torch

from optibridge import OBModelForSequenceClassification, QuantizationConfig, quantize
from optibridge.steps import CalibrationConfig, ConfigError


@pytest.mark.parametrize("mode", ["inc-rtn", "inc-awq", "inc-gptq"])
def test_inc_modes_quantize_the_pytorch_model_and_pack_int4(mode, exported, tmp_path, monkeypatch):
    source = exported("bert", "text-classification")
    monkeypatch.chdir(tmp_path)  # INC's default workspace is ./nc_workspace: it must not appear here
    # a few samples are enough for the tiny model (AWQ/GPTQ time grows with them)
    config = QuantizationConfig(mode=mode, calibration=CalibrationConfig(num_samples=8) if mode != "inc-rtn" else None)
    result = quantize(source.path, config, tmp_path / mode)
    ops = [n.op_type for n in onnx.load(str(result.artifact.model_path)).graph.node]
    assert ops.count("MatMulNBits") >= 12  # q, k, v, o, ffn1, ffn2 of both layers
    assert any(f"Neural Compressor {mode[4:].upper()} chose int4 weights" in note for note in result.notes)
    assert result.step["config"]["mode"] == mode
    if mode != "inc-rtn":
        assert result.step["calibration"]["samples"] > 0  # AWQ/GPTQ ran on calibration sentences
    ids = torch.randint(5, 100, (2, 10))
    want = OBModelForSequenceClassification.from_pretrained(source.path)(input_ids=ids).logits
    got = OBModelForSequenceClassification.from_pretrained(result.artifact.path)(input_ids=ids).logits
    torch.testing.assert_close(got, want, atol=0.05, rtol=0)
    assert not (tmp_path / "nc_workspace").exists()


def test_inc_without_the_pytorch_model_says_how_to_give_it(exported, tmp_path):
    source = tmp_path / "copy"
    from optibridge.artifact import copy_artifact

    artifact = copy_artifact(exported("bert", "text-classification"), source)
    meta = json.loads((artifact.path / "optibridge.json").read_text())
    meta["source"]["local_path"] = None
    (artifact.path / "optibridge.json").write_text(json.dumps(meta))
    with pytest.raises(ConfigError, match="records no local model folder .*pass source_model=... / --source MODEL_DIR"):
        quantize(artifact.path, QuantizationConfig(mode="inc-rtn"), tmp_path / "out")
    assert not (tmp_path / "out").exists()
