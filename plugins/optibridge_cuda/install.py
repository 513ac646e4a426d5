"""Diagnose the onnxruntime / onnxruntime-gpu clash without importing either.

Both distributions install into the same ``onnxruntime/`` folder: with both present the one
installed last wins (silently CPU-only when that is ``onnxruntime``), and uninstalling either one
deletes files the other needs.
"""

from __future__ import annotations

from optibridge import probing

SWITCH = "pip uninstall -y onnxruntime onnxruntime-gpu && pip install 'optibridge[cuda]'"
"""The command that leaves exactly onnxruntime-gpu installed (README "CUDA")."""


def install_problems() -> list[str]:
    """What is broken about this machine's ONNX Runtime install, each with the command that fixes it."""
    cpu, gpu = probing.distribution_version("onnxruntime"), probing.distribution_version("onnxruntime-gpu")
    if cpu and gpu:
        return [
            f"broken install: both onnxruntime {cpu} and onnxruntime-gpu {gpu} are installed and share the "
            f"onnxruntime/ folder (the last one installed wins); fix: {SWITCH}"
        ]
    if gpu and not probing.module_present("onnxruntime"):
        return [
            f"broken install: onnxruntime-gpu {gpu} is installed but the onnxruntime module is gone (uninstalling "
            f"onnxruntime removed the shared folder); fix: {SWITCH}"
        ]
    return []
