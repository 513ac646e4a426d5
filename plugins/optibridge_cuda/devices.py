"""``device="cuda:1"`` → the GPU index ONNX Runtime's ``device_id`` wants."""

from __future__ import annotations

from typing import Any

from optibridge.device import Device
from optibridge.errors import BackendError

DEVICE_FORMS = "'cuda', 'cuda:N' or an int N (N = GPU index, as nvidia-smi numbers them)"


def parse_device(device: Any, device_id: Any = None) -> int:
    """The GPU index of ``device``; ``device_id`` (ORT's provider option) may name it for plain 'cuda'."""
    try:
        parsed = Device.parse(device, int_kind="cuda")
    except BackendError:
        parsed = None
    if parsed is None or parsed.kind != "cuda":
        raise BackendError(f"backend 'cuda' runs on NVIDIA GPUs: device must be {DEVICE_FORMS}, not {device!r}")
    index = parsed.index
    if device_id is not None:
        if isinstance(device_id, bool) or not str(device_id).isdigit():
            raise BackendError(f"device_id must be a GPU index (0, 1, ...), not {device_id!r}")
        if index is not None and index != int(device_id):
            raise BackendError(f"device {device!r} and device_id={device_id!r} disagree; pass only device='cuda:N'")
        index = int(device_id)
    if index is None:
        index = 0
    if index < 0:
        raise BackendError(f"device must be {DEVICE_FORMS}, not {device!r}")
    return index
