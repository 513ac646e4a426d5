"""The step configs live in :mod:`optibridge.configs` (kept for existing imports).

``QUANTIZATION_MODES`` (mode → description) and ``MODE_BACKENDS`` (mode → who implements it)
are no longer tables: they are read from the installed plugins' declarations on each access.
"""

from __future__ import annotations

from typing import Any

from ..configs import (
    CALIBRATION_METHODS, INT4_ALGORITHMS, OPTIMIZATION_LEVELS, PRESETS, TARGET_DEVICES, CalibrationConfig,
    OptimizationConfig, QuantizationConfig,
)
from ..errors import ConfigError

__all__ = [
    "CALIBRATION_METHODS", "INT4_ALGORITHMS", "OPTIMIZATION_LEVELS", "PRESETS", "TARGET_DEVICES", "CalibrationConfig",
    "ConfigError", "OptimizationConfig", "QuantizationConfig",
]


def __getattr__(name: str) -> Any:
    from ..backends import get_registry

    if name == "QUANTIZATION_MODES":
        registry = get_registry()
        return {mode: registry.mode(mode).description for mode in registry.modes()}
    if name == "MODE_BACKENDS":
        return {mode: tuple(owners) for mode, owners in get_registry().modes().items()}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
