"""Side-effect-free probes a backend plugin uses to explain why it cannot run here."""

from __future__ import annotations

import glob
import importlib.metadata
import importlib.util
import os
import shutil


def module_present(name: str) -> bool:
    """True when ``name`` can be imported, found without importing it (importing may patch torch)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def distribution_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def nvidia_driver_present() -> bool:
    return os.path.exists("/proc/driver/nvidia/version") or shutil.which("nvidia-smi") is not None


def habana_devices() -> list[str]:
    return sorted(glob.glob("/dev/accel/accel*"))


def hl_smi_present() -> bool:
    return shutil.which("hl-smi") is not None
