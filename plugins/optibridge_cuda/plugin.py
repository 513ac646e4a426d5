"""CUDA backend entry point. Detection only for now; running models lands with the CUDA/HPU issue."""

from __future__ import annotations

from typing import Any

from optibridge.artifact import Artifact
from optibridge.backend import Backend, BackendStatus, Session
from optibridge.errors import BackendError
from optibridge.hookspecs import hookimpl
from optibridge.probing import distribution_version, nvidia_driver_present


def missing_pieces() -> list[str]:
    """What this machine lacks for ONNX Runtime's CUDA provider, in words a user can act on."""
    missing = []
    if distribution_version("onnxruntime-gpu") is None:
        missing.append("onnxruntime-gpu not installed")
    if not nvidia_driver_present():
        missing.append("no NVIDIA driver")
    return missing


class CudaBackend(Backend):
    name = "cuda"
    description = "ONNX Runtime CUDA / TensorRT execution providers (NVIDIA GPUs)"
    priority = 5

    def status(self) -> BackendStatus:
        missing = missing_pieces()
        reason = "; ".join(missing + ["not implemented yet in this optibridge version"])
        return BackendStatus(self.name, False, version=distribution_version("onnxruntime-gpu"), reason=reason)

    def load(self, artifact: Artifact, *, device: str = "cuda", **options: Any) -> Session:
        raise BackendError(f"backend 'cuda' is not usable: {self.status().reason}; use backend='ort' for the CPU")


@hookimpl
def optibridge_backends() -> list[Backend]:
    return [CudaBackend()]
