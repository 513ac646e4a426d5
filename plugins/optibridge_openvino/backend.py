"""The OpenVINO backend: compiles an artifact's graphs (ONNX, or the OpenVINO IR that its own
``optimize``/``quantize`` write) for an OpenVINO device and runs them.

Runs every graph an artifact has (encoders, KV-cache decoders, seq2seq), so every OBModelFor*
class works on it; a decoder whose IR keeps its KV cache inside (``extra["openvino"]["stateful"]``)
loads as a :class:`~.stateful.StatefulSession` (inside a :class:`~.managed.ManagedSession`).
"""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from optibridge.artifact import Artifact
from optibridge.backend import Backend, BackendStatus
from optibridge.capabilities import ModeSpec
from optibridge.device import Device
from optibridge.errors import BackendError, OptibridgeError
from optibridge.hardware import check_precision, float_precisions
from optibridge.probing import distribution_version, module_present

from .managed import ManagedSession

if TYPE_CHECKING:
    from optibridge.steps import CalibrationData, OptimizationConfig, QuantizationConfig

# User-facing option → OpenVINO property. INFERENCE_PRECISION_HINT defaults to f32: on CPUs with
# bf16 support OpenVINO otherwise runs in bf16 (measured 2.3e-3 off PyTorch here, versus 1e-6),
# and silently lower precision is not what loading an fp32 artifact should mean. An artifact whose
# optimize/quantize step asked for bf16/f16 records it (extra["openvino"]["inference_precision"])
# and loads in it; inference_precision= overrides, "auto" leaves the choice to OpenVINO.
OPTIONS = {
    "performance_hint": "PERFORMANCE_HINT",
    "num_streams": "NUM_STREAMS",
    "inference_num_threads": "INFERENCE_NUM_THREADS",
    "inference_precision": "INFERENCE_PRECISION_HINT",
    "compiled_cache_dir": "CACHE_DIR",  # not "cache_dir": from_pretrained passes that to the hub download
    "kv_cache_precision": "KV_CACHE_PRECISION",
}
MANAGED_OPTIONS = ("compile", "stateful", "load_in_8bit", "weight_quantization", "dynamic_shapes", "outputs")
PERFORMANCE_HINTS = ("LATENCY", "THROUGHPUT", "CUMULATIVE_THROUGHPUT")
AUTO_PRECISION = "auto"


MODES = (
    ModeSpec("static", "int8 weights and activations through NNCF (transformer rules), ranges from calibration data",
             "int8", needs_calibration=True, uses_samples=True, cpu_preset=True),
    ModeSpec("int8-weights", "NNCF int8 weight-only compression (decoder LMs; no calibration needed)", "int8 weights",
             weight_only=True),
    ModeSpec("int4-weights", "NNCF int4 weight-only compression in groups of block_size (embeddings and head stay int8)",
             "int4 weights", weight_only=True),
    ModeSpec("f16-weights", "weights stored as float16 and computed in float32 (or the recorded inference precision): "
             "half the bytes a decoder reads per token; no NNCF, no calibration", "f16 weights", weight_only=True),
)


