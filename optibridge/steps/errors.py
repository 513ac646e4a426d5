"""Errors of the optimize/quantize steps; they live in :mod:`optibridge.errors` (kept for existing imports)."""

from __future__ import annotations

from ..errors import AccuracyBudgetError, CalibrationError, ConfigError

__all__ = ["AccuracyBudgetError", "CalibrationError", "ConfigError"]
