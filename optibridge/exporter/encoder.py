"""Encoders (one graph, one call): text and vision models for the non-generative tasks."""

from __future__ import annotations

import contextlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import torch

from ..artifact import MAIN_GRAPH, MODEL_FILE
from ..errors import ValidationError
from .architectures import forward_parameters
from .image_sizes import ImageSizePlan, confirm_traceable, plan_image_sizes
from .inputs import MULTIMODAL_AXES, TRACE_SHAPES, VALIDATION_SHAPES, input_axes, make_inputs, output_axes, vision_part
from .loading import SourceModel
from .plan import ExportedGraphs, SessionLoader
from .torch_to_onnx import OutputSelector, dynamic_shapes, export_graph, graph_spec
from .traceable import traceable_attention_modules
from .validate import ValidationReport, compare_outputs


def export_encoder(
    source: SourceModel, staging: Path, *, exporter: str, opset: int | None, external_data: bool
) -> ExportedGraphs:
    takes = forward_parameters(type(source.model))
    # e.g. an encoder whose forward() has no attention_mask: the graph takes what forward() takes
    input_names = tuple(n for n in source.architecture.input_names(source.config, source.task) if not takes or n in takes)
    modality = "multimodal" if source.task.modality == "multimodal" else source.architecture.modality
    plan = image_plan(source, modality, input_names, takes)
    if plan is not None:
        axes = {n: input_axes(source.task, modality, n) for n in input_names} | {"pixel_values": plan.axes(input_axes(source.task, modality, "pixel_values")[0])}
        outputs = task_outputs(source, modality, input_names)
        with _traceable(source.model, exporter):
            plan = confirm_traceable(plan, OutputSelector(source.model, input_names, outputs, plan.call_kwargs),
                                     lambda size, traced: _image_args(source, modality, input_names, size, traced), exporter,
                                     (dynamic_shapes(input_names, axes),))
    trace_shapes, check_shapes = TRACE_SHAPES, VALIDATION_SHAPES
    if plan is not None:
        trace_shapes, check_shapes = replace(TRACE_SHAPES, image=plan.traced), replace(VALIDATION_SHAPES, image=plan.validated)
    call_kwargs = plan.call_kwargs if plan is not None else {}
    trace_inputs = make_inputs(source.task, modality, source.config, input_names, trace_shapes, seed=0)
    check_inputs = make_inputs(source.task, modality, source.config, input_names, check_shapes, seed=1)
    traced_out, output_class = run_pytorch(source, trace_inputs, call_kwargs)
    check_out, _ = run_pytorch(source, check_inputs, call_kwargs)
    out_axes = output_axes({k: v.shape for k, v in traced_out.items()}, {k: v.shape for k, v in check_out.items()})
    in_axes = {name: input_axes(source.task, modality, name) for name in input_names}
    if plan is not None:
        in_axes["pixel_values"] = plan.axes(in_axes["pixel_values"][0])
    if modality == "multimodal":
        out_axes = {k: {i: MULTIMODAL_AXES.get(a, a) for i, a in axes.items()} for k, axes in out_axes.items()}
    path = staging / MODEL_FILE
    with _traceable(source.model, exporter):
        export_graph(
            source.model, trace_inputs, tuple(traced_out), in_axes, out_axes, path,
            exporter=exporter, opset=opset, external_data=external_data, call_kwargs=call_kwargs,
        )

    def validate(load: SessionLoader, atol: float, backend: str) -> ValidationReport:
        session = load(MAIN_GRAPH)
        feed = {name: tensor.numpy() for name, tensor in check_inputs.items() if name in session.input_names}
        return compare_outputs(
            check_out, session.run(feed), atol=atol, backend=backend,
            input_shapes={k: tuple(v.shape) for k, v in check_inputs.items()},
        )

    graph = onnx.load(str(path), load_external_data=False)
    extra = dict(getattr(source.model, "export_extra", {}))  # e.g. a sentence model's max_seq_length
    if plan is not None:
        extra["image_size"] = plan.record()
    return ExportedGraphs({MAIN_GRAPH: graph_spec(path.name, graph)}, output_class, validate, extra)


def _traceable(model: torch.nn.Module, exporter: str) -> contextlib.AbstractContextManager[int]:
    """TorchScript freezes nn.MultiheadAttention's key length: trace an equivalent in plain ops instead
    (validation still compares the graph with the model as it is)."""
    return traceable_attention_modules(model) if exporter != "dynamo" else contextlib.nullcontext(0)


def image_plan(source: SourceModel, modality: str, input_names: tuple[str, ...], takes: set[str]) -> ImageSizePlan | None:
    """For a graph with ``pixel_values``: whether it takes any image size (see :mod:`.image_sizes`)."""
    if "pixel_values" not in input_names:
        return None
    config = vision_part(source.config)
    others = make_inputs(source.task, modality, source.config, input_names, TRACE_SHAPES, seed=0)

    def run(pixels: torch.Tensor, kwargs: dict[str, object]) -> object:
        batch = {k: v[:1] for k, v in others.items() if k != "pixel_values"}
        return source.model(**batch, pixel_values=pixels, **kwargs, return_dict=True)

    return plan_image_sizes(run, config, takes, int(getattr(config, "num_channels", 3)))


def task_outputs(source: SourceModel, modality: str, input_names: tuple[str, ...]) -> tuple[str, ...]:
    """The task's outputs that this model returns (an optional one, pooler_output, may be missing)."""
    with torch.no_grad():
        result = source.model(**make_inputs(source.task, modality, source.config, input_names, TRACE_SHAPES, seed=0), return_dict=True)
    return tuple(name for name in source.task.outputs if result.get(name) is not None)


def _image_args(source: SourceModel, modality: str, input_names: tuple[str, ...], size: tuple[int, int], traced: bool) -> tuple[torch.Tensor, ...]:
    # the validation shapes give every batch axis the graph names (texts, images) another size than the trace's
    shapes = TRACE_SHAPES if traced else VALIDATION_SHAPES
    inputs = make_inputs(source.task, modality, source.config, input_names, replace(shapes, image=size), seed=0)
    return tuple(inputs.values())


def run_pytorch(source: SourceModel, inputs: dict[str, torch.Tensor], call_kwargs: dict[str, object] | None = None) -> tuple[dict[str, np.ndarray], str]:
    """PyTorch reference outputs (those the task exports that this model returns) and their class."""
    with torch.no_grad():
        result = source.model(**inputs, **(call_kwargs or {}), return_dict=True)
    outputs = {}
    for name in source.task.outputs:
        value = result.get(name) if hasattr(result, "get") else None
        if value is None:
            if name in source.task.optional_outputs:
                continue
            raise ValidationError(f"{type(source.model).__name__} returned no {name!r} for task {source.task.name}")
        outputs[name] = value.detach().cpu().numpy()
    return outputs, qualified_name(type(result))


def qualified_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"
