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
from optibridge.errors import BackendError
from optibridge.probing import distribution_version, module_present

from .managed import ManagedSession

if TYPE_CHECKING:
    from optibridge.steps import CalibrationData, OptimizationConfig, QuantizationConfig

# User-facing option → OpenVINO property. INFERENCE_PRECISION_HINT defaults to f32: on CPUs with
# bf16 support OpenVINO otherwise runs in bf16 (measured 2.3e-3 off PyTorch here, versus 1e-6),
# and silently lower precision is not what loading an fp32 artifact should mean.
OPTIONS = {
    "performance_hint": "PERFORMANCE_HINT",
    "num_streams": "NUM_STREAMS",
    "inference_num_threads": "INFERENCE_NUM_THREADS",
    "inference_precision": "INFERENCE_PRECISION_HINT",
    "compiled_cache_dir": "CACHE_DIR",  # not "cache_dir": from_pretrained passes that to the hub download
    "kv_cache_precision": "KV_CACHE_PRECISION",
}
MANAGED_OPTIONS = ("compile", "stateful", "load_in_8bit", "dynamic_shapes")
PERFORMANCE_HINTS = ("LATENCY", "THROUGHPUT", "CUMULATIVE_THROUGHPUT")


MODES = (
    ModeSpec("static", "int8 weights and activations through NNCF (transformer rules), ranges from calibration data",
             "int8", needs_calibration=True, uses_samples=True),
    ModeSpec("int8-weights", "NNCF int8 weight-only compression (decoder LMs; no calibration needed)", "int8 weights"),
    ModeSpec("int4-weights", "NNCF int4 weight-only compression in groups of block_size (embeddings and head stay int8)",
             "int4 weights"),
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
        return BackendStatus(self.name, bool(devices), devices=devices, version=distribution_version("openvino"),
                             features=("run", "optimize", "quantize"), reason=None if devices else "OpenVINO reports no device")

    def load(self, artifact: Artifact, *, graph: str = "model", device: str = "cpu", **options: Any) -> ManagedSession:
        """Options: the OpenVINO ones below (``OPTIONS``, ``ov_config``) and, as optimum-intel takes them,
        ``compile`` (False: compile on the first call or ``compile()``), ``stateful`` (keep a decoder's KV
        cache inside), ``load_in_8bit`` (NNCF int8 weights), ``dynamic_shapes``."""
        if not module_present("openvino"):
            raise BackendError("openvino is not installed: pip install optibridge[openvino]")
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
        if name == "performance_hint" and str(value).upper() not in PERFORMANCE_HINTS:
            raise BackendError(f"performance_hint must be one of {', '.join(PERFORMANCE_HINTS)}, not {value!r}")
        config[OPTIONS[name]] = str(value).upper() if name == "performance_hint" else str(value)
    config.update({str(k): str(v) for k, v in raw.items()})
    return config
