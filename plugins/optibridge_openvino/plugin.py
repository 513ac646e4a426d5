"""OpenVINO backend entry point. Detection only for now; running models lands with the OpenVINO issue."""

from __future__ import annotations

from optibridge.backend import Backend, DetectOnlyBackend
from optibridge.hookspecs import hookimpl
from optibridge.probing import distribution_version, module_present


class OpenVINOBackend(DetectOnlyBackend):
    name = "openvino"
    description = "Intel OpenVINO (CPU, GPU, NPU)"
    priority = 20

    def missing(self) -> list[str]:
        return [] if module_present("openvino") else ["openvino not installed (pip install openvino)"]

    def version(self) -> str | None:
        return distribution_version("openvino")


@hookimpl
def optibridge_backends() -> list[Backend]:
    return [OpenVINOBackend()]
