"""optibridge backend: ONNX Runtime, CPU execution provider."""

from .backend import OrtBackend, OrtSession

__all__ = ["OrtBackend", "OrtSession"]
