"""The exceptions optibridge raises on bad input.

Every message names what is wrong and how to fix it; the CLI prints ``str(error)`` as one line.
"""

from __future__ import annotations

import re


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


# OpenVINO heads its messages with where they were raised ("Exception from src/inference/src/cpp/core.cpp:132:",
# "Check 'false' failed at src/frontends/common/src/frontend.cpp:47:"): lines that name no cause.
_SOURCE_LOCATION = re.compile(r"^(Exception from \S+:\d+:|Check '.*' failed at \S+:\d+:)$")
_HEADING_CHARS = 40


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message that says what went wrong, for embedding in a one-line
    error of our own. OpenVINO's source-location lines are skipped, and a short heading without
    punctuation ("Loading input model") is joined with the line after it, which holds the cause."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    message = [line for line in lines if not _SOURCE_LOCATION.match(line)] or lines
    if not message:
        return type(exc).__name__
    text = message[0]
    if len(message) > 1 and len(text) < _HEADING_CHARS and text[-1].isalnum():
        text = f"{text}: {message[1]}"
    return text.rstrip(".")
