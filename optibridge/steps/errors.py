"""Errors of the optimize/quantize steps (all :class:`~optibridge.errors.OptibridgeError`, so the CLI prints one line)."""

from __future__ import annotations

from ..errors import OptibridgeError


class ConfigError(OptibridgeError, ValueError):
    """A step's configuration holds an unknown or contradictory value; the message lists the valid ones."""


class CalibrationError(OptibridgeError, ValueError):
    """Calibration data is missing, empty, unreadable, or does not match the model's inputs."""


class AccuracyBudgetError(OptibridgeError):
    """The transformed graph is less accurate than the budget allows; nothing was written."""
