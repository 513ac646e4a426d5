"""``OpenVINOSession``: a compiled OpenVINO model behind optibridge's Session interface."""

from __future__ import annotations

import threading
from typing import Any, Mapping

import numpy as np


class OpenVINOSession:
    """A compiled OpenVINO model: numpy arrays in, numpy arrays out, by the graph's IO names.

    Thread-safe: an ``InferRequest`` serves one call at a time (shared, it raises "Infer Request is
    busy" or hands back another call's output), so each call takes an idle request from a pool and
    returns it afterwards; the pool grows to the number of concurrent callers. The compiled model
    itself is shared, as OpenVINO intends (one compiled model, one request per concurrent stream).
    """

    backend = "openvino"
    stateful = False

    def __init__(self, compiled: Any, device: str, known_names: set[str] = frozenset()) -> None:
        self.compiled = compiled
        self.device = device.lower()
        self._request = compiled.create_infer_request()
        self._idle = [self._request]
        self._pool_lock = threading.Lock()
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
    def inference_precision(self) -> str:
        """The precision the compiled model computes in ("f32", "bf16", "f16"), as OpenVINO reports it."""
        value = self.compiled.get_property("INFERENCE_PRECISION_HINT")
        return str(value.get_type_name() if hasattr(value, "get_type_name") else value).lower()

    @property
    def loaded_from_cache(self) -> bool:
        return bool(self.compiled.get_property("LOADED_FROM_CACHE"))

    def _infer(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        with self._pool_lock:
            request = self._idle.pop() if self._idle else self.compiled.create_infer_request()
        try:
            return self._infer_on(request, inputs)
        finally:
            with self._pool_lock:
                self._idle.append(request)

    def _infer_on(self, request: Any, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        # Inputs shared (read in place: the call is synchronous and the arrays outlive it), outputs
        # shared and copied once here: the request reuses its output buffers on the next call.
        # (The default copies both ways, and the outputs a second time below.)
        results = request.infer(dict(inputs), share_inputs=True, share_outputs=True)
        return {name: np.array(results[port], copy=True) for name, port in self._output_ports.items()}

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self._infer(inputs)


def _port_name(port: Any, known: set[str]) -> str:
    """A port may carry several tensor names (OpenVINO merges them); prefer the graph's own IO name."""
    names = port.get_names()
    return next((n for n in sorted(names) if n in known), port.get_any_name())
