"""The exceptions optibridge raises on bad input.

Every message names what is wrong and how to fix it; the CLI prints ``str(error)`` as one line.
"""

from __future__ import annotations


class OptibridgeError(Exception):
    """Base class: a problem the user can fix (bad path, unsupported model, missing backend)."""


class ModelNotFoundError(OptibridgeError, FileNotFoundError):
    """The model path or hub id does not lead to a loadable transformers model."""


class UnsupportedModelError(OptibridgeError, ValueError):
    """The architecture or the task is not supported by the exporter."""


class ArtifactError(OptibridgeError):
    """An artifact folder is missing files, corrupt, or was written by an incompatible version."""


class BackendError(OptibridgeError):
    """A backend is unknown, not usable on this machine, or failed to load an artifact."""


class InputError(OptibridgeError, ValueError):
    """Inputs given at call time do not match what the model expects (names, dtypes, ranks)."""


class ValidationError(OptibridgeError):
    """The exported graph's outputs differ from PyTorch's by more than the tolerance."""


class ConfigError(OptibridgeError, ValueError):
    """A step's configuration holds an unknown or contradictory value; the message lists the valid ones."""


class CalibrationError(OptibridgeError, ValueError):
    """Calibration data is missing, empty, unreadable, or does not match the model's inputs."""


class AccuracyBudgetError(OptibridgeError):
    """The transformed graph is less accurate than the budget allows; nothing was written."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message, for embedding in a one-line error of our own."""
    text = str(exc).strip()
    return text.splitlines()[0].rstrip(".") if text else type(exc).__name__
