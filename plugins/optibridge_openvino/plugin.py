"""OpenVINO backend entry point. Detection only for now; running models lands with the OpenVINO issue."""

from __future__ import annotations

from typing import Any

from optibridge.artifact import Artifact
from optibridge.backend import Backend, BackendStatus, Session
from optibridge.errors import BackendError
from optibridge.hookspecs import hookimpl
from optibridge.probing import distribution_version, module_present


class OpenVINOBackend(Backend):
    name = "openvino"
    description = "Intel OpenVINO (CPU, GPU, NPU)"
    priority = 20

    def status(self) -> BackendStatus:
        if not module_present("openvino"):
            return BackendStatus(self.name, False, reason="not implemented yet; openvino is not installed (pip install openvino)")
        return BackendStatus(
            self.name, False, version=distribution_version("openvino"),
            reason="not implemented yet in this optibridge version (openvino is installed)",
        )

    def load(self, artifact: Artifact, *, device: str = "cpu", **options: Any) -> Session:
        raise BackendError("backend 'openvino' is not implemented yet in this optibridge version; use backend='ort'")


@hookimpl
def optibridge_backends() -> list[Backend]:
    return [OpenVINOBackend()]