class OpenVINOBackend(Backend):
    name = "openvino"
    description = "Intel OpenVINO (CPU, GPU, NPU)"
    priority = 20
    graph_formats = ("onnx", "openvino-ir")
    format_descriptions = MappingProxyType({
        "openvino-ir": "an OpenVINO IR (.xml, weights in the .bin of the same name) written by the openvino backend",
    })
    modes = MODES
    uses_cpu_presets = True  # static int8: 7-bit weights on the presets that saturate (NNCF's overflow fix)
    threads_option = "inference_num_threads"
    extra_options = MappingProxyType({"performance_hint": "LATENCY"})
    device_syntax = "CPU, GPU, GPU.N, NPU or AUTO (case-insensitive)"

    def _core(self) -> Any:
        import openvino as ov

        return ov.Core()

    def status(self) -> BackendStatus:
        if not module_present("openvino"):
            return BackendStatus(self.name, False, reason="openvino is not installed: pip install optibridge[openvino]")
        devices = tuple(d.lower() for d in self._core().available_devices)
        precisions = cpu_precisions() if "cpu" in devices else ()
        return BackendStatus(self.name, bool(devices), devices=devices, version=distribution_version("openvino"),
                             features=("run", "optimize", "quantize", *precisions), reason=None if devices else "OpenVINO reports no device")

    def option_names(self) -> frozenset[str]:
        return frozenset((*OPTIONS, "ov_config", "static_shapes", *MANAGED_OPTIONS))

    def load(self, artifact: Artifact, *, graph: str = "model", device: str = "cpu", **options: Any) -> ManagedSession:
        """Options: the OpenVINO ones below (``OPTIONS``, ``ov_config``) and, as optimum-intel takes them,
        ``compile`` (False: compile on the first call or ``compile()``), ``stateful`` (keep a decoder's KV
        cache inside), ``load_in_8bit`` (NNCF int8 weights), ``dynamic_shapes``; and ``outputs`` (compile
        only what these graph outputs need, e.g. ``["last_hidden_state"]`` without a pooler head)."""
        if not module_present("openvino"):
            raise BackendError("openvino is not installed: pip install optibridge[openvino]")
        options.setdefault("inference_precision", recorded_precision(artifact))
        if Device.kind_of(device) == "cpu":
            _check_cpu_precision(options.get("inference_precision"))
        static_shapes = options.pop("static_shapes", None)  # {input: [dims]}: compile with fixed shapes (diffusion reshape)
        managed = {name: options.pop(name) for name in MANAGED_OPTIONS if name in options}
        if not static_shapes:
            return ManagedSession(self._core(), artifact, graph, device, openvino_config(options), **managed)
        compile_now = managed.pop("compile", True)
        session = ManagedSession(self._core(), artifact, graph, device, openvino_config(options), compile=False, **managed)
        known = set(session.model_input_names())
        unknown = sorted(set(static_shapes) - known)
        if unknown:
            raise BackendError(f"static_shapes names input(s) {', '.join(unknown)} that graph {graph!r} does not have")
        session.reshape({name: tuple(dims) for name, dims in static_shapes.items()})
        if compile_now:
            session.compile()
        return session

    def optimize(self, artifact: Artifact, config: "OptimizationConfig", output_dir: Path) -> dict[str, Any]:
        from .convert import optimize_artifact

        return optimize_artifact(artifact, config, output_dir)

    def quantize(
        self, artifact: Artifact, config: "QuantizationConfig", output_dir: Path, calibration: "CalibrationData | None" = None,
    ) -> dict[str, Any]:
        from .quantize import quantize_artifact

        return quantize_artifact(artifact, config, output_dir, calibration)



def openvino_config(options: dict[str, Any]) -> dict[str, Any]:
    """Friendly option names → OpenVINO properties; ``ov_config`` (raw properties, as optimum-intel
    takes them) is applied last, so it can override anything."""
    options = dict(options)
    raw = options.pop("ov_config", None) or {}
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise BackendError(f"unknown OpenVINO option(s) {', '.join(unknown)}; valid options: {', '.join(OPTIONS)}, ov_config")
    config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": "f32"}
    for name, value in options.items():
        if value is None:
            continue
        if name == "inference_precision":
            if str(value).lower() == AUTO_PRECISION:
                del config["INFERENCE_PRECISION_HINT"]  # OpenVINO's own choice (bf16 on CPUs that have it)
                continue
            value = _precision(value)
        if name == "performance_hint" and str(value).upper() not in PERFORMANCE_HINTS:
            raise BackendError(f"performance_hint must be one of {', '.join(PERFORMANCE_HINTS)}, not {value!r}")
        config[OPTIONS[name]] = str(value).upper() if name == "performance_hint" else str(value)
    config.update({str(k): str(v) for k, v in raw.items()})
    return config


def cpu_precisions() -> tuple[str, ...]:
    """The precisions below f32 offered on this CPU (as backend features, so bench/tune try them).

    bf16 wherever the CPU has AVX-512 BF16 / AMX-BF16. f16 only with AMX-FP16: OpenVINO's CPU
    plugin accepts an f16 hint on AVX-512 FP16 alone, but measured slower than f32 there (random
    BERT-base b1 s128 on a Sapphire-Rapids-class Xeon: 0.79× f32, where bf16 ran 3.1× f32).
    """
    from optibridge.hardware import detect_cpu

    found = float_precisions()
    return tuple(p for p in found if p == "bf16" or (p == "f16" and "amx_fp16" in detect_cpu().flags))


def _precision(value: Any) -> str:
    from optibridge.hardware import normalize_precision

    try:
        return normalize_precision(value)
    except OptibridgeError as exc:
        raise BackendError(f"{exc} (or {AUTO_PRECISION!r}: OpenVINO's default for the device)") from None


def _check_cpu_precision(value: Any) -> None:
    if value is None or str(value).lower() == AUTO_PRECISION:
        return
    try:
        check_precision(_precision(value))
    except BackendError:
        raise
    except OptibridgeError as exc:
        raise BackendError(str(exc)) from None


def recorded_precision(artifact: Artifact) -> str | None:
    """The inference precision an optimize/quantize step recorded in the artifact (None: f32)."""
    value = artifact.metadata.extra.get("openvino", {}).get("inference_precision")
    return None if value is None else _precision(value)  # the artifact is untrusted input: check the value
