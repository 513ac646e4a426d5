"""Steps that transform an artifact after export: graph optimization and quantization.

The verbs are runtime-neutral: they check inputs, call the chosen backend's ``optimize`` /
``quantize`` (see :class:`optibridge.backend.Backend`), measure accuracy against the float32
graphs and record the step in ``optibridge.json``.
"""

from typing import Any

from ..configs import (
    CALIBRATION_METHODS, OPTIMIZATION_LEVELS, CalibrationConfig, CalibrationData, OptimizationConfig, QuantizationConfig,
)
from ..errors import AccuracyBudgetError, CalibrationError, ConfigError
from .calibration import load_calibration
from .run import StepResult, check_accuracy, optimize, quantize

__all__ = [
    "AccuracyBudgetError", "CALIBRATION_METHODS", "CalibrationConfig", "CalibrationData", "CalibrationError",
    "ConfigError", "OPTIMIZATION_LEVELS", "OptimizationConfig", "QUANTIZATION_MODES", "QuantizationConfig",
    "StepResult", "check_accuracy", "load_calibration", "optimize", "quantize",
]


def __getattr__(name: str) -> Any:
    if name == "QUANTIZATION_MODES":  # read from the installed plugins (kept for existing imports)
        from . import config

        return config.QUANTIZATION_MODES
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
