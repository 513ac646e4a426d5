"""What a model-kind exporter (encoder, decoder, seq2seq) hands back to :func:`~optibridge.exporter.export`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from pathlib import Path

from ..artifact import Artifact, ArtifactMetadata, GraphSpec, write_metadata
from ..backend import Session
from ..errors import ValidationError
from .validate import ValidationReport

SessionLoader = Callable[[str], Session]
"""Loads one named graph of the artifact being written on the validation backend."""


@dataclass(frozen=True)
class Validator:
    """The runtime an export is checked on: its name and version (recorded in ``optibridge.json``)
    and how it loads one graph of the artifact being written (on the CPU)."""

    backend: str
    version: str
    load: Callable[[Artifact, str], Session]


@dataclass
class ExportedGraphs:
    graphs: dict[str, GraphSpec]
    output_class: str
    """Qualified name of the ``ModelOutput`` class the PyTorch model returns."""
    validate: Callable[[SessionLoader, float, str], ValidationReport]
    """Runs the graphs on fresh inputs of other shapes and compares with PyTorch: (load, atol, backend)."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Facts the loader needs (KV-cache layout, special token ids...), stored in ``optibridge.json``."""


def record_validation(staging: Path, metadata: ArtifactMetadata, report: ValidationReport, validator: Validator,
                      *, failure: str, advice: str) -> None:
    """Write ``report`` and the validating runtime's version into the staged ``optibridge.json``; a
    failed report is a :class:`ValidationError` (``failure`` names what differs, ``advice`` the fix)."""
    metadata.validation = report.to_dict()
    metadata.versions[f"{validator.backend} (validation)"] = validator.version
    write_metadata(staging, metadata)
    if not report.passed:
        worst = ", ".join(f"{o.name}: {o.max_abs_diff:.3g}" for o in report.failures())
        raise ValidationError(f"{failure} by more than atol={report.atol:g} ({worst}); nothing was written. {advice}")
