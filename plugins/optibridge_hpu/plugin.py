"""Habana Gaudi backend entry point. Detection only for now; running models lands with the CUDA/HPU issue.

Detection never imports ``habana_frameworks`` nor calls transformers' HPU check: both patch torch
functions process-wide on an HPU host.
"""

from __future__ import annotations

from optibridge.backend import Backend, DetectOnlyBackend
from optibridge.hookspecs import hookimpl
from optibridge.probing import habana_devices, hl_smi_present, module_present


class HpuBackend(DetectOnlyBackend):
    name = "hpu"
    description = "Habana Gaudi through habana_frameworks.torch (runs the PyTorch model, not ONNX)"
    priority = 30

    def missing(self) -> list[str]:
        missing = []
        if not module_present("habana_frameworks"):
            missing.append("habana_frameworks (Intel Gaudi software stack) not installed")
        if not habana_devices():
            missing.append("no Gaudi device (/dev/accel/accel*)")
        if not hl_smi_present():
            missing.append("hl-smi not on PATH")
        return missing


@hookimpl
def optibridge_backends() -> list[Backend]:
    return [HpuBackend()]
