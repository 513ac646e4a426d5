"""Fake backends for the Ray tests, loaded in Ray workers through ``OPTIBRIDGE_PLUGINS=ray_fake_plugins``.

Each wraps the real ORT backend (CPU) and changes one thing:

* ``fake-cuda`` / ``fake-hpu`` -- declare only a ``cuda`` / ``hpu`` device, so their bench cells
  need Ray's ``GPU`` / ``HPU`` resource; they record where they ran in nothing but the cell;
* ``fake-dies`` -- the process running it kills itself (SIGKILL) on its third call, once per
  test: the first process to rename ``$OPTIBRIDGE_TEST_KILL_DIR/armed`` to ``fired`` dies;
* ``fake-kills-worker`` -- a bench cell process that kills its parent (the Ray worker running
  the cell's task) and then itself: a worker or node that dies under a cell.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from bench_fake_plugins import _Wrapped  # the same wrapped ORT session, other behaviours

from optibridge.backend import Backend, BackendStatus
from optibridge.hookspecs import hookimpl

KILL_DIR_ENV = "OPTIBRIDGE_TEST_KILL_DIR"


class _Session(_Wrapped):
    calls = 0

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.calls += 1
        if self.behaviour == "dies" and self.calls == 3 and _claim_kill():
            os.kill(os.getpid(), signal.SIGKILL)
        if self.behaviour == "kills-worker":
            os.kill(os.getppid(), signal.SIGKILL)
            os.kill(os.getpid(), signal.SIGKILL)
        return self.inner.run(inputs)


def _claim_kill() -> bool:
    folder = os.environ.get(KILL_DIR_ENV)
    if not folder:
        return False
    try:
        os.rename(Path(folder) / "armed", Path(folder) / "fired")  # atomic: only one process wins
    except OSError:
        return False
    return True


class FakeBackend(Backend):
    def __init__(self, behaviour: str, devices: tuple[str, ...] = ("cpu",)) -> None:
        self.behaviour = behaviour
        self.name = f"fake-{behaviour}"
        self.devices = devices
        self.priority = 900  # never chosen by backend="auto"

    def status(self) -> BackendStatus:
        return BackendStatus(self.name, True, devices=self.devices, version="0", features=("run",))

    def load(self, artifact: Any, *, graph: str = "model", device: str = "cpu", **options: Any) -> _Session:
        from optibridge.backends import get_registry

        inner = get_registry().get("ort").load(artifact, graph=graph, device="cpu", intra_op_num_threads=1)
        return _Session(inner, self.name, self.behaviour)


@hookimpl
def optibridge_backends() -> list[Backend]:
    return [FakeBackend("cuda", ("cuda",)), FakeBackend("hpu", ("hpu",)), FakeBackend("dies"), FakeBackend("kills-worker")]
