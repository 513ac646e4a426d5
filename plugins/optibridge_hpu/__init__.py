"""optibridge backend: Habana Gaudi through habana_frameworks.torch (runs the PyTorch model, not ONNX)."""

from .backend import HpuBackend

__all__ = ["HpuBackend"]
