"""The named configurations a benchmark can measure, and which of them run on which backend here.

A configuration is data: an optional step (``optimize`` or ``quantize`` with its config values)
applied to the exported float32 artifact by the backend being measured. A backend appears in a
run by being installed and available (``optibridge backends``); a configuration it cannot build
(no "quantize" feature, no GPU for fp16) becomes a *skipped* cell with the reason, never a
silently missing row. Adding a backend needs no code here: its declared quantization modes decide
which quantize configs it builds, a mode no config below measures becomes a config of its own
name, and its declared load defaults (threads option, latency hints) are what each cell loads with.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from .schema import BASELINE, BenchError

if TYPE_CHECKING:
    from ..backend import Backend, BackendStatus
    from ..capabilities import ModeSpec

BASELINE_CONFIG = "eager"


@dataclass(frozen=True)
class BenchConfig:
    name: str
    description: str
    step: str | None = None
    """``"optimize"`` or ``"quantize"`` (with :attr:`options` as its config), or None: the artifact as exported."""
    options: Mapping[str, Any] = field(default_factory=dict)
    needs_gpu: bool = False

    @property
    def precision(self) -> str | None:
        """A float precision below f32 the config computes in: a backend must list it among its
        features (OpenVINO does where the CPU has the instructions), else the cell is skipped."""
        value = self.options.get("inference_precision")
        return None if value in (None, "f32") else str(value)

    def step_config(self) -> Any:
        from ..configs import OptimizationConfig, QuantizationConfig

        if self.step == "optimize":
            return OptimizationConfig(**self.options)
        return QuantizationConfig(**self.options)


CONFIGS: dict[str, BenchConfig] = {c.name: c for c in (
    BenchConfig("fp32", "the exported float32 graphs, as they are"),
    BenchConfig("O2", "transformer fusions (optimize -O 2)", "optimize", {"level": 2}),
    BenchConfig("int8-dynamic", "int8 weights, activations quantized at run time", "quantize", {"mode": "dynamic"}),
    BenchConfig("int8-static", "int8 weights and activations, calibrated on built-in sentences", "quantize", {"mode": "static"}),
    BenchConfig("int8-dynamic-fast", "int8 dynamic without SmoothQuant or the outlier split (--no-smooth): faster, a lower "
                "worst case on models with outlier channels (asked for by name; tune keeps it only within the budget)",
                "quantize", {"mode": "dynamic", "smooth": False}),
    BenchConfig("int4", "int4 weight-only MatMulNBits (decoder LMs)", "quantize", {"mode": "int4"}),
    BenchConfig("int8-weights", "int8 weight-only compression (decoder LMs)", "quantize", {"mode": "int8-weights"}),
    BenchConfig("int8-weights-sym", "int8 weight-only compression without zero points (decoder LMs; faster, a little "
                "less accurate)", "quantize", {"mode": "int8-weights", "symmetric": True}),
    BenchConfig("int4-weights", "int4 weight-only compression in groups (decoder LMs)", "quantize", {"mode": "int4-weights"}),
    BenchConfig("fp16", "float16 graphs (optimize -O 4), GPU targets", "optimize", {"level": 4, "device": "gpu"}, needs_gpu=True),
    BenchConfig("bf16", "the float32 graphs computed in bf16 (CPUs with AVX-512 BF16 / AMX)", "optimize",
                {"level": 2, "inference_precision": "bf16"}),
    BenchConfig("f16", "the float32 graphs computed in fp16 (CPUs with AVX-512 FP16 / AMX-FP16)", "optimize",
                {"level": 2, "inference_precision": "f16"}),
    BenchConfig("int8-static+bf16", "int8 static (on OpenVINO: FFN down-projections back in float only as the calibration "
                "samples need), what stays in float computed in bf16", "quantize",
                {"mode": "static", "inference_precision": "bf16"}),
    BenchConfig("int8-static-all+bf16", "int8 static with the FFN down-projections quantized too, the rest in bf16 "
                "(faster; kept only when it meets the accuracy budget)", "quantize",
                {"mode": "static", "exclude_ffn_down": False, "inference_precision": "bf16"}),
    BenchConfig("int8-weights+bf16", "int8 weight-only, activations in bf16 (decoder LMs)", "quantize",
                {"mode": "int8-weights", "inference_precision": "bf16"}),
    BenchConfig("int4-weights+bf16", "int4 weight-only, activations in bf16 (decoder LMs)", "quantize",
                {"mode": "int4-weights", "inference_precision": "bf16"}),
)}
DEFAULT_CONFIGS = ("fp32", "O2", "int8-dynamic", "int8-static")
"""Measured when --configs is not given; ``fp16`` is added for backends with a GPU device, the
:data:`PRECISION_CONFIGS` a backend lists the precision of (see :attr:`BenchConfig.precision`)."""
PRECISION_CONFIGS = ("bf16", "int8-static+bf16", "int8-static-all+bf16", "f16")
"""Added to the defaults of a backend whose features include their precision (bf16 where the CPU
has it)."""
DECODER_TASKS = ("text-generation",)
"""Tasks whose defaults also hold every config of the backend's weight-only modes
(:func:`weight_only_configs`): batch-1 decoding is bound by the bytes of weights it reads."""

def backend_options(backend: str, threads: int, impl: "Backend | None" = None) -> dict[str, Any]:
    """The session options a candidate of ``backend`` is loaded with (recorded in each cell): its
    declared ``extra_options`` and, under its declared ``threads_option``, the same thread count for every runtime."""
    if impl is None:
        from ..backends import get_registry

        impl = get_registry().backends().get(backend)
    if impl is None:
        return {}
    options = dict(impl.extra_options)
    if impl.threads_option:
        options[impl.threads_option] = threads
    return options


def all_configs(backends: "Mapping[str, Backend] | None" = None) -> dict[str, BenchConfig]:
    """:data:`CONFIGS` plus one config per declared quantization mode that none of them measures
    (named after the mode): a plugin's new mode is a bench candidate with no code here."""
    result = dict(CONFIGS)
    covered = {c.options.get("mode") for c in CONFIGS.values() if c.step == "quantize"}
    for mode, spec in _declared_modes(backends).items():
        if mode not in covered and mode not in result:
            result[mode] = BenchConfig(mode, spec.description, "quantize", {"mode": mode})
    return result


