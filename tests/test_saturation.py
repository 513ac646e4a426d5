"""int8 weights and CPUs whose int8 dot products saturate: what quantize records, and the warning on load."""

from __future__ import annotations

import warnings

import pytest

from optibridge import OBModelForSequenceClassification, quantize
from optibridge.hardware import needs_seven_bit_weights, parse_cpuinfo
from optibridge.saturation import Int8SaturationWarning, recorded_weight_bits, saturation_risk
from optibridge.steps import QuantizationConfig

AVX2 = parse_cpuinfo("model name : Old Xeon\nflags : sse4_2 avx2 fma\n", "x86_64")
VNNI = parse_cpuinfo("model name : New Xeon\nflags : avx2 avx512f avx512bw avx512_vnni\n", "x86_64")
ARM = parse_cpuinfo("Features : fp asimd asimddp\n", "aarch64")
SSE = parse_cpuinfo("model name : Older Xeon\nflags : sse4_2 ssse3\n", "x86_64")
AMX = parse_cpuinfo("model name : AMX Xeon\nflags : avx2 amx_tile amx_int8\n", "x86_64")


def _quantize_step(**settings):
    return {"step": "quantize", "backend": "x", "settings": settings}


@pytest.mark.parametrize("steps, bits", [
    ([{"step": "export"}], []),
    ([_quantize_step(weight_bits=8)], [8]),
    ([_quantize_step(reduce_range=True)], [7]),  # an ONNX Runtime artifact from before weight_bits
    ([_quantize_step(graphs={"unet": {"weight_bits": 7}, "text_encoder": {"weight_bits": 8}})], [7, 8]),
    ([{"step": "train", "qat": {"weight_bits": 7}}], [7]),
    ([_quantize_step(bits=4, block_size=32)], []),  # int4 weight-only: no int8 dot product
])
def test_recorded_weight_bits_are_read_from_every_kind_of_step(steps, bits):
    assert recorded_weight_bits(steps) == bits


def test_8_bit_weights_are_a_risk_only_on_a_cpu_without_vnni():
    eight, seven = [_quantize_step(weight_bits=8)], [_quantize_step(weight_bits=7)]
    message = saturation_risk(eight, AVX2)
    assert message and "Old Xeon, preset avx2" in message and "--reduce-range" in message
    assert saturation_risk(eight, VNNI) is None and saturation_risk(eight, ARM) is None
    assert saturation_risk(seven, AVX2) is None


@pytest.mark.parametrize("cpu, saturates", [(AVX2, True), (SSE, True), (VNNI, False), (AMX, False), (ARM, False)])
def test_quantize_and_load_give_the_same_answer_for_every_kind_of_cpu(cpu, saturates, monkeypatch):
    """What quantize does (7-bit weights) and what loading warns about are one fact about the CPU."""
    import optibridge.hardware as hardware

    monkeypatch.setattr(hardware, "detect_cpu", lambda *a, **k: cpu)
    assert cpu.int8_saturates is saturates
    assert needs_seven_bit_weights("auto") is saturates
    assert (saturation_risk([_quantize_step(weight_bits=8)], cpu) is not None) is saturates
    if cpu is SSE:  # no preset exists before AVX2: the message names what is missing instead
        assert "Older Xeon, no AVX2" in saturation_risk([_quantize_step(weight_bits=8)], cpu)


@pytest.mark.parametrize("cpu, warned", [(AVX2, True), (VNNI, False)])
def test_loading_a_full_range_int8_artifact_warns_where_it_can_saturate(cpu, warned, exported, tmp_path, monkeypatch):
    config = QuantizationConfig(mode="dynamic", preset="avx512-vnni")  # 8-bit weights, as a VNNI machine makes them
    artifact = quantize(exported("bert", "text-classification").path, config, tmp_path / "int8", backend="ort").artifact
    assert recorded_weight_bits(artifact.metadata.steps) == [8]
    monkeypatch.setattr("optibridge.saturation.detect_cpu", lambda: cpu)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        OBModelForSequenceClassification.from_pretrained(artifact.path)
    found = [w for w in caught if issubclass(w.category, Int8SaturationWarning)]
    assert len(found) == int(warned)
    if warned:
        assert found[0].filename == __file__  # points at the caller's from_pretrained line


def test_quantizing_here_records_the_weight_width_this_cpu_needs(exported, tmp_path):
    result = quantize(exported("bert", "text-classification").path, QuantizationConfig(mode="dynamic"), tmp_path / "int8", backend="ort")
    assert recorded_weight_bits(result.artifact.metadata.steps) == [7 if needs_seven_bit_weights("auto") else 8]
    assert saturation_risk(result.artifact.metadata.steps) is None  # what is quantized here is safe here
