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

from .._version import __version__
from ..artifact import Artifact, ArtifactMetadata, check_output_dir, staged_directory, write_metadata
from ..errors import OptibridgeError, UnsupportedModelError, first_line
from .loading import SourceModel, load_preprocessors, load_source_model
from .plan import ExportedGraphs, Validator, record_validation
from .torch_to_onnx import SIDE_FILE_MIN_BYTES, parameter_bytes, resolve_exporter
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


def export_model(
    model: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    *,
    task: str | None = None,
    opset: int | None = None,
    atol: float = DEFAULT_ATOL,
    exporter: str = "auto",
    validate: bool = True,
    validator: Validator | None = None,
    external_data: bool | None = None,
    use_cache: bool = True,
    on_step: StepCallback | None = None,
    allow_new_weights: bool = False,
    overwrite: bool = False,
    **hub_kwargs: Any,
) -> ExportResult:
    """Export ``model`` (hub id or local folder) for ``task`` into the artifact folder ``output_dir``.

    Graphs have dynamic batch/sequence axes (and a past-sequence axis for KV caches); they are
    checked against PyTorch on fresh inputs of other shapes through ``validator`` (a runtime the
    caller chose; :func:`optibridge.exporter.export` picks one from the installed backends) and the
    export fails (writing nothing) when any output differs by more than ``atol``.
    ``external_data=None`` writes the weights beside the graph (``model.onnx.data``) for models
    with more than 256 MiB of them (ONNX Runtime maps that file: lower load memory) and inside the
    .onnx file below; True/False force either. ``use_cache=False`` exports a generative model without KV cache.
    Code shipped with the model runs only with ``trust_remote_code=True``; weights the checkpoint
    lacks for ``task`` (a new random head) are an error unless ``allow_new_weights=True``.
    """
    step = on_step or (lambda message: None)
    check_opset(opset)
    check_output_dir(output_dir, overwrite=overwrite)
    step(f"loading {model}")
    source = load_source_model(str(model), task, allow_new_weights=allow_new_weights, **hub_kwargs)
    check_opset(opset, resolve_exporter(exporter, source.task.kind))  # export_source picks the exporter(s) to try
    modality = "multimodal" if source.task.modality == "multimodal" else source.architecture.modality
    if source.task.name == "image-text-to-text":
        modality = "processor"
    preprocessor = load_preprocessors(str(model), modality, source.task.kind != "encoder", **hub_kwargs)
    return export_source(
        source, output_dir, model_ref=str(model), preprocessor=preprocessor, opset=opset, atol=atol, exporter=exporter,
        validate=validate, validator=validator, external_data=external_data, use_cache=use_cache,
        on_step=step, hub_kwargs=hub_kwargs, overwrite=overwrite,
    )