def weight_only_configs(backend: "Backend | None", status: "BackendStatus | None", known: Mapping[str, BenchConfig]) -> list[str]:
    """The configs of ``backend``'s declared weight-only modes (``ModeSpec.weight_only``, not those that
    rework the PyTorch model first), in :data:`CONFIGS` order; those with a precision only where
    ``status`` offers it (int8-weights+bf16 on a bf16 CPU)."""
    if backend is None or status is None or not status.available:
        return []
    modes = {spec.name for spec in backend.modes if spec.weight_only and spec.prepare is None}
    return [name for name, config in known.items()
            if config.step == "quantize" and config.options.get("mode") in modes
            and (config.precision is None or config.precision in status.features)]


def _declared_modes(backends: "Mapping[str, Backend] | None") -> "dict[str, ModeSpec]":
    if backends is None:
        from ..backends import get_registry

        backends = get_registry().backends()
    found: dict[str, ModeSpec] = {}
    for backend in backends.values():
        for spec in backend.modes:
            found.setdefault(spec.name, spec)
    return found


@dataclass(frozen=True)
class PlannedCell:
    """A backend × config to measure (at every shape), or the reason it cannot run here."""

    backend: str
    config: str
    device: str = "cpu"
    skip: str | None = None


def _gpu_device(status: "BackendStatus") -> str | None:
    return next((d for d in status.devices if not d.lower().startswith("cpu")), None)


