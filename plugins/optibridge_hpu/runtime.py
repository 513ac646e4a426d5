"""The parts of ``habana_frameworks.torch`` the Gaudi backend uses, imported only when a model loads.

Importing ``habana_frameworks.torch`` registers the ``hpu`` device with torch and patches torch
functions process-wide, so detection (``HpuBackend.status``) never does it; loading a model does,
because that is when the user asked for Gaudi.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, ContextManager

from optibridge.errors import BackendError


@dataclass(frozen=True)
class HpuRuntime:
    core: Any
    """``habana_frameworks.torch.core``: ``mark_step`` ends a lazy-mode graph and runs it."""
    hpu: Any
    """``habana_frameworks.torch.hpu``: ``wrap_in_hpu_graph`` records a module once per input shape and replays it."""

    @classmethod
    def load(cls) -> "HpuRuntime":
        try:
            import habana_frameworks.torch.core as core
            import habana_frameworks.torch.hpu as hpu
        except ImportError as exc:
            raise BackendError(
                f"backend 'hpu' needs the Intel Gaudi software stack (habana_frameworks.torch): {exc}. "
                "Install it from Intel's Gaudi installer or use a Gaudi PyTorch container"
            ) from exc
        return cls(core, hpu)

    def place(self, module: Any, device: str, hpu_graphs: bool) -> Any:
        """The module in eval mode on ``device``, wrapped in an HPU graph when asked."""
        module = module.eval().to(device)
        return self.hpu.wrap_in_hpu_graph(module) if hpu_graphs else module

    @staticmethod
    def autocast(dtype: Any) -> ContextManager[Any]:
        """bf16 autocast on the HPU (Gaudi's fast path); ``None`` runs in the model's own dtype."""
        import torch

        return torch.autocast(device_type="hpu", dtype=dtype) if dtype is not None else contextlib.nullcontext()

    def mark_step(self) -> None:
        self.core.mark_step()
