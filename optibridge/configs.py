"""What an optimize or quantize step does, as frozen dataclasses that serialise into ``optibridge.json``.

Every value is checked when the config is built, and an error lists the valid values: a typo
fails before any model is loaded. ``to_dict``/``from_dict`` round-trip exactly. The quantization
*mode* is the exception: modes are declared by the installed plugins, so ``quantize()`` checks it
against the registry (and lists what is registered) before loading anything.

This module is part of the contract below :mod:`optibridge.backend`: it imports no verb and no
registry, so backends, the exporter and the verbs can all depend on it.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping

import numpy as np

from .errors import ConfigError, OptibridgeError
from .hardware import CPU_PRESETS, normalize_precision, normalize_preset

OPTIMIZATION_LEVELS = {
    1: "the runtime's basic graph optimizations (constant folding, redundant nodes)",
    2: "O1 + transformer fusions (attention, skip/LayerNorm, bias-GELU, RMSNorm)",
    3: "O2 + GELU approximation (FastGelu)",
    4: "O3 + float16 weights and activations (GPU targets)",
}
TARGET_DEVICES = ("cpu", "gpu")

MODE_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
INT4_ALGORITHMS = ("rtn", "hqq")
INT4_COMPUTE = ("int8", "f32")
"""What int4 weight-only MatMuls compute in on ONNX Runtime's CPU provider (see ``QuantizationConfig.int4_compute``)."""
PRESETS = ("auto", *CPU_PRESETS)


def _choice(what: str, value: Any, valid: tuple[Any, ...] | list[Any]) -> None:
    if value not in valid:
        raise ConfigError(f"unknown {what} {value!r}; valid: {', '.join(str(v) for v in valid)}")


def _precision(value: str | None) -> str | None:
    """Checked spelling of an ``inference_precision`` field (None: the backend's default, f32)."""
    if value is None:
        return None
    try:
        return normalize_precision(value)
    except OptibridgeError as exc:
        raise ConfigError(str(exc)) from None


def _known_keys(cls: type, data: Mapping[str, Any]) -> dict[str, Any]:
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"unknown {cls.__name__} field(s) {', '.join(unknown)}; valid: {', '.join(sorted(names))}")
    return dict(data)


