"""The Gaudi backend: detection here, and its control flow against a fake habana_frameworks (tests/fakes)."""

from __future__ import annotations

import shutil
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from optibridge import probing
from optibridge.artifact import Artifact, write_metadata
from optibridge.backends import get_registry, reset_registry
from optibridge.errors import BackendError
from optibridge.modeling import OBModelForCausalLM, OBModelForSeq2SeqLM, OBModelForSequenceClassification
from optibridge.steps import CalibrationConfig, QuantizationConfig, load_calibration
from optibridge_hpu.backend import HpuBackend
from optibridge_hpu.session import HpuSession

FAKES = Path(__file__).parent / "fakes"


def real_gaudi() -> bool:
    return probing.module_present("habana_frameworks") and bool(probing.habana_devices()) and str(FAKES) not in sys.path


@pytest.fixture
def fake_gaudi(monkeypatch):
    """The fake habana_frameworks importable, one Gaudi device file, `.to("hpu")` a recorded no-op."""
    monkeypatch.syspath_prepend(str(FAKES))
    for name in [m for m in sys.modules if m.startswith("habana_frameworks")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(probing, "habana_devices", lambda: ["/dev/accel/accel0"])
    monkeypatch.setattr(probing, "hl_smi_present", lambda: True)
    import habana_frameworks

    habana_frameworks.CALLS.clear()
    habana_frameworks.install_device(monkeypatch)
    reset_registry()
    yield habana_frameworks.CALLS
    reset_registry()
    for name in [m for m in sys.modules if m.startswith("habana_frameworks")]:
        del sys.modules[name]


def test_detection_here_names_every_missing_piece_and_imports_nothing():
    status = HpuBackend().status()
    assert not status.available
    assert "habana_frameworks (Intel Gaudi software stack) not installed" in status.reason
    assert "no Gaudi device (/dev/accel/accel*)" in status.reason
    assert "habana_frameworks" not in sys.modules


def test_detection_with_the_stack_present_is_still_side_effect_free(fake_gaudi):
    for name in [m for m in sys.modules if m.startswith("habana_frameworks")]:
        del sys.modules[name]
    status = HpuBackend().status()
    assert status.available and status.devices == ("hpu",) and "quantize" in status.features
    assert "habana_frameworks" not in sys.modules  # found with find_spec, never imported


def test_loading_here_is_a_clear_error(exported):
    with pytest.raises(BackendError, match=r"backend 'hpu' is not usable here: habana_frameworks .* not installed"):
        OBModelForSequenceClassification.from_pretrained(exported("bert", "text-classification").path, backend="hpu", device="hpu")


def test_encoder_runs_the_pytorch_model_moved_to_hpu_in_an_hpu_graph_under_bf16_autocast(fake_gaudi, exported):
    artifact = exported("bert", "text-classification")
    model = OBModelForSequenceClassification.from_pretrained(artifact.path, backend="hpu", device="hpu")
    reference = OBModelForSequenceClassification.from_pretrained(artifact.path, backend="ort")
    assert model.device == torch.device("hpu") and model.backend == "hpu"
    assert ("to", "BertForSequenceClassification", "hpu") in fake_gaudi or ("to", "OutputSelector", "hpu") in fake_gaudi
    assert ("wrap_in_hpu_graph", "OutputSelector") in fake_gaudi

    seen = []
    torch_model = model.session.module.model
    torch_model.register_forward_pre_hook(
        lambda *_: seen.append((torch.is_autocast_enabled("hpu"), torch.get_autocast_dtype("hpu"), torch.is_inference_mode_enabled())))
    ids = torch.randint(5, 100, (2, 7))
    fake_gaudi.clear()
    out = model(input_ids=ids)
    assert seen == [(True, torch.bfloat16, True)]
    assert ("mark_step",) in fake_gaudi and ("to", "tensor", "hpu") in fake_gaudi
    assert isinstance(out.logits, torch.Tensor) and out.logits.dtype == torch.float32
    np.testing.assert_allclose(out.logits.numpy(), reference(input_ids=ids).logits.numpy(), atol=1e-4)
    # numpy in, numpy out through the same session
    np_out = model(input_ids=ids.numpy())
    np.testing.assert_allclose(np_out.logits, out.logits.numpy(), atol=1e-6)


def test_generate_runs_through_the_hpu_session_with_the_cache_kept_as_torch_tensors(fake_gaudi, exported_generative, monkeypatch):
    artifact = exported_generative("gpt2")
    model = OBModelForCausalLM.from_pretrained(artifact.path, backend="hpu", device="hpu", autocast="fp32")
    reference = OBModelForCausalLM.from_pretrained(artifact.path, backend="ort")
    assert ("wrap_in_hpu_graph", "CausalLMStep") in fake_gaudi
    monkeypatch.setattr(HpuSession, "run", lambda *a, **k: pytest.fail("the numpy path was used during generate()"))
    fake_gaudi.clear()
    ids = torch.tensor([[5, 9, 14, 3], [7, 7, 21, 30]])
    mask = torch.ones_like(ids)
    tokens = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=5, do_sample=False)
    expected = reference.generate(input_ids=ids, attention_mask=mask, max_new_tokens=5, do_sample=False)
    assert torch.equal(tokens, expected)
    assert fake_gaudi.count(("mark_step",)) == 5  # one lazy-mode step per decoding step


