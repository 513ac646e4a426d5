"""``export()``: a transformers model in, a validated artifact folder out."""

from __future__ import annotations

import logging
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from .. import __version__
from ..artifact import Artifact, ArtifactMetadata, check_output_dir, staged_directory, write_metadata
from ..errors import OptibridgeError, UnsupportedModelError, ValidationError, first_line
from .loading import SourceModel, load_preprocessor, load_source_model
from .plan import ExportedGraphs
from .torch_to_onnx import EXTERNAL_DATA_THRESHOLD, parameter_bytes, resolve_exporter
from .validate import ValidationReport

DEFAULT_ATOL = 1e-4
logger = logging.getLogger(__name__)

StepCallback = Callable[[str], None]


@dataclass
class ExportResult:
    artifact: Artifact
    task: str
    task_inferred: bool
    validation: ValidationReport | None
    note: str | None = None
    """Set for a model type outside the tested list: what proved the export ("... validated against PyTorch: ok")."""


def export(
    model: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    *,
    task: str | None = None,
    opset: int | None = None,
    atol: float = DEFAULT_ATOL,
    exporter: str = "auto",
    validate: bool = True,
    validation_backend: str = "ort",
    external_data: bool | None = None,
    use_cache: bool = True,
    on_step: StepCallback | None = None,
    **hub_kwargs: Any,
) -> ExportResult:
    """Export ``model`` (hub id or local folder) for ``task`` into the artifact folder ``output_dir``.

    Graphs have dynamic batch/sequence axes (and a past-sequence axis for KV caches); they are
    checked against PyTorch on fresh inputs of other shapes through ``validation_backend`` and the
    export fails (writing nothing) when any output differs by more than ``atol``.
    ``external_data=None`` keeps weights inside the .onnx file unless the model is past the 2 GiB
    protobuf limit. ``use_cache=False`` exports a generative model without KV cache.
    """
    step = on_step or (lambda message: None)
    check_output_dir(output_dir)
    step(f"loading {model}")
    source = load_source_model(str(model), task, **hub_kwargs)
    exporter = resolve_exporter(exporter, source.task.kind)
    modality = "multimodal" if source.task.modality == "multimodal" else source.architecture.modality
    preprocessor = load_preprocessor(str(model), modality, **hub_kwargs)
    if external_data is None:
        external_data = parameter_bytes(source.model) > EXTERNAL_DATA_THRESHOLD

    with staged_directory(output_dir) as staging:
        step(f"exporting {source.config.model_type} for {source.task.name} with the {exporter} exporter")
        untested = "" if source.architecture.tested else f"{source.config.model_type} is not in the tested list for {source.task.name}; "
        if untested:
            step(untested + "exporting it and validating against PyTorch")
        try:
            exported = _export_graphs(source, staging, exporter=exporter, opset=opset, external_data=external_data, use_cache=use_cache)
        except OptibridgeError:
            raise
        except Exception as exc:
            if not untested:
                raise
            raise UnsupportedModelError(f"{untested}export failed: {type(exc).__name__}: {first_line(exc)}") from exc
        source.config.save_pretrained(staging)
        if preprocessor is not None:
            preprocessor.save_pretrained(staging)
        generation_config = getattr(source.model, "generation_config", None)
        if source.task.kind != "encoder" and generation_config is not None:
            generation_config.save_pretrained(staging)
        metadata = build_metadata(source, exported, staging, exporter, str(model), hub_kwargs)
        write_metadata(staging, metadata)
        report = None
        if validate:
            step(f"validating against PyTorch on {validation_backend} at new shapes")
            report = _validate(Artifact(staging, metadata), exported, atol, validation_backend)
            metadata.validation = report.to_dict()
            metadata.versions[f"{validation_backend} (validation)"] = report_backend_version(validation_backend)
            write_metadata(staging, metadata)
            if not report.passed:
                worst = ", ".join(f"{o.name}: {o.max_abs_diff:.3g}" for o in report.failures())
                raise ValidationError(
                    f"{untested}exported graph differs from PyTorch by more than atol={atol:g} ({worst}); nothing was "
                    "written. Raise --atol if this is acceptable, or try --exporter dynamo / another --opset"
                )
        step("writing the artifact")
    note = None
    if untested:
        note = untested + ("export validated against PyTorch: ok" if report is not None else "export not validated (validate=False)")
        logger.warning(note)
    return ExportResult(Artifact.load(output_dir), source.task.name, source.task_inferred, report, note)


def _export_graphs(
    source: SourceModel, staging: Path, *, exporter: str, opset: int | None, external_data: bool, use_cache: bool
) -> ExportedGraphs:
    kind = source.task.kind
    if kind == "encoder":
        from .encoder import export_encoder

        return export_encoder(source, staging, exporter=exporter, opset=opset, external_data=external_data)
    if kind == "decoder":
        from .decoder import export_decoder

        return export_decoder(source, staging, opset=opset, external_data=external_data, use_cache=use_cache)
    if kind == "seq2seq":
        from .seq2seq import export_seq2seq

        return export_seq2seq(source, staging, opset=opset, external_data=external_data, use_cache=use_cache)
    raise OptibridgeError(f"internal: no exporter for model kind {kind!r}")


def _validate(artifact: Artifact, exported: ExportedGraphs, atol: float, backend_name: str) -> ValidationReport:
    from ..backends import get_registry

    backend = get_registry().require_available(backend_name, "cpu")
    return exported.validate(lambda graph: backend.load(artifact, graph=graph, device="cpu"), atol, backend_name)


def report_backend_version(name: str) -> str:
    from ..backends import get_registry

    return get_registry().get(name).status().version or "unknown"


def build_metadata(
    source: SourceModel, exported: ExportedGraphs, staging: Path, exporter: str, model_ref: str, hub_kwargs: dict[str, Any]
) -> ArtifactMetadata:
    import onnx
    import transformers

    main = next(iter(exported.graphs.values()))
    graph = onnx.load(str(staging / main.file), load_external_data=False)
    opset = next((o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")), 0)
    local = Path(model_ref).expanduser()
    return ArtifactMetadata(
        task=source.task.name,
        model_type=source.config.model_type,
        source={
            "model": model_ref,
            "local_path": str(local.resolve()) if local.exists() else None,
            "revision": hub_kwargs.get("revision"),
            "architectures": getattr(source.config, "architectures", None),
        },
        graphs=exported.graphs,
        output_class=exported.output_class,
        opset=opset,
        exporter=exporter,
        versions={
            "optibridge": __version__,
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "onnx": onnx.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
        steps=[{"step": "export", "exporter": exporter, "opset": opset}],
        extra=exported.extra,
    )
