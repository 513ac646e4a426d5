"""What this CPU can do for int8 arithmetic, read from ``/proc/cpuinfo`` and ``platform`` only.

No runtime is imported: backends map the detected :data:`CPU_PRESETS` name to their own settings
(see ``plugins/optibridge_ort/presets.py``). The preset names describe the integer dot-product
instructions a CPU has, because that is what decides how int8 weights should be stored:

* ``avx2``        -- x86 without VNNI: int8 products are summed in 16-bit registers (vpmaddubsw)
  and can saturate, so weights are kept to 7 bits.
* ``avx512``      -- AVX-512 without VNNI: wider registers, the same 16-bit saturation.
* ``avx512-vnni`` -- AVX-512 VNNI or AVX-VNNI (vpdpbusd accumulates into 32 bits: no saturation);
  AMX machines (Sapphire Rapids and later) have VNNI too and use this preset.
* ``arm64``       -- ARMv8 (sdot/udot or widening multiplies, 32-bit accumulation).

Float precisions below fp32 are a separate axis (:func:`float_precisions`): bf16 needs
AVX-512 BF16 or AMX-BF16, fp16 needs AVX-512 FP16 or AMX-FP16. Without them a runtime emulates
the type (slower than fp32) or silently runs fp32, so optibridge offers them only where they exist.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass, field
from pathlib import Path

from .errors import OptibridgeError

CPU_PRESETS = ("avx2", "avx512", "avx512-vnni", "arm64")
"""Names of the int8 presets, one per class of integer dot-product hardware."""

SATURATING_PRESETS = ("avx2", "avx512")
"""Presets whose int8 dot products sum u8*s8 pairs into 16-bit lanes (vpmaddubsw) and can saturate:
runtimes must be given 7-bit weights there (ONNX Runtime's ``reduce_range``, NNCF's overflow fix).
Measured on an AVX2-only AMD EPYC (2026-12-01): OpenVINO int8 static MiniLM with 8-bit weights,
mean cosine 0.985 to float; with 7-bit weights 0.996 (docs/precision.md)."""

_ARM_MACHINES = ("aarch64", "arm64", "armv8")

FLOAT_PRECISIONS = ("f32", "bf16", "f16")
"""Inference precisions, with OpenVINO's spelling; ``f32`` runs everywhere."""
PRECISION_FLAGS = {"bf16": ("avx512_bf16", "amx_bf16"), "f16": ("avx512_fp16", "amx_fp16")}
"""x86 ``/proc/cpuinfo`` flags that give a precision native arithmetic (any one of them is enough)."""
_PRECISION_ALIASES = {"fp32": "f32", "float32": "f32", "bfloat16": "bf16", "fp16": "f16", "float16": "f16"}


@dataclass(frozen=True)
class CpuInfo:
    """The facts about this CPU that quantization settings depend on."""

    model: str
    machine: str
    """``platform.machine()``: x86_64, aarch64, arm64, ..."""
    flags: frozenset[str] = field(default_factory=frozenset)

    @property
    def is_arm64(self) -> bool:
        return self.machine.lower() in _ARM_MACHINES

    @property
    def avx2(self) -> bool:
        return "avx2" in self.flags

    @property
    def avx512(self) -> bool:
        return "avx512f" in self.flags and "avx512bw" in self.flags

    @property
    def vnni(self) -> bool:
        """AVX-512 VNNI, or AVX-VNNI (the 256-bit form on client CPUs): int8 dot products into 32 bits."""
        return "avx512_vnni" in self.flags or "avx_vnni" in self.flags

    @property
    def amx(self) -> bool:
        return "amx_int8" in self.flags or "amx_tile" in self.flags

    @property
    def bf16(self) -> bool:
        return any(flag in self.flags for flag in PRECISION_FLAGS["bf16"])

    @property
    def fp16(self) -> bool:
        return any(flag in self.flags for flag in PRECISION_FLAGS["f16"])

    @property
    def int8_saturates(self) -> bool:
        """Whether this CPU's int8 dot products sum u8*s8 pairs in 16 bits, where 8-bit weights overflow:
        x86 without VNNI/AMX (AVX2 and AVX-512 ``vpmaddubsw``, and SSSE3's ``pmaddubsw`` before them)."""
        return not self.is_arm64 and not (self.vnni or self.amx)

    def features(self) -> list[str]:
        """The detected features this module knows about, for printing."""
        names = {"avx2": self.avx2, "avx512": self.avx512, "vnni": self.vnni, "amx": self.amx, "arm64": self.is_arm64}
        return [name for name, present in names.items() if present]

    def preset(self) -> str:
        """The int8 preset for this CPU (one of :data:`CPU_PRESETS`)."""
        if self.is_arm64:
            return "arm64"
        if self.vnni or self.amx:
            return "avx512-vnni"
        if self.avx512:
            return "avx512"
        if self.avx2:
            return "avx2"
        raise OptibridgeError(
            f"this CPU ({self.model or self.machine}) has neither AVX2 nor ARM64 int8 instructions, so int8 "
            f"models would run slower than float; pass a preset explicitly ({', '.join(CPU_PRESETS)}) "
            "to quantize for another machine"
        )


