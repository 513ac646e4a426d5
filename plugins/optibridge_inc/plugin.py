"""Entry point of the Neural Compressor modes (``optibridge.backends: inc``).

Not a backend: it declares modes (``optibridge_modes`` hook) that run on the PyTorch model and
hand the result to the chosen backend's ``int4`` mode, which packs the weights it picked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from optibridge.artifact import Artifact
from optibridge.capabilities import ModeSpec
from optibridge.hookspecs import hookimpl


def _prepare(artifact: Artifact, config: Any, calibration: Any, scratch: Path) -> tuple[Artifact, list[str]]:
    from .quantize import quantize_with_inc  # imports torch/transformers only when the mode runs

    return quantize_with_inc(artifact, config, calibration, scratch)


MODES = (
    ModeSpec("inc-rtn", "Neural Compressor round-to-nearest int4 weights on the PyTorch model, then exported",
             "int4 weights", then="int4", prepare=_prepare, weight_only=True),
    ModeSpec("inc-awq", "Neural Compressor AWQ (activation-aware) int4 weights on the PyTorch model, then exported",
             "int4 weights", needs_calibration=True, then="int4", prepare=_prepare, weight_only=True),
    ModeSpec("inc-gptq", "Neural Compressor GPTQ int4 weights on the PyTorch model, then exported",
             "int4 weights", needs_calibration=True, then="int4", prepare=_prepare, weight_only=True),
)


@hookimpl
def optibridge_modes() -> list[ModeSpec]:
    return list(MODES)
