"""Whether an int8 artifact's weights can saturate on this CPU.

CPUs without VNNI (the ``avx2`` and ``avx512`` presets of :mod:`optibridge.hardware`) sum pairs of
u8 x s8 products in 16-bit lanes (``vpmaddubsw``): 2 x 255 x 127 does not fit, so 8-bit weights can
overflow there, silently and depending on the data. Quantizing on such a CPU gives 7-bit weights
(ONNX Runtime's ``reduce_range``, NNCF's overflow fix); an artifact quantized on a VNNI machine, or
with ``--full-range``, carries 8-bit ones. Measured on an AVX2-only EPYC (2026-12-01): OpenVINO int8
static MiniLM at mean cosine 0.985 with 8-bit weights, 0.996 with 7-bit (docs/precision.md).

The backends record ``weight_bits`` in their quantize step's settings (per graph for a pipeline)
and QAT in its train step; older ONNX Runtime artifacts record ``reduce_range``.
"""

from __future__ import annotations

import warnings
from typing import Any, Iterable, Mapping

from .hardware import CpuInfo, detect_cpu


class Int8SaturationWarning(UserWarning):
    """An artifact's 8-bit int8 weights run on a CPU whose int8 dot products can saturate."""


def _settings_bits(settings: Mapping[str, Any]) -> list[int]:
    if "graphs" in settings and isinstance(settings["graphs"], Mapping):  # a pipeline: settings per graph
        return [b for graph in settings["graphs"].values() if isinstance(graph, Mapping) for b in _settings_bits(graph)]
    if isinstance(settings.get("weight_bits"), int):
        return [settings["weight_bits"]]
    if isinstance(settings.get("reduce_range"), bool):
        return [7 if settings["reduce_range"] else 8]
    return []


def recorded_weight_bits(steps: Iterable[Mapping[str, Any]]) -> list[int]:
    """The int8 weight widths the artifact's steps recorded (empty for a float artifact, or one that did not record them)."""
    found: list[int] = []
    for step in steps:
        if step.get("step") == "quantize" and isinstance(step.get("settings"), Mapping):
            found += _settings_bits(step["settings"])
        qat = step.get("qat") if step.get("step") == "train" else None
        if isinstance(qat, Mapping) and isinstance(qat.get("weight_bits"), int):
            found.append(qat["weight_bits"])
    return found


def saturation_risk(steps: Iterable[Mapping[str, Any]], cpu: CpuInfo | None = None) -> str | None:
    """Why this artifact's int8 results may be wrong on ``cpu`` (default: this machine's), or None."""
    if 8 not in recorded_weight_bits(steps):
        return None
    cpu = cpu or detect_cpu()
    if not cpu.int8_saturates:
        return None
    kind = f"preset {cpu.preset()}" if cpu.avx2 else "no AVX2"
    return (f"this artifact has 8-bit int8 weights, and this CPU ({cpu.model or cpu.machine}, {kind}) has no VNNI: "
            "its int8 dot products are summed in 16 bits and can saturate, which silently costs accuracy. "
            "Quantize on this machine (preset auto) or with --reduce-range to get 7-bit weights")


def warn_if_int8_may_saturate(steps: Iterable[Mapping[str, Any]], cpu: CpuInfo | None = None) -> None:
    message = saturation_risk(steps, cpu)
    if message:
        warnings.warn(message, Int8SaturationWarning, stacklevel=3)
