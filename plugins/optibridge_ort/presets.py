"""int8 settings per CPU class, as data. The names are :data:`optibridge.hardware.CPU_PRESETS`.

ONNX Runtime's x86 int8 kernels multiply uint8 activations by int8 weights (U8S8). How the
products are summed decides whether 8-bit weights are safe:

* without VNNI (AVX2, AVX-512F/BW) ``vpmaddubsw`` adds pairs of u8*s8 products into a signed
  16-bit lane, which saturates when both are large; ORT's guidance is to quantize weights to 7
  bits (``reduce_range``) there;
* with VNNI (``vpdpbusd``) and on ARM64 (sdot/udot, widening multiplies) products accumulate in
  32 bits: full 8-bit weights, no saturation.

Per-channel weight scales are on everywhere: one scale per output column costs nothing at run
time and measured on all-MiniLM-L6-v2 it is the difference between mean cosine 0.95 (per-tensor)
and 0.99 (per-channel) to float32.
"""

from __future__ import annotations

from dataclasses import dataclass

from optibridge.errors import BackendError
from optibridge.hardware import CPU_PRESETS, SATURATING_PRESETS


@dataclass(frozen=True)
class Int8Preset:
    name: str
    per_channel: bool
    reduce_range: bool
    """7-bit weights, against 16-bit accumulator saturation on CPUs without VNNI."""
    activation_type: str = "uint8"
    weight_type: str = "int8"
    reason: str = ""


PRESETS: dict[str, Int8Preset] = {
    p.name: p
    for p in (
        Int8Preset("avx2", per_channel=True, reduce_range=True,
                   reason="AVX2 without VNNI: u8*s8 pairs sum into 16-bit lanes (vpmaddubsw) and can saturate; 7-bit weights avoid it"),
        Int8Preset("avx512", per_channel=True, reduce_range=True,
                   reason="AVX-512 without VNNI: the same 16-bit saturation as AVX2, twice the width"),
        Int8Preset("avx512-vnni", per_channel=True, reduce_range=False,
                   reason="VNNI (vpdpbusd) accumulates u8*s8 products in 32 bits: full 8-bit weights are safe and fastest"),
        Int8Preset("arm64", per_channel=True, reduce_range=False,
                   reason="ARM64 int8 kernels (sdot/udot or widening multiplies) accumulate in 32 bits: full 8-bit weights"),
    )
}
assert tuple(PRESETS) == CPU_PRESETS, "every preset name the core knows needs settings here"
assert {p.name for p in PRESETS.values() if p.reduce_range} == set(SATURATING_PRESETS), "7-bit weights exactly where int8 saturates"


def get_preset(name: str) -> Int8Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise BackendError(f"unknown int8 preset {name!r} for ONNX Runtime; valid presets: {', '.join(PRESETS)}") from None
