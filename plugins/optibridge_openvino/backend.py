"""The OpenVINO backend: compiles an artifact's ONNX graphs for an OpenVINO device and runs them.

Runs every graph an artifact has (encoders, KV-cache decoders, seq2seq), so every OBModelFor*
class works on it. Not yet here (issue 5): IR conversion in ``optimize``, NNCF quantization,
stateful decoder models.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from optibridge.artifact import Artifact
from optibridge.backend import Backend, BackendStatus
from optibridge.errors import ArtifactError, BackendError, first_line
from optibridge.probing import distribution_version, module_present

# User-facing option → OpenVINO property. INFERENCE_PRECISION_HINT defaults to f32: on CPUs with
# bf16 support OpenVINO otherwise runs in bf16 (measured 2.3e-3 off PyTorch here, versus 1e-6),
# and silently lower precision is not what loading an fp32 artifact should mean.
OPTIONS = {
    "performance_hint": "PERFORMANCE_HINT",
    "num_streams": "NUM_STREAMS",
    "inference_num_threads": "INFERENCE_NUM_THREADS",
    "inference_precision": "INFERENCE_PRECISION_HINT",
    "compiled_cache_dir": "CACHE_DIR",  # not "cache_dir": from_pretrained passes that to the hub download
}
PERFORMANCE_HINTS = ("LATENCY", "THROUGHPUT", "CUMULATIVE_THROUGHPUT")


class OpenVINOSession:
    """A compiled OpenVINO model behind optibridge's Session interface."""

    backend = "openvino"

    def __init__(self, compiled: Any, device: str, known_names: set[str] = frozenset()) -> None:
        self.compiled = compiled
        self.device = device.lower()
        self._request = compiled.create_infer_request()
        self._inputs = [_port_name(port, known_names) for port in compiled.inputs]
        self._outputs = [_port_name(port, known_names) for port in compiled.outputs]
        self._output_ports = dict(zip(self._outputs, compiled.outputs))

    @property
    def input_names(self) -> list[str]:
        return list(self._inputs)

    @property
    def output_names(self) -> list[str]:
        return list(self._outputs)

    @property
    def loaded_from_cache(self) -> bool:
        return bool(self.compiled.get_property("LOADED_FROM_CACHE"))

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        results = self._request.infer(dict(inputs))
        # The request reuses its output buffers on the next call: copy out what we hand back.
        return {name: np.array(results[port], copy=True) for name, port in self._output_ports.items()}


def _port_name(port: Any, known: set[str]) -> str:
    """A port may carry several tensor names (OpenVINO merges them); prefer the graph's own IO name."""
    names = port.get_names()
    return next((n for n in sorted(names) if n in known), port.get_any_name())


class OpenVINOBackend(Backend):
    name = "openvino"
    description = "Intel OpenVINO (CPU, GPU, NPU)"
    priority = 20

    def _core(self) -> Any:
        import openvino as ov

        return ov.Core()

    def status(self) -> BackendStatus:
        if not module_present("openvino"):
            return BackendStatus(self.name, False, reason="openvino is not installed: pip install optibridge[openvino]")
        devices = tuple(d.lower() for d in self._core().available_devices)
        return BackendStatus(self.name, bool(devices), devices=devices, version=distribution_version("openvino"),
                             features=("run",), reason=None if devices else "OpenVINO reports no device")

    def load(self, artifact: Artifact, *, graph: str = "model", device: str = "cpu", **options: Any) -> OpenVINOSession:
        if not module_present("openvino"):
            raise BackendError("openvino is not installed: pip install optibridge[openvino]")
        core = self._core()
        wanted = device.upper()
        available = core.available_devices
        if wanted != "AUTO" and wanted not in available and wanted.split(".")[0] not in {d.split(".")[0] for d in available}:
            raise BackendError(
                f"OpenVINO has no device {device!r} on this machine; its devices: {', '.join(available)} (or AUTO)"
            )
        config = openvino_config(options)
        path = artifact.graph_path(graph)
        try:
            # Compiled from the file path (not a read ov.Model) so that CACHE_DIR can key the cache on it.
            compiled = core.compile_model(str(path), wanted, config)
        except Exception as exc:  # OpenVINO raises RuntimeError subclasses for unreadable models
            raise ArtifactError(f"OpenVINO could not load {path}: {first_line(exc)}. Re-export it with `optibridge export`") from exc
        spec = artifact.metadata.graphs[graph]
        return OpenVINOSession(compiled, wanted, set(spec.input_names) | set(spec.output_names))


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
