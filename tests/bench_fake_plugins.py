"""Fake backends for the bench tests, loaded through ``OPTIBRIDGE_PLUGINS=bench_fake_plugins``.

Bench cells run in child processes, so these must be importable by module name there (the tests
put this folder on PYTHONPATH). Each wraps the real ORT backend and changes one thing:

* ``fake-fast``  -- ORT as is;
* ``fake-slow``  -- ORT plus a 30 ms sleep per call;
* ``fake-wrong`` -- ORT with every output negated (fast, but breaks any accuracy budget);
* ``fake-crash`` -- a real segfault (SIGSEGV) on the first call;
* ``fake-hang``  -- never returns from the first call.
"""

from __future__ import annotations

import os
import resource
import signal
import time
from typing import Any, Mapping

import numpy as np

from optibridge.backend import Backend, BackendStatus
from optibridge.hookspecs import hookimpl


class _Wrapped:
    def __init__(self, inner: Any, name: str, behaviour: str) -> None:
        self.inner = inner
        self.backend = name
        self.device = "cpu"
        self.behaviour = behaviour

    @property
    def input_names(self) -> list[str]:
        return self.inner.input_names

    @property
    def output_names(self) -> list[str]:
        return self.inner.output_names

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.behaviour == "crash":
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core file in the test's folder
            os.kill(os.getpid(), signal.SIGSEGV)
        if self.behaviour == "hang":
            time.sleep(3600)
        outputs = self.inner.run(inputs)
        if self.behaviour == "slow":
            time.sleep(0.03)
        if self.behaviour == "wrong":
            outputs = {k: -v for k, v in outputs.items()}
        return outputs


class FakeBackend(Backend):
    def __init__(self, behaviour: str) -> None:
        self.behaviour = behaviour
        self.name = f"fake-{behaviour}"
        self.priority = 900  # never chosen by backend="auto"

    def status(self) -> BackendStatus:
        return BackendStatus(self.name, True, devices=("cpu",), version="0", features=("run",))

    def load(self, artifact: Any, *, graph: str = "model", device: str = "cpu", **options: Any) -> _Wrapped:
        from optibridge.backends import get_registry

        inner = get_registry().get("ort").load(artifact, graph=graph, device=device, intra_op_num_threads=1)
        return _Wrapped(inner, self.name, self.behaviour)


@hookimpl
def optibridge_backends() -> list[Backend]:
    return [FakeBackend(b) for b in ("fast", "slow", "wrong", "crash", "hang")]
