"""Precision as a config axis: CPU detection, OpenVINO inference_precision, bench/tune candidates.

CPU flags are faked by replacing ``optibridge.hardware.detect_cpu``; what must really compute in
bf16 runs only on a CPU that has AVX-512 BF16 / AMX (elsewhere OpenVINO would fall back to f32).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import optibridge.hardware as hardware
from optibridge import OBModelForSequenceClassification, optimize, quantize
from optibridge.artifact import Artifact
from optibridge.backend import BackendStatus
from optibridge.bench.configs import CONFIGS, plan
from optibridge.errors import BackendError, OptibridgeError
from optibridge.hardware import CpuInfo, check_precision, float_precisions, parse_cpuinfo
from optibridge.steps import OptimizationConfig, QuantizationConfig
from optibridge.steps.errors import ConfigError

SPR_FLAGS = "fpu sse2 avx2 avx512f avx512bw avx512_vnni avx512_bf16 amx_bf16 avx512_fp16 amx_tile amx_int8"
ZEN4_FLAGS = "fpu sse2 avx2 avx512f avx512bw avx512_vnni avx512_bf16"
AVX2_FLAGS = "fpu sse2 avx2 fma"
NATIVE_BF16 = "bf16" in float_precisions()
needs_bf16 = pytest.mark.skipif(not NATIVE_BF16, reason="this CPU has no AVX-512 BF16 / AMX-BF16: OpenVINO cannot run bf16 here")


def cpu(flags: str, machine: str = "x86_64") -> CpuInfo:
    return parse_cpuinfo(f"model name\t: Test CPU\nflags\t\t: {flags}\n", machine)


@pytest.fixture
def fake_cpu(monkeypatch):
    """``fake_cpu(flags)``: make every precision check in this process see a CPU with those flags."""

    def use(flags: str) -> None:
        monkeypatch.setattr(hardware, "detect_cpu", lambda *a, **k: cpu(flags))

    return use


# -- detection --------------------------------------------------------------------------------


@pytest.mark.parametrize(("flags", "machine", "expected"), [
    (SPR_FLAGS, "x86_64", ("f32", "bf16", "f16")),
    (ZEN4_FLAGS, "x86_64", ("f32", "bf16")),
    ("avx2 amx_fp16", "x86_64", ("f32", "f16")),
    (AVX2_FLAGS, "x86_64", ("f32",)),
    ("fp asimd bf16", "aarch64", ("f32",)),  # no evidence read on ARM: nothing below f32 is offered
])
def test_float_precisions_follow_the_cpu_flags(flags, machine, expected):
    assert float_precisions(cpu(flags, machine)) == expected


def test_a_benchmark_machine_record_tells_bf16_cpus_apart(monkeypatch):
    """bench/tune results depend on bf16: the record names it, and two CPUs differing only in it are two machines."""
    import optibridge.bench.machine as machine

    records = {}
    for name, flags in {"zen4": ZEN4_FLAGS, "no-bf16": ZEN4_FLAGS.replace(" avx512_bf16", "")}.items():
        monkeypatch.setattr(machine, "detect_cpu", lambda flags=flags: cpu(flags))
        records[name] = machine.describe_machine(threads=2)
    assert records["zen4"]["cpu_flags"] == ["avx2", "avx512", "vnni", "bf16"] and "vnni/bf16" in records["zen4"]["title"]
    assert records["no-bf16"]["cpu_flags"] == ["avx2", "avx512", "vnni"]
    assert records["zen4"]["fingerprint"] != records["no-bf16"]["fingerprint"]


def test_asking_for_a_precision_the_cpu_lacks_names_the_missing_flags():
    with pytest.raises(OptibridgeError, match="avx512_bf16 or amx_bf16"):
        check_precision("bfloat16", cpu(AVX2_FLAGS))
    with pytest.raises(OptibridgeError, match="avx512_fp16 or amx_fp16"):
        check_precision("fp16", cpu(ZEN4_FLAGS))
    assert check_precision("BF16", cpu(ZEN4_FLAGS)) == "bf16"
    assert check_precision("float32", cpu(AVX2_FLAGS)) == "f32"


def test_step_configs_take_a_checked_inference_precision():
    assert OptimizationConfig(inference_precision="bfloat16").inference_precision == "bf16"
    config = QuantizationConfig(mode="static", inference_precision="bf16")
    assert QuantizationConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError, match="unknown inference precision 'int3'; valid: f32, bf16, f16"):
        QuantizationConfig(mode="static", inference_precision="int3")


# -- OpenVINO ---------------------------------------------------------------------------------


def test_openvino_offers_bf16_only_on_cpus_that_have_it(fake_cpu):
    from optibridge.backends import get_registry

    backend = get_registry().get("openvino")
    fake_cpu(SPR_FLAGS)  # AVX-512 FP16 without AMX-FP16: OpenVINO's f16 measured slower than f32 there
    assert "bf16" in backend.status().features and "f16" not in backend.status().features
    fake_cpu(SPR_FLAGS + " amx_fp16")
    assert {"bf16", "f16"} <= set(backend.status().features)
    fake_cpu(AVX2_FLAGS)
    assert not {"bf16", "f16"} & set(backend.status().features)


def test_bf16_on_a_cpu_without_it_is_refused_with_the_flag_named(exported, tmp_path, fake_cpu):
    source = exported("bert", "text-classification")
    fake_cpu(AVX2_FLAGS)
    with pytest.raises(BackendError, match="avx512_bf16 or amx_bf16"):
        OBModelForSequenceClassification.from_pretrained(source.path, backend="openvino", inference_precision="bf16")
    with pytest.raises(OptibridgeError, match="avx512_bf16 or amx_bf16"):
        optimize(source.path, OptimizationConfig(inference_precision="bf16"), tmp_path / "out", backend="openvino")
    assert not (tmp_path / "out").exists()


def test_a_backend_without_the_precision_refuses_the_step(exported, tmp_path, fake_cpu):
    fake_cpu(SPR_FLAGS)
    with pytest.raises(ConfigError, match="backend 'ort' cannot run graphs in bf16"):
        optimize(exported("bert", "text-classification").path, OptimizationConfig(inference_precision="bf16"),
                 tmp_path / "out", backend="ort")


def test_the_recorded_precision_is_shown_by_info_and_followed_on_load(exported, tmp_path, fake_cpu, capsys):
    """An fp32 graph compiled in bf16: the step records it, `info` shows it, loading follows it."""
    from optibridge.cli import main

    fake_cpu(SPR_FLAGS)  # recording works on any CPU that claims bf16; running it is tested below
    source = exported("bert", "text-classification")
    out = tmp_path / "bf16"
    optimize(source.path, OptimizationConfig(inference_precision="bf16"), out, backend="openvino")
    meta = Artifact.load(out).metadata
    assert meta.extra["openvino"]["inference_precision"] == "bf16"
    assert meta.steps[-1]["settings"]["inference_precision"] == "bf16"
    assert main(["info", str(out)]) in (0, None)
    assert "inference precision: bf16" in capsys.readouterr().out
    if NATIVE_BF16:
        model = OBModelForSequenceClassification.from_pretrained(out, backend="openvino")
        assert model.inference_precision == "bf16"
        forced = OBModelForSequenceClassification.from_pretrained(out, backend="openvino", inference_precision="f32")
        assert forced.inference_precision == "f32"


def test_an_untrusted_recorded_precision_is_checked(exported, tmp_path, fake_cpu):
    fake_cpu(SPR_FLAGS)
    out = tmp_path / "ir"
    optimize(exported("bert", "text-classification").path, output_dir=out, backend="openvino")
    artifact = Artifact.load(out)
    artifact.metadata.extra["openvino"]["inference_precision"] = "int3"
    with pytest.raises(BackendError, match="unknown inference precision 'int3'"):
        hardware_backend().load(artifact, graph="model")


def hardware_backend():
    from optibridge.backends import get_registry

    return get_registry().get("openvino")


def test_f32_stays_the_default_of_from_pretrained(exported):
    model = OBModelForSequenceClassification.from_pretrained(exported("bert", "text-classification").path, backend="openvino")
    assert model.inference_precision == "f32"


@needs_bf16
def test_int8_static_with_bf16_rest_runs_in_bf16_within_its_accuracy(exported, tmp_path):
    source = exported("bert", "text-classification")
    result = quantize(source.path, QuantizationConfig(mode="static", inference_precision="bf16"), tmp_path / "q",
                      backend="openvino", accuracy_budget="cosine>=0.99")
    assert result.step["settings"]["inference_precision"] == "bf16"
    model = OBModelForSequenceClassification.from_pretrained(result.artifact.path, backend="openvino")
    assert model.inference_precision == "bf16"
    reference = OBModelForSequenceClassification.from_pretrained(source.path, backend="openvino")
    ids = torch.randint(5, 90, (2, 12))
    got = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits.numpy()
    want = reference(input_ids=ids, attention_mask=torch.ones_like(ids)).logits.numpy()
    assert got.shape == want.shape and np.isfinite(got).all()  # accuracy: the budget above, on the step's own batch
    assert result.accuracy["model"].cosine >= 0.99


# -- bench / tune candidates ------------------------------------------------------------------


def _statuses(features):
    return {"openvino": BackendStatus("openvino", True, ("cpu",), features=("run", "optimize", "quantize", *features)),
            "ort": BackendStatus("ort", True, ("cpu",), features=("run", "optimize", "quantize"))}


def test_precision_candidates_are_offered_only_where_the_backend_has_the_precision():
    default = {(c.backend, c.config): c for c in plan(None, None, _statuses(("bf16",)))}
    assert {("openvino", c) for c in ("bf16", "int8-static+bf16", "int8-static-all+bf16")} <= set(default)
    assert not default[("openvino", "bf16")].skip
    assert ("openvino", "f16") not in default and ("ort", "bf16") not in default
    without = {c.config for c in plan(None, None, _statuses(())) if c.config in CONFIGS}
    assert "int8-static" in without and not {c for c in without if CONFIGS[c].precision}
    asked = {(c.backend, c.config): c for c in plan(["ort", "openvino"], ["bf16"], _statuses(()))}
    assert "does not offer bf16" in (asked[("openvino", "bf16")].skip or "")
    assert "does not offer bf16" in (asked[("ort", "bf16")].skip or "")


def test_real_openvino_status_decides_the_tune_candidates(fake_cpu):
    from optibridge.backends import get_registry

    status = get_registry().get("openvino").status()
    fake_cpu(AVX2_FLAGS)
    without = get_registry().get("openvino").status()
    names = {c.config for c in plan(["openvino"], None, {"openvino": without})}
    assert "bf16" not in names and "int8-static" in names
    fake_cpu(SPR_FLAGS + " amx_fp16")
    names = {c.config for c in plan(["openvino"], None, {"openvino": get_registry().get("openvino").status()})}
    assert {"bf16", "f16", "int8-static+bf16"} <= names
    assert status.available


@needs_bf16
def test_tune_builds_runs_and_gates_the_bf16_candidates(tiny_model, tmp_path):
    from optibridge.accuracy import AccuracyBudget
    from optibridge.bench.runner import BenchRequest
    from optibridge.bench.tune import tune
    from optibridge.console import console

    request = BenchRequest(model=str(tiny_model("bert", "text-classification")), backends=["openvino"],
                           configs=["bf16", "int8-static+bf16"], batch_sizes=[1], seq_lens=[16],
                           warmup=1, runs=3, threads=1, timeout_s=240)
    best, run = tune(request, AccuracyBudget.parse("cosine>=0.99"), tmp_path / "tuned", console, show_progress=False)
    cells = {c.config: c for c in run.cells if c.backend == "openvino"}
    assert set(cells) == {"bf16", "int8-static+bf16"}
    for name, cell in cells.items():
        assert cell.ok, f"{name}: {cell.reason}"
        assert cell.accuracy is not None and cell.accuracy.cosine >= 0.99
        assert cell.settings["inference_precision"] == "bf16"
    assert Artifact.load(tmp_path / "tuned").metadata.steps[-1]["step"] == "tune"