def needs_seven_bit_weights(preset: str, reduce_range: bool | None = None) -> bool:
    """Whether int8 weights for ``preset`` ("auto": this machine's) must be kept to 7 bits; an explicit
    ``reduce_range`` wins."""
    if reduce_range is not None:
        return reduce_range
    if preset == "auto":
        return detect_cpu().int8_saturates
    return preset in SATURATING_PRESETS


def parse_cpuinfo(text: str, machine: str) -> CpuInfo:
    """Parse ``/proc/cpuinfo`` text (x86 ``flags`` or ARM ``Features`` lines) of the first CPU."""
    model = ""
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "cpu model", "hardware") and not model:
            model = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = set(value.split())
    return CpuInfo(model=model, machine=machine, flags=frozenset(flags))


def detect_cpu(cpuinfo: Path = Path("/proc/cpuinfo")) -> CpuInfo:
    """This machine's CPU; on systems without ``/proc/cpuinfo`` (macOS, Windows) only the architecture is known."""
    machine = platform.machine()
    try:
        text = cpuinfo.read_text()
    except OSError:
        text = ""
    info = parse_cpuinfo(text, machine)
    if not info.model:
        info = CpuInfo(model=platform.processor() or machine, machine=machine, flags=info.flags)
    return info


def normalize_preset(name: str) -> str:
    """``avx512_vnni`` and ``AVX512-VNNI`` both mean ``avx512-vnni``; "auto" stays "auto"."""
    return name.strip().lower().replace("_", "-")


def normalize_precision(name: str) -> str:
    """``bf16``/``bfloat16`` → ``bf16``, ``fp16``/``float16`` → ``f16``, ``fp32``/``float32`` → ``f32``."""
    key = str(name).strip().lower()
    key = _PRECISION_ALIASES.get(key, key)
    if key not in FLOAT_PRECISIONS:
        raise OptibridgeError(f"unknown inference precision {name!r}; valid: {', '.join(FLOAT_PRECISIONS)}")
    return key


def float_precisions(cpu: CpuInfo | None = None) -> tuple[str, ...]:
    """The inference precisions this CPU (default: this machine's) computes natively, ``f32`` first.

    x86 only: the flags are read from ``/proc/cpuinfo``. Other CPUs (ARM, or a system without
    ``/proc/cpuinfo``) report ``f32`` alone, so nothing lower is offered without evidence.
    """
    cpu = cpu or detect_cpu()
    if cpu.is_arm64:
        return ("f32",)
    return ("f32",) + tuple(p for p in ("bf16", "f16") if (cpu.bf16 if p == "bf16" else cpu.fp16))


def check_precision(name: str, cpu: CpuInfo | None = None) -> str:
    """``name`` normalized, or an error naming the CPU flags it needs when this CPU lacks them."""
    precision = normalize_precision(name)
    cpu = cpu or detect_cpu()
    if precision not in float_precisions(cpu):
        raise OptibridgeError(
            f"inference precision {precision} needs a CPU with {' or '.join(PRECISION_FLAGS[precision])}, which this CPU "
            f"({cpu.model or cpu.machine}) does not report; it would be emulated (slower than f32) or run as f32. "
            "Use f32 here, or build and run the artifact on a CPU with those instructions"
        )
    return precision
