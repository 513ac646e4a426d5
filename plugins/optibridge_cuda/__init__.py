"""optibridge backend: ONNX Runtime CUDA / TensorRT execution providers (NVIDIA GPUs)."""

from .backend import CudaBackend

__all__ = ["CudaBackend"]