def test_seq2seq_generate_runs_all_three_graphs_on_the_hpu_session(fake_gaudi, exported_generative, monkeypatch):
    artifact = exported_generative("t5")
    model = OBModelForSeq2SeqLM.from_pretrained(artifact.path, backend="hpu", device="hpu", autocast="fp32")
    reference = OBModelForSeq2SeqLM.from_pretrained(artifact.path, backend="ort")
    assert {("wrap_in_hpu_graph", step) for step in ("EncoderStep", "DecoderStep")} <= set(fake_gaudi)
    monkeypatch.setattr(HpuSession, "run", lambda *a, **k: pytest.fail("the numpy path was used during generate()"))
    fake_gaudi.clear()
    ids = torch.tensor([[5, 9, 14, 3, 1], [7, 7, 21, 1, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]])
    greedy = dict(max_new_tokens=5, min_new_tokens=5, do_sample=False)
    assert torch.equal(model.generate(input_ids=ids, attention_mask=mask, **greedy),
                       reference.generate(input_ids=ids, attention_mask=mask, **greedy))
    assert fake_gaudi.count(("mark_step",)) == 1 + 5  # the encoder once, then one per decoding step


def test_unknown_options_and_devices_are_errors(fake_gaudi, exported):
    path = exported("bert", "text-classification").path
    with pytest.raises(BackendError, match="unknown option.*hpu_graph .*valid: hpu_graphs, autocast, source_model"):
        OBModelForSequenceClassification.from_pretrained(path, backend="hpu", device="hpu", hpu_graph=False)
    with pytest.raises(BackendError, match="autocast must be one of"):
        OBModelForSequenceClassification.from_pretrained(path, backend="hpu", device="hpu", autocast="fp16")
    with pytest.raises(BackendError, match="device must be 'hpu' or 'hpu:N'"):
        HpuBackend().load(Artifact.load(path), device="cuda")


class FakeInc:
    """neural_compressor.torch.quantization's FP8 surface, recording calls."""

    def __init__(self):
        self.calls = []

    def FP8Config(self, **kwargs):  # noqa: N802 - INC's name
        return types.SimpleNamespace(**kwargs)

    def prepare(self, model, config):
        self.calls.append(("prepare", config.mode))
        self.prefix = Path(config.dump_stats_path)
        model.register_forward_hook(lambda *_: self.calls.append(("measured",)))
        return model

    def finalize_calibration(self, model):
        self.calls.append(("finalize",))
        self.prefix.with_name(self.prefix.name + "_hooks_maxabs.json").write_text("{}")

    def convert(self, model, config):
        self.calls.append(("convert", config.mode, config.scale_method, config.dump_stats_path))
        return model


def test_fp8_measures_on_calibration_samples_then_converts_at_load(fake_gaudi, exported, tmp_path, monkeypatch):
    import optibridge_hpu.fp8 as fp8

    inc = FakeInc()
    monkeypatch.setattr(fp8, "inc_quantization", lambda: inc)
    artifact = exported("bert", "text-classification")
    out = tmp_path / "fp8"
    shutil.copytree(artifact.path, out)
    calibration = load_calibration(artifact, CalibrationConfig())  # quantize() loads it: fp8 declares needs_calibration
    report = HpuBackend().quantize(artifact, QuantizationConfig(mode="fp8"), out, calibration=calibration)
    assert inc.calls[0] == ("prepare", "MEASURE") and inc.calls[-1] == ("finalize",)
    assert inc.calls.count(("measured",)) == report["settings"]["samples"] > 0
    assert report["settings"]["statistics"] == ["fp8/measure_hooks_maxabs.json"]
    assert (out / artifact.metadata.main_graph.file).read_bytes() == artifact.graph_path().read_bytes()

    metadata = Artifact.load(out).metadata
    metadata.steps.append({"step": "quantize", "backend": "hpu", "config": QuantizationConfig(mode="fp8").to_dict()})
    write_metadata(out, metadata)
    model = OBModelForSequenceClassification.from_pretrained(out, backend="hpu", device="hpu")
    assert inc.calls[-1] == ("convert", "QUANTIZE", "maxabs_hw", str(out / "fp8" / "measure"))
    assert model(input_ids=torch.randint(5, 100, (1, 4))).logits.shape == (1, model.config.num_labels)


def test_fp8_is_a_known_mode_that_only_the_hpu_backend_does(exported, tmp_path):
    from optibridge import quantize

    assert QuantizationConfig(mode="fp8").mode == "fp8"
    with pytest.raises(BackendError, match="backend 'hpu' is not usable here"):
        quantize(exported("bert", "text-classification").path, QuantizationConfig(mode="fp8"), tmp_path / "q", backend="hpu")
    with pytest.raises(BackendError, match="fp8.*hpu"):
        quantize(exported("bert", "text-classification").path, QuantizationConfig(mode="fp8"), tmp_path / "q2", backend="ort")


@pytest.mark.hpu
@pytest.mark.skipif(not real_gaudi(), reason="needs a Gaudi device and habana_frameworks")
def test_on_gaudi_generate_matches_pytorch(exported_generative, tiny_generative):
    from transformers import AutoModelForCausalLM

    reset_registry()
    model = OBModelForCausalLM.from_pretrained(exported_generative("gpt2").path, backend="hpu", device="hpu", autocast="fp32")
    assert get_registry().get("hpu").status().available and model.device.type == "hpu"
    torch_model = AutoModelForCausalLM.from_pretrained(tiny_generative("gpt2")).eval()
    ids = torch.tensor([[5, 9, 14, 3]])
    expected = torch_model.generate(input_ids=ids, max_new_tokens=5, do_sample=False)
    assert torch.equal(model.generate(input_ids=ids.to("hpu"), max_new_tokens=5, do_sample=False).cpu(), expected)
