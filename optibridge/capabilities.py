"""What a plugin declares it can do, as data the core reads: quantization modes and graph formats.

The core builds its help, its errors and the bench candidates from these declarations and keeps
no table of its own that names a plugin. A backend lists them on its class
(:attr:`optibridge.backend.Backend.modes`, :attr:`~optibridge.backend.Backend.format_descriptions`);
a plugin that is not a backend (a quantizer that works on the PyTorch model before export) returns
its modes from the ``optibridge_modes`` hook (see :mod:`optibridge.hookspecs`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from .artifact import Artifact

PrepareStep = Callable[["Artifact", Any, Any, Path], "tuple[Artifact, list[str]]"]
"""``prepare(artifact, config, calibration, scratch) -> (artifact for the backend, notes)``."""


@dataclass(frozen=True)
class ModeSpec:
    """One quantization mode a plugin implements.

    ``needs_calibration``: the verb loads calibration samples (the user's, or the built-in
    sentences) and passes them to the backend. ``uses_samples``: samples are loaded when they can
    be (SmoothQuant statistics), and the mode still works without. ``cpu_preset``: the int8
    settings depend on the CPU (``preset="auto"`` is resolved before the backend runs).

    A mode with ``prepare`` works on the PyTorch model before any backend runs (Neural
    Compressor's weight-only quantizers): ``prepare`` returns the artifact to hand over, and the
    backend then runs mode ``then`` on it (e.g. packs int4 weights).
    """

    name: str
    description: str
    precision: str = ""
    """What the weights/activations become, in words: "int8", "int4 weights", "fp8" ..."""
    step: str = "quantize"
    needs_calibration: bool = False
    uses_samples: bool = False
    cpu_preset: bool = False
    then: str | None = None
    prepare: PrepareStep | None = field(default=None, compare=False, repr=False)
    weight_only: bool = False
    """Only the weights are compressed; activations stay in float. Decoding reads every weight per
    token, so ``bench`` and ``tune`` try such modes by default on decoder LMs (text-generation),
    except those with ``prepare`` (they rework the PyTorch model: slow, asked for by name)."""


def help_line(modes: dict[str, list[str]]) -> str:
    """``mode (plugin, plugin) | ...``: the --mode help built from what is registered."""
    return " | ".join(f"{name} ({', '.join(owners)})" for name, owners in modes.items())