def _plan_one(backend: str, config: BenchConfig, status: "BackendStatus | None", backends: "Mapping[str, Backend]",
              registered: Sequence[str] = ()) -> PlannedCell:
    config_name = config.name
    if status is None:
        known = f" (registered here: {', '.join(registered)}; a typo?)" if registered else ""
        return PlannedCell(backend, config_name, skip=f"backend {backend!r} is not installed{known}")
    if not status.available:
        return PlannedCell(backend, config_name, skip=f"backend {backend!r} is not usable here: {status.reason}")
    device = "cpu" if "cpu" in {d.lower() for d in status.devices} or not status.devices else status.devices[0]
    if config.needs_gpu:
        gpu = _gpu_device(status)
        if gpu is None:
            return PlannedCell(backend, config_name, skip=f"{config_name} needs a GPU device; {backend} has {', '.join(status.devices) or 'none'}")
        device = gpu
    if config.step is not None and config.step not in status.features:
        return PlannedCell(backend, config_name, device,
                           skip=f"backend {backend!r} cannot {config.step} here (it offers: {', '.join(status.features) or 'nothing'})")
    if config.precision and config.precision not in status.features:
        return PlannedCell(backend, config_name, device, skip=f"backend {backend!r} does not offer {config.precision} here "
                           f"(it offers: {', '.join(status.features) or 'nothing'}; a CPU with the instructions is needed)")
    mode_skip = _mode_skip(backend, config, backends)
    if mode_skip:
        return PlannedCell(backend, config_name, device, skip=mode_skip)
    return PlannedCell(backend, config_name, device)


def _mode_skip(backend: str, config: BenchConfig, backends: "Mapping[str, Backend]") -> str | None:
    """A quantization mode the backend does not declare is a skipped cell, not a failed build.
    A backend with no declaration here (not registered in this process) is tried as asked."""
    if config.step != "quantize" or backend not in backends:
        return None
    mode = config.options.get("mode", "")
    if backends[backend].mode(mode) is not None:
        return None
    doers = sorted(name for name, impl in backends.items() if impl.mode(mode) is not None)
    return f"backend {backend!r} has no {mode} quantization (done by: {', '.join(doers) or 'no installed backend'})"


def parse_list(text: str | None) -> list[str]:
    return [item.strip() for item in (text or "").split(",") if item.strip()]


def check_config_names(configs: Sequence[str] | None, declared: "Mapping[str, Backend] | None" = None) -> dict[str, BenchConfig]:
    """Every config known here (:func:`all_configs`); an unknown name in ``configs`` (``name`` or
    ``backend:name``) is a BenchError listing the valid ones."""
    known = all_configs(declared)
    for item in configs or ():
        name = item.split(":", 1)[-1]
        if name not in known:
            raise BenchError(f"unknown config {name!r}; valid: {', '.join(known)} (or backend:config, e.g. fp32 pinned to one backend)")
    return known


def plan(
    backends: Sequence[str] | None, configs: Sequence[str] | None, statuses: Mapping[str, "BackendStatus"],
    declared: "Mapping[str, Backend] | None" = None, task: str | None = None,
) -> list[PlannedCell]:
    """The cells of a run: the PyTorch baseline first, then backend × config in the order given.

    ``backends`` None means every available backend that can run models. ``configs`` items are
    config names (applied to every backend) or ``backend:config`` (that backend only; the backend
    is then measured even when not listed in ``backends``). None means :data:`DEFAULT_CONFIGS`
    (plus ``fp16`` on backends with a GPU, the :data:`PRECISION_CONFIGS` of their precisions, and
    for a ``task`` in :data:`DECODER_TASKS` the backend's weight-only configs). ``declared`` holds
    the backends whose declarations (modes) decide what they can build; None means the registry's.
    """
    if declared is None:
        from ..backends import get_registry

        declared = get_registry().backends()
    known = check_config_names(configs, declared)
    items = list(configs) if configs else []
    pinned = [tuple(item.split(":", 1)) for item in items if ":" in item]
    shared = [item for item in items if ":" not in item]
    if backends is None:
        names = [n for n, s in statuses.items() if s.available and "run" in s.features]
        if pinned and not shared:
            names = []
    else:
        names = [b for b in backends if b != BASELINE]
    for backend, _ in pinned:
        if backend not in names:
            names.append(backend)
    cells = [PlannedCell(BASELINE, BASELINE_CONFIG)]
    for backend in names:
        status = statuses.get(backend)
        if items:
            wanted = list(shared) + [c for b, c in pinned if b == backend]
        else:
            wanted = list(DEFAULT_CONFIGS)
            if status is not None and _gpu_device(status) is not None:
                wanted.append("fp16")
            if status is not None and status.available:
                wanted += [c for c in PRECISION_CONFIGS if CONFIGS[c].precision in status.features]
            if task in DECODER_TASKS:
                wanted += weight_only_configs(declared.get(backend), status, known)
        for config in dict.fromkeys(wanted):
            cells.append(_plan_one(backend, known[config], status, declared, sorted(statuses)))
    return cells
