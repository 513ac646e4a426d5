"""The ``torch.onnx.export`` call, for both of torch's exporters, and post-export graph fix-ups."""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
import warnings
from pathlib import Path
from collections.abc import Callable
from typing import Any

import numpy as np
import onnx
import torch

from ..artifact import GraphSpec, TensorSpec, write_graph
from ..errors import OptibridgeError
from ..tied_weights import share_tied_weights
from .complex_rotary import real_valued_rotary
from .moe import traceable_experts

EXPORTERS = ("auto", "torchscript", "dynamo")
# ONNX protobufs are capped at 2 GiB; keep a margin for the graph itself.
EXTERNAL_DATA_THRESHOLD = 2_000_000_000
# Above this much weight data an export writes the weights beside the graph (<file>.data) by
# default. ONNX Runtime then maps the weights file instead of copying every tensor out of the
# parsed protobuf: GPT-2-small (652 MB) loads at 635 MB peak RSS instead of 850, and with
# onnxruntime-genai's own session beside it 676 instead of 1141 MB, same logits and speed
# (docs/generation.md, 2026-12-02). Below it a single file is simpler and the saving small.
SIDE_FILE_MIN_BYTES = 256 * 2**20


class OutputSelector(torch.nn.Module):
    """Calls the model with named inputs and returns the chosen outputs as a tuple (what ONNX needs)."""

    def __init__(self, model: torch.nn.Module, input_names: tuple[str, ...], output_names: tuple[str, ...],
                 call_kwargs: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.model = model
        self.input_names = input_names
        self.output_names = output_names
        self.call_kwargs = dict(call_kwargs or {})  # fixed arguments, e.g. interpolate_pos_encoding=True
        # The TorchScript exporter restores training mode recursively afterwards; the wrapper must
        # itself be in eval mode or dropout comes back on.
        self.eval()

    def forward(self, *args: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outputs = self.model(**dict(zip(self.input_names, args)), **self.call_kwargs, return_dict=True)
        return tuple(outputs[name] for name in self.output_names)


def resolve_exporter(exporter: str, kind: str = "encoder") -> str:
    """``auto`` → TorchScript for encoders while torch still ships it (20-40× faster to export, and
    the graph shape ONNX Runtime's transformer fusions recognise), dynamo for generative models and
    when TorchScript is gone (decoder LMs try TorchScript first: see ``fast_path.exporter_attempts``)."""
    if exporter not in EXPORTERS:
        raise OptibridgeError(f"unknown exporter {exporter!r}; choose one of {', '.join(EXPORTERS)}")
    if kind == "decoder" and exporter == "torchscript":
        return exporter  # the fast path's traced step (fast_path.py); auto tries it first itself
    if kind != "encoder":
        if exporter == "torchscript":
            raise OptibridgeError(
                "encoder-decoder models export with the dynamo exporter only (their TorchScript decoder "
                "graphs bake traced sizes in); use --exporter dynamo or auto"
            )
        return "dynamo"
    if exporter != "auto":
        return exporter
    try:
        from torch.onnx import utils as _legacy  # noqa: F401  (removed in torch versions without TorchScript export)
    except ImportError:
        return "dynamo"
    return "torchscript"


def parameter_bytes(model: torch.nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())


def export_graph(
    model: torch.nn.Module,
    inputs: dict[str, torch.Tensor],
    output_names: tuple[str, ...],
    input_axes: dict[str, dict[int, str]],
    output_axes: dict[str, dict[int, str]],
    path: Path,
    *,
    exporter: str,
    opset: int | None,
    external_data: bool,
    call_kwargs: dict[str, Any] | None = None,
) -> None:
    """Export a transformers model called with named ``inputs`` (and ``call_kwargs``), keeping ``output_names``."""
    wrapper = OutputSelector(model, tuple(inputs), output_names, call_kwargs)
    export_module(
        wrapper, tuple(inputs.values()), list(inputs), list(output_names), input_axes, output_axes, path,
        exporter=exporter, opset=opset, external_data=external_data,
        dynamic_shapes=(dynamic_shapes(tuple(inputs), input_axes),),
    )


def export_module(
    module: torch.nn.Module,
    args: tuple[torch.Tensor, ...],
    input_names: list[str],
    output_names: list[str],
    input_axes: dict[str, dict[int, str]],
    output_axes: dict[str, dict[int, str]],
    path: Path,
    *,
    exporter: str,
    opset: int | None,
    external_data: bool,
    dynamic_shapes: Any = None,
    edit: Callable[["onnx.ModelProto"], object] | None = None,
) -> None:
    """Export ``module(*args)`` to ``path`` (weights inside it, or in ``model.onnx.data``-style side file
    when ``external_data``). ``dynamic_shapes`` is what the dynamo exporter gets (TorchScript uses
    the axes); every dynamic axis is then renamed after ``input_axes``/``output_axes``, and ``edit``
    may change the graph before it is written."""
    kwargs: dict[str, Any] = {
        "input_names": input_names,
        "output_names": output_names,
        "dynamic_axes": {**input_axes, **output_axes},
    }
    if opset is not None:
        kwargs["opset_version"] = opset
    if exporter == "dynamo":
        del kwargs["dynamic_axes"]  # torch cannot convert them through *args; dynamic_shapes says it
        kwargs.update(dynamo=True, external_data=external_data, verbose=False, dynamic_shapes=dynamic_shapes)
    else:
        kwargs.update(dynamo=False, do_constant_folding=True)
    # torch writes side files of its own choosing (one per tensor for large TorchScript exports, a
    # .data file for dynamo); export into a scratch folder and write the final layout once.
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".export-") as scratch:
        raw = Path(scratch) / path.name
        with torch.no_grad(), traceable_experts(module), real_valued_rotary(module), warnings.catch_warnings(), \
                contextlib.redirect_stdout(io.StringIO()), _quiet_torch_onnx():
            warnings.simplefilter("ignore")  # TorchScript's DeprecationWarning and tracer warnings are not the user's concern
            torch.onnx.export(module, args, str(raw), **kwargs)
        graph = onnx.load(str(raw), load_external_data=True)
        name_axes(graph, {**input_axes, **output_axes})
        if edit is not None:
            edit(graph)
        share_tied_weights(graph)  # the LM head reads the embedding table instead of a transposed copy
        write_graph(graph, path, external=external_data)


@contextlib.contextmanager
def _quiet_torch_onnx() -> Any:
    """torch.onnx logs a warning per missing torchvision op at every dynamo export; silence it for the call."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def dynamic_shapes(input_names: tuple[str, ...], input_axes: dict[str, dict[int, str]]) -> tuple[dict[int, Any], ...]:
    """torch.export dynamic shapes for the wrapper's ``*args``: one shared ``Dim`` per axis name."""
    dims: dict[str, Any] = {}
    spec = []
    for name in input_names:
        # image sizes: torch works out what the model needs (patch multiples...) itself
        spec.append({i: torch.export.Dim.AUTO if axis in ("height", "width") else dims.setdefault(axis, torch.export.Dim(axis))
                     for i, axis in input_axes.get(name, {}).items()})
    return tuple(spec)


def graph_spec(file: str, graph: "onnx.ModelProto") -> GraphSpec:
    """Inputs/outputs of an ONNX graph as recorded in ``optibridge.json``. An input with an initializer
    of its name has a default (``logits_to_keep``): it is recorded as optional, not among the inputs a
    caller must feed (ONNX Runtime does not list it among a session's inputs either)."""
    defaults = {tensor.name for tensor in graph.graph.initializer}
    inputs = tuple(_tensor_spec(v) for v in graph.graph.input if v.name not in defaults)
    optional = tuple(_tensor_spec(v) for v in graph.graph.input if v.name in defaults)
    return GraphSpec(file, inputs, tuple(_tensor_spec(v) for v in graph.graph.output), optional_inputs=optional)


def _tensor_spec(value: Any) -> TensorSpec:
    from onnx import helper

    tensor_type = value.type.tensor_type
    dtype = np.dtype(helper.tensor_dtype_to_np_dtype(tensor_type.elem_type)).name
    shape = tuple(d.dim_param if d.dim_param else d.dim_value for d in tensor_type.shape.dim)
    return TensorSpec(value.name, dtype, shape)


def name_axes(graph: "onnx.ModelProto", axes: dict[str, dict[int, str]]) -> None:
    """Dynamo names axes after its symbols (``s0``, ``Gemmlogits_dim_0``); give every dynamic axis
    the name ``optibridge.json`` and users see: the input axis it follows."""
    for value in list(graph.graph.input) + list(graph.graph.output):
        dims = value.type.tensor_type.shape.dim
        for index, name in axes.get(value.name, {}).items():
            if index < len(dims):
                dims[index].dim_param = name
