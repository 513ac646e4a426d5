"""OpenVINO backend entry point (``optibridge.backends: openvino``)."""

from __future__ import annotations

from optibridge.backend import Backend
from optibridge.hookspecs import hookimpl

from .backend import OpenVINOBackend


@hookimpl
def optibridge_backends() -> list[Backend]:
    return [OpenVINOBackend()]
