"""Entry point of the ONNX Runtime backend (``optibridge.backends: ort``)."""

from optibridge.hookspecs import hookimpl

from .backend import OrtBackend


@hookimpl
def optibridge_backends() -> list[OrtBackend]:
    return [OrtBackend()]
