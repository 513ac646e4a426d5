"""Entry point of the CUDA backend (``optibridge.backends: cuda``)."""

from __future__ import annotations

from optibridge.backend import Backend
from optibridge.hookspecs import hookimpl

from .backend import CudaBackend


@hookimpl
def optibridge_backends() -> list[Backend]:
    return [CudaBackend()]
