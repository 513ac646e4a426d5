"""Entry point of the Habana Gaudi backend (``optibridge.backends: hpu``).

Detection never imports ``habana_frameworks`` nor calls transformers' HPU check: both patch torch
functions process-wide on an HPU host.
"""

from __future__ import annotations

from optibridge.backend import Backend
from optibridge.hookspecs import hookimpl

from .backend import HpuBackend


@hookimpl
def optibridge_backends() -> list[Backend]:
    return [HpuBackend()]
