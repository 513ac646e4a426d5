"""The CUDA backend: artifacts on ONNX Runtime's CUDA (or TensorRT) execution provider.

No silent fallback: onnxruntime-gpu lists CUDA and TensorRT in ``get_available_providers()`` even
on a machine without a GPU, and a session it cannot put on the GPU quietly runs on the CPU. So
the backend checks the driver before, and the providers of the session actually created after.
"""

from __future__ import annotations

from typing import Any

from optibridge import probing
from optibridge.artifact import Artifact
from optibridge.backend import Backend, BackendStatus
from optibridge.errors import BackendError
from optibridge_ort import OrtSession, build_session_options, create_session

from .devices import parse_device
from .install import SWITCH, install_problems
from .providers import CUDA_PROVIDER, TENSORRT_PROVIDER, provider_list, split_options

LOAD_FIX = (
    "If the message is about CUDA, check the device index (nvidia-smi -L) and that the CUDA/cuDNN "
    "libraries match this onnxruntime-gpu; otherwise the file is corrupt: re-export it with `optibridge export`"
)


def missing_pieces() -> list[str]:
    """What this machine lacks for ONNX Runtime's CUDA provider, in words a user can act on."""
    problems = install_problems()
    if probing.distribution_version("onnxruntime-gpu") is None:
        problems.append(f"onnxruntime-gpu not installed ({SWITCH})")
    if not probing.nvidia_driver_present():
        problems.append("no NVIDIA driver (/proc/driver/nvidia/version, nvidia-smi)")
    return problems


def check_providers(session: Any, providers: list[tuple[str, dict[str, str]]]) -> None:
    """Raise unless every requested provider is in the session ONNX Runtime actually created."""
    actual = list(session.get_providers())
    lost = [name for name, _ in providers if name not in actual]
    if not lost:
        return
    hint = ("the TensorRT libraries (pip install tensorrt) must match this onnxruntime-gpu"
            if TENSORRT_PROVIDER in lost else "the CUDA and cuDNN libraries this onnxruntime-gpu was built for must be installed")
    raise BackendError(
        f"ONNX Runtime created the session without {', '.join(lost)} (it has {', '.join(actual) or 'none'}), "
        f"so it would silently run on the CPU; refusing. ONNX Runtime logs why it could not use the GPU: {hint}, "
        "and the driver must see a GPU (nvidia-smi)"
    )


def torch_has_cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())


class CudaBackend(Backend):
    name = "cuda"
    description = "ONNX Runtime CUDA / TensorRT execution providers (NVIDIA GPUs)"
    priority = 5
    device_syntax = "cuda or cuda:N"

    def status(self) -> BackendStatus:
        version = probing.distribution_version("onnxruntime-gpu")
        missing = missing_pieces()
        if missing:
            return BackendStatus(self.name, False, version=version, reason="; ".join(missing))
        import onnxruntime as ort

        providers = ort.get_available_providers()
        if CUDA_PROVIDER not in providers:
            return BackendStatus(
                self.name, False, version=version,
                reason=f"this onnxruntime build has no {CUDA_PROVIDER} (it has {', '.join(providers)}); fix: {SWITCH}",
            )
        features = ["run", "io-binding"]
        if TENSORRT_PROVIDER in providers and probing.module_present("tensorrt"):
            features.append("tensorrt")
        return BackendStatus(self.name, True, devices=("cuda",), version=version, features=tuple(features),
                             details={"providers": providers})

    def load(self, artifact: Artifact, *, graph: str = "model", device: str = "cuda", **options: Any) -> OrtSession:
        """Options: ``provider`` ("cuda" or "tensorrt"), ``io_binding`` (None = on when torch has CUDA),
        CUDA/TensorRT provider options (see :mod:`.providers`) and the ORT session options."""
        backend_opts, provider_opts, session_opts = split_options(options)
        device_id = parse_device(device, backend_opts.get("device_id"))
        provider = backend_opts.get("provider", "cuda")
        providers = provider_list(provider, device_id, provider_opts)
        missing = missing_pieces()
        if missing:
            raise BackendError(f"backend 'cuda' is not usable here: {'; '.join(missing)}")
        if provider == "tensorrt" and not probing.module_present("tensorrt"):
            raise BackendError("provider='tensorrt' needs the TensorRT Python package: pip install tensorrt (matching your CUDA)")
        io_binding = backend_opts.get("io_binding")
        if io_binding and not torch_has_cuda():
            raise BackendError("io_binding=True needs a PyTorch build with CUDA (torch.cuda.is_available() is False here)")
        import onnxruntime as ort

        session = create_session(ort, artifact.graph_to_read(graph), build_session_options(ort, session_opts), providers, fix=LOAD_FIX)
        check_providers(session, providers)
        return make_session(session, device_id, io_binding)


def make_session(session: Any, device_id: int, io_binding: bool | None) -> OrtSession:
    """IO binding (torch CUDA tensors in and out) when asked, or by default when torch has CUDA and
    ORT has DLPack; otherwise numpy through host memory, reported as device "cpu" — where the
    tensors live — because a CPU-only torch cannot hold CUDA tensors for a pipeline to place."""
    import onnxruntime as ort

    from optibridge_ort import IOBindingSession, dlpack_supported

    if io_binding is None:
        io_binding = torch_has_cuda() and dlpack_supported(ort)
    wrapped = IOBindingSession(session, device=f"cuda:{device_id}") if io_binding else OrtSession(
        session, device=f"cuda:{device_id}" if torch_has_cuda() else "cpu")
    wrapped.backend = "cuda"
    return wrapped