def export_source(
    source: SourceModel,
    output_dir: str | os.PathLike[str],
    *,
    model_ref: str,
    preprocessor: Any = None,
    opset: int | None = None,
    atol: float = DEFAULT_ATOL,
    exporter: str = "auto",
    validate: bool = True,
    validator: Validator | None = None,
    external_data: bool | None = None,
    use_cache: bool = True,
    on_step: StepCallback | None = None,
    hub_kwargs: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> ExportResult:
    """:func:`export_model` for a model already in memory (``source.model``, e.g. one just trained): same
    graphs, same validation against that model, same staged write."""
    step = on_step or (lambda message: None)
    hub_kwargs = hub_kwargs or {}
    check_opset(opset, resolve_exporter(exporter, source.task.kind))
    check_output_dir(output_dir, overwrite=overwrite)
    if external_data is None:
        external_data = parameter_bytes(source.model) > SIDE_FILE_MIN_BYTES
    from .fast_path import exporter_attempts

    attempts = exporter_attempts(exporter, source.task.kind, source.config, validate=validate, opset=opset)

    with staged_directory(output_dir, overwrite=overwrite) as staging:
        untested = "" if source.architecture.tested else f"{source.config.model_type} is not in the tested list for {source.task.name}; "
        for number, attempt in enumerate(attempts, start=1):
            try:
                report = _export_and_validate(
                    source, staging, exporter=attempt, untested=untested, model_ref=model_ref, preprocessor=preprocessor,
                    opset=opset, atol=atol, validate=validate, validator=validator, external_data=external_data,
                    use_cache=use_cache, step=step, hub_kwargs=hub_kwargs,
                )
                break
            except Exception as exc:
                if number == len(attempts):
                    raise
                message = (f"the {attempt} export of {source.config.model_type} did not hold ({type(exc).__name__}: "
                           f"{first_line(exc)}); exporting it again with {attempts[number]}")
                logger.warning(message)
                step(message)
        step("writing the artifact")
    note = None
    if untested:
        note = untested + ("export validated against PyTorch: ok" if report is not None else "export not validated (validate=False)")
        logger.warning(note)
    return ExportResult(Artifact.load(output_dir), source.task.name, source.task_inferred, report, note)


def _export_and_validate(
    source: SourceModel, staging: Path, *, exporter: str, untested: str, model_ref: str, preprocessor: Any, opset: int | None,
    atol: float, validate: bool, validator: Validator | None, external_data: bool, use_cache: bool, step: StepCallback,
    hub_kwargs: dict[str, Any],
) -> ValidationReport | None:
    """One try of :func:`export_source` with one exporter: graphs, files and metadata into ``staging``, then validation."""
    step(f"exporting {source.config.model_type} for {source.task.name} with the {exporter} exporter")
    if untested:
        step(untested + "exporting it and validating against PyTorch")
    try:
        exported = _export_graphs(source, staging, exporter=exporter, opset=opset, external_data=external_data, use_cache=use_cache)
        exported.extra.update(source.extra)
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
    metadata = build_metadata(source, exported, staging, exporter, model_ref, hub_kwargs)
    write_metadata(staging, metadata)
    if not validate:
        return None
    if validator is None:
        raise OptibridgeError("internal: export(validate=True) needs a validator (optibridge.exporter.export passes one)")
    step(f"validating against PyTorch on {validator.backend} at new shapes")
    staged = Artifact(staging, metadata)
    report = exported.validate(lambda graph: validator.load(staged, graph), atol, validator.backend)
    record_validation(staging, metadata, report, validator, failure=f"{untested}exported graph differs from PyTorch",
                      advice="Raise --atol if this is acceptable, or try --exporter dynamo / another --opset")
    return report


MIN_OPSET = 14
"""Below 14 the attention of transformers models has no ONNX form (Trilu, scaled masks)."""


def check_opset(opset: int | None, exporter: str | None = None) -> None:
    """An opset outside what torch's exporter writes is one clear line, before anything loads."""
    if opset is None:
        return
    from torch.onnx import _constants

    highest = _constants.ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET if exporter == "torchscript" else _constants.ONNX_MAX_OPSET
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= highest:
        hint = " (or --exporter dynamo for a newer one)" if exporter == "torchscript" and isinstance(opset, int) and opset > highest else ""
        raise UnsupportedModelError(
            f"--opset {opset} is outside the range this export supports: {MIN_OPSET}-{highest}{hint}; "
            "omit --opset for the exporter's default"
        )


def _export_graphs(
    source: SourceModel, staging: Path, *, exporter: str, opset: int | None, external_data: bool, use_cache: bool
) -> ExportedGraphs:
    kind = source.task.kind
    if kind == "encoder":
        from .encoder import export_encoder

        return export_encoder(source, staging, exporter=exporter, opset=opset, external_data=external_data)
    if kind == "decoder" and source.task.name == "image-text-to-text":
        from .visual_lm import export_visual_lm

        return export_visual_lm(source, staging, opset=opset, external_data=external_data, use_cache=use_cache, exporter=exporter)
    if kind == "decoder":
        from .decoder import export_decoder

        return export_decoder(source, staging, opset=opset, external_data=external_data, use_cache=use_cache, exporter=exporter)
    if kind == "seq2seq":
        from .seq2seq import export_seq2seq

        return export_seq2seq(source, staging, opset=opset, external_data=external_data, use_cache=use_cache, exporter=exporter)
    raise OptibridgeError(f"internal: no exporter for model kind {kind!r}")


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
