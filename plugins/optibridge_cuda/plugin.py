"""CUDA backend entry point. Detection only for now; running models lands with the CUDA/HPU issue."""

from __future__ import annotations

from optibridge.backend import Backend, DetectOnlyBackend
from optibridge.hookspecs import hookimpl
from optibridge.probing import distribution_version, nvidia_driver_present


class CudaBackend(DetectOnlyBackend):
    name = "cuda"
    description = "ONNX Runtime CUDA / TensorRT execution providers (NVIDIA GPUs)"
    priority = 5

    def missing(self) -> list[str]:
        """What this machine lacks for ONNX Runtime's CUDA provider, in words a user can act on."""
        missing = []
        if distribution_version("onnxruntime-gpu") is None:
            missing.append("onnxruntime-gpu not installed")
        if not nvidia_driver_present():
            missing.append("no NVIDIA driver")
        return missing

    def version(self) -> str | None:
        return distribution_version("onnxruntime-gpu")


@hookimpl
def optibridge_backends() -> list[Backend]:
    return [CudaBackend()]