def _tuple(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(v.strip() for v in value.split(",") if v.strip())
    return tuple(value)


@dataclass(frozen=True)
class OptimizationConfig:
    """Graph optimization: ``level`` 1-4 (see :data:`OPTIMIZATION_LEVELS`) for a ``device`` target."""

    level: int = 2
    device: str = "cpu"
    """The device the graph is optimized for: "cpu" or "gpu". Level 4 (fp16) is for GPUs."""
    force: bool = False
    """Allow level 4 for a CPU target anyway (fp16 arithmetic is emulated on most CPUs: slower)."""
    inference_precision: str | None = None
    """The precision the graphs are compiled in when loaded (f32, bf16, f16) on a backend that
    declares it, recorded in the artifact; None keeps f32. Checked against the CPU when the step runs."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "inference_precision", _precision(self.inference_precision))
        _choice("optimization level", self.level, tuple(OPTIMIZATION_LEVELS))
        _choice("target device", self.device, TARGET_DEVICES)
        if self.level == 4 and self.device == "cpu" and not self.force:
            raise ConfigError(
                "O4 converts the graph to float16, which CPUs without native fp16 arithmetic run slower than "
                "float32 (ONNX Runtime's CPU kernels upcast most fp16 ops); use -O 3 for a CPU target, "
                "--device gpu for a GPU target, or --force to write an fp16 graph anyway. For float16 weights "
                "with float32 arithmetic (half the memory traffic of a decoder), see `optibridge quantize --mode "
                "f16-weights` (`optibridge quantize --help` lists each mode and the backend offering it)"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "OptimizationConfig":
        return cls(**_known_keys(cls, data))


@dataclass(frozen=True)
class CalibrationConfig:
    """Where calibration samples come from and how activation ranges are computed from them.

    ``source``: a text file (one sample per line), a JSONL file (a ``text`` field, or fields named
    after the model's inputs holding token ids), an ``.npz`` file (arrays named after the inputs,
    one sample per row), or a folder written by ``datasets.Dataset.save_to_disk``. ``None`` uses
    optibridge's built-in sample sentences (text models only).
    """

    source: str | None = None
    method: str = "minmax"
    num_samples: int = 100
    """Use at most this many samples (the first ones)."""
    column: str = "text"
    """Text field of a JSONL file or column of a dataset."""
    max_length: int = 128
    """Samples are tokenized and padded to a common length of at most this many tokens."""
    percentile: float = 99.999
    """For ``method="percentile"``: the share of values the activation range covers."""

    def __post_init__(self) -> None:
        _choice("calibration method", self.method, CALIBRATION_METHODS)
        if self.num_samples < 1:
            raise ConfigError(f"num_samples must be at least 1, not {self.num_samples}")
        if self.max_length < 2:
            raise ConfigError(f"max_length must be at least 2, not {self.max_length}")
        if not 50.0 < self.percentile <= 100.0:
            raise ConfigError(f"percentile must be in (50, 100], not {self.percentile}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "CalibrationConfig":
        return cls(**_known_keys(cls, data))


@dataclass(frozen=True)
class QuantizationConfig:
    """One quantization step. ``None`` fields take the preset's (or the mode's) default.

    ``preset`` picks int8 settings for a class of CPU (see :mod:`optibridge.hardware`); "auto"
    detects this machine's. ``smooth`` migrates activation outliers into the weights before int8
    quantization (SmoothQuant, strength ``smooth_alpha``); it needs a few samples (the
    calibration data, or the built-in sentences). ``split_outliers`` computes the few outlier
    channels of the FFN down-projections' inputs in float beside the int8 product (exact in float;
    ONNX Runtime dynamic int8 and OpenVINO's static plan); it needs samples too, and either can run
    without the other. ``exclude_nodes`` takes node names or glob
    patterns (``*/output/dense/*``); ``exclude_ffn_down`` keeps MatMuls fed by a GELU/SiLU (the
    FFN down-projections, whose inputs have the widest ranges) in float. ``min_cosine`` is the
    target of the OpenVINO static int8 default (``exclude_ffn_down`` unset): FFN down-projections
    go back to float, most harmful first, until every calibration sample's outputs reach this
    cosine to the float model (see docs/precision.md). Set, it is a requirement (out of reach: an
    error); unset, the default 0.99 is a goal (out of reach: all of them in float, and a warning).
    """

    mode: str = "dynamic"
    preset: str = "auto"
    per_channel: bool | None = None
    reduce_range: bool | None = None
    op_types: tuple[str, ...] | None = None
    """Operator types to quantize; None = the mode's default."""
    exclude_ops: tuple[str, ...] = ()
    exclude_nodes: tuple[str, ...] = ()
    exclude_ffn_down: bool | None = None
    smooth: bool | None = None
    smooth_alpha: float | None = None
    split_outliers: bool | None = None
    min_cosine: float | None = None
    block_size: int = 32
    """int4 / Neural Compressor: weights per quantization group."""
    int4_algorithm: str = "rtn"
    int4_compute: str | None = None
    """int4 on ONNX Runtime: "int8" (the default: MLAS quantizes each block of activations to int8 at
    run time and multiplies in integers, MatMulNBits' accuracy_level 4) or "f32" (weights dequantized,
    float products: level 0). Backends without such a choice ignore it, with a note."""
    symmetric: bool | None = None
    """Weight-only modes: symmetric weights (no zero point) or asymmetric. None: the mode's default
    (:meth:`weights_symmetric`): symmetric for int4 (ONNX Runtime, OpenVINO, Neural Compressor),
    asymmetric for int8 weights (NNCF's and optimum-intel's default; symmetric decodes faster,
    see docs/generation.md)."""
    calibration: CalibrationConfig | None = None
    source_model: str | None = None
    """Neural Compressor modes: the PyTorch model folder (default: the one recorded at export)."""
    inference_precision: str | None = None
    """The precision of what stays in float (f32, bf16, f16) when the artifact is loaded, on a backend that declares it."""

    def weights_symmetric(self, default: bool) -> bool:
        """``symmetric`` as set, or the mode's ``default`` when it is None."""
        return default if self.symmetric is None else self.symmetric

    def ignored_symmetric(self, honoured: tuple[str, ...]) -> list[str]:
        """A note when ``symmetric`` was set for a mode with no zero points to choose (not in ``honoured``)."""
        if self.symmetric is None or self.mode in honoured:
            return []
        flag = "--symmetric" if self.symmetric else "--asymmetric"
        return [f"{flag} applies to the weight-only modes ({', '.join(honoured)} here); mode {self.mode!r} ignored it"]

    def __post_init__(self) -> None:
        object.__setattr__(self, "inference_precision", _precision(self.inference_precision))
        if not isinstance(self.mode, str) or not MODE_PATTERN.match(self.mode):
            raise ConfigError(f"quantization mode must be a name like 'dynamic' or 'int4', not {self.mode!r}; "
                              "`optibridge quantize --help` lists the registered modes")
        preset = normalize_preset(self.preset)
        _choice("preset", preset, PRESETS)
        object.__setattr__(self, "preset", preset)
        for name in ("op_types",):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, _tuple(value))
        object.__setattr__(self, "exclude_ops", _tuple(self.exclude_ops))
        object.__setattr__(self, "exclude_nodes", _tuple(self.exclude_nodes))
        if isinstance(self.calibration, Mapping):
            object.__setattr__(self, "calibration", CalibrationConfig.from_dict(self.calibration))
        _choice("int4 algorithm", self.int4_algorithm, INT4_ALGORITHMS)
        if self.int4_compute is not None:
            _choice("int4 compute precision", self.int4_compute, INT4_COMPUTE)
        if self.block_size < 16 or self.block_size & (self.block_size - 1):
            raise ConfigError(f"block_size must be a power of two >= 16 (16, 32, 64, 128, ...), not {self.block_size}")
        if self.smooth_alpha is not None and not 0.0 < self.smooth_alpha < 1.0:
            raise ConfigError(f"smooth_alpha must be between 0 and 1 (0.5 is SmoothQuant's default), not {self.smooth_alpha}")
        if self.min_cosine is not None and not 0.0 < self.min_cosine <= 1.0:
            raise ConfigError(f"min_cosine must be in (0, 1] (a per-sample cosine to the float model, e.g. 0.99), not {self.min_cosine}")
        if self.mode == "static" and self.calibration is None:
            object.__setattr__(self, "calibration", CalibrationConfig())

    def with_calibration(self) -> CalibrationConfig:
        """The calibration config to use: the given one or the built-in sentences."""
        return self.calibration or CalibrationConfig()

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for name in ("op_types", "exclude_ops", "exclude_nodes"):
            if data[name] is not None:
                data[name] = list(data[name])
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "QuantizationConfig":
        data = _known_keys(cls, data)
        if data.get("calibration") is not None:
            data["calibration"] = CalibrationConfig.from_dict(data["calibration"])
        for name in ("op_types", "exclude_ops", "exclude_nodes"):
            if data.get(name) is not None:
                data[name] = tuple(data[name])
        return cls(**data)


@dataclass
class CalibrationData:
    """Feeds per graph, and a description of where they came from (recorded in ``optibridge.json``)."""

    batches: dict[str, list[dict[str, np.ndarray]]]
    config: CalibrationConfig
    description: str
    builtin: bool = False
    """True when the samples are optibridge's own sentences, not the user's data."""
    lengths: set[int] = field(default_factory=set)
    """Sequence lengths used; validation inputs avoid them."""

    def feeds(self, graph: str) -> list[dict[str, np.ndarray]]:
        return self.batches.get(graph, [])

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.config.to_dict(),
            "samples": max((len(b) for b in self.batches.values()), default=0),
            "description": self.description,
        }
