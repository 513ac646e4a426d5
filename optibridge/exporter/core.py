"""``export()``: a transformers model in, a validated artifact folder out."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from .. import __version__
from ..artifact import (
    MAIN_GRAPH, MODEL_FILE, Artifact, ArtifactMetadata, GraphSpec, TensorSpec, check_output_dir, staged_directory, write_metadata,
)
from ..errors import ValidationError
from .inputs import TRACE_SHAPES, VALIDATION_SHAPES, input_axes, make_inputs, output_axes
from .loading import SourceModel, load_preprocessor, load_source_model
from .torch_to_onnx import EXTERNAL_DATA_THRESHOLD, export_graph, parameter_bytes, resolve_exporter
from .validate import ValidationReport, compare_outputs

DEFAULT_ATOL = 1e-4

StepCallback = Callable[[str], None]


@dataclass
class ExportResult:
    artifact: Artifact
    task: str
    task_inferred: bool
    validation: ValidationReport | None


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
    on_step: StepCallback | None = None,
    **hub_kwargs: Any,
) -> ExportResult:
    """Export ``model`` (hub id or local folder) for ``task`` into the artifact folder ``output_dir``.

    The graph has dynamic batch/sequence axes; it is checked against PyTorch on fresh inputs of
    other shapes through ``validation_backend`` and the export fails (writing nothing) when any
    output differs by more than ``atol``. ``external_data=None`` keeps weights inside model.onnx
    unless the model is past the 2 GiB protobuf limit.
    """
    step = on_step or (lambda message: None)
    exporter = resolve_exporter(exporter)
    check_output_dir(output_dir)
    step(f"loading {model}")
    source = load_source_model(str(model), task, **hub_kwargs)
    preprocessor = load_preprocessor(str(model), source.architecture.modality, **hub_kwargs)
    if external_data is None:
        external_data = parameter_bytes(source.model) > EXTERNAL_DATA_THRESHOLD

    input_names = source.architecture.input_names(source.config)
    modality = source.architecture.modality
    trace_inputs = make_inputs(source.task, modality, source.config, input_names, TRACE_SHAPES, seed=0)
    check_inputs = make_inputs(source.task, modality, source.config, input_names, VALIDATION_SHAPES, seed=1)
    traced_out, output_class = run_pytorch(source, trace_inputs)
    check_out, _ = run_pytorch(source, check_inputs)
    out_axes = output_axes({k: v.shape for k, v in traced_out.items()}, {k: v.shape for k, v in check_out.items()})
    in_axes = {name: input_axes(source.task, modality) for name in input_names}

    with staged_directory(output_dir) as staging:
        step(f"exporting {source.config.model_type} for {source.task.name} with the {exporter} exporter")
        export_graph(
            source.model, trace_inputs, tuple(traced_out), in_axes, out_axes, staging / MODEL_FILE,
            exporter=exporter, opset=opset, external_data=external_data,
        )
        source.config.save_pretrained(staging)
        if preprocessor is not None:
            preprocessor.save_pretrained(staging)
        metadata = build_metadata(source, staging / MODEL_FILE, output_class, exporter, str(model), hub_kwargs)
        write_metadata(staging, metadata)
        report = None
        if validate:
            step(f"validating against PyTorch on {validation_backend} at new shapes")
            report = validate_artifact(Artifact(staging, metadata), check_inputs, check_out, atol, validation_backend)
            metadata.validation = report.to_dict()
            metadata.versions[f"{validation_backend} (validation)"] = report_backend_version(validation_backend)
            write_metadata(staging, metadata)
            if not report.passed:
                worst = ", ".join(f"{o.name}: {o.max_abs_diff:.3g}" for o in report.failures())
                raise ValidationError(
                    f"exported graph differs from PyTorch by more than atol={atol:g} ({worst}); nothing was "
                    "written. Raise --atol if this is acceptable, or try --exporter dynamo / another --opset"
                )
        step("writing the artifact")
    return ExportResult(Artifact.load(output_dir), source.task.name, source.task_inferred, report)


def run_pytorch(source: SourceModel, inputs: dict[str, torch.Tensor]) -> tuple[dict[str, np.ndarray], str]:
    """PyTorch reference outputs (those the task exports that this model returns) and their class."""
    with torch.no_grad():
        result = source.model(**inputs, return_dict=True)
    outputs = {}
    for name in source.task.outputs:
        value = result.get(name) if hasattr(result, "get") else None
        if value is None:
            if name in source.task.optional_outputs:
                continue
            raise ValidationError(f"{type(source.model).__name__} returned no {name!r} for task {source.task.name}")
        outputs[name] = value.detach().cpu().numpy()
    cls = type(result)
    return outputs, f"{cls.__module__}.{cls.__qualname__}"


def validate_artifact(
    artifact: Artifact,
    inputs: dict[str, torch.Tensor],
    reference: dict[str, np.ndarray],
    atol: float,
    backend_name: str,
) -> ValidationReport:
    from ..backends import get_registry

    backend = get_registry().require_available(backend_name, "cpu")
    session = backend.load(artifact, device="cpu")
    feed = {name: tensor.numpy() for name, tensor in inputs.items() if name in session.input_names}
    actual = session.run(feed)
    return compare_outputs(
        reference, actual, atol=atol, backend=backend_name,
        input_shapes={k: tuple(v.shape) for k, v in inputs.items()},
    )


def report_backend_version(name: str) -> str:
    from ..backends import get_registry

    return get_registry().get(name).status().version or "unknown"


def build_metadata(
    source: SourceModel, model_path: Path, output_class: str, exporter: str, model_ref: str, hub_kwargs: dict[str, Any]
) -> ArtifactMetadata:
    import onnx
    import transformers

    graph = onnx.load(str(model_path), load_external_data=False)
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
        graphs={MAIN_GRAPH: graph_spec(model_path.name, graph)},
        output_class=output_class,
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
    )


def graph_spec(file: str, graph: Any) -> GraphSpec:
    """Inputs/outputs of an ONNX ``ModelProto`` as recorded in ``optibridge.json``."""
    return GraphSpec(file, tuple(_tensor_spec(v) for v in graph.graph.input), tuple(_tensor_spec(v) for v in graph.graph.output))


def _tensor_spec(value: Any) -> TensorSpec:
    from onnx import helper

    tensor_type = value.type.tensor_type
    dtype = np.dtype(helper.tensor_dtype_to_np_dtype(tensor_type.elem_type)).name
    shape = tuple(d.dim_param if d.dim_param else d.dim_value for d in tensor_type.shape.dim)
    return TensorSpec(value.name, dtype, shape)
