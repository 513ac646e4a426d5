"""The ``torch.onnx.export`` call, for both of torch's exporters, and post-export graph fix-ups."""

from __future__ import annotations

import contextlib
import io
import tempfile
import warnings
from pathlib import Path
from typing import Any

import onnx
import torch

from ..artifact import EXTERNAL_DATA_FILE
from ..errors import OptibridgeError

EXPORTERS = ("auto", "torchscript", "dynamo")
# ONNX protobufs are capped at 2 GiB; keep a margin for the graph itself.
EXTERNAL_DATA_THRESHOLD = 2_000_000_000


class OutputSelector(torch.nn.Module):
    """Calls the model with named inputs and returns the chosen outputs as a tuple (what ONNX needs)."""

    def __init__(self, model: torch.nn.Module, input_names: tuple[str, ...], output_names: tuple[str, ...]) -> None:
        super().__init__()
        self.model = model
        self.input_names = input_names
        self.output_names = output_names
        # The TorchScript exporter restores training mode recursively afterwards; the wrapper must
        # itself be in eval mode or dropout comes back on.
        self.eval()

    def forward(self, *args: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outputs = self.model(**dict(zip(self.input_names, args)), return_dict=True)
        return tuple(outputs[name] for name in self.output_names)


def resolve_exporter(exporter: str) -> str:
    """``auto`` → TorchScript while torch still ships it (20-40× faster to export encoders, and
    the graph shape ONNX Runtime's transformer fusions recognise), else dynamo."""
    if exporter not in EXPORTERS:
        raise OptibridgeError(f"unknown exporter {exporter!r}; choose one of {', '.join(EXPORTERS)}")
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
) -> None:
    """Export to ``path`` (weights inside it, or in ``model.onnx.data`` when ``external_data``)."""
    input_names = tuple(inputs)
    wrapper = OutputSelector(model, input_names, output_names)
    args = tuple(inputs.values())
    kwargs: dict[str, Any] = {
        "input_names": list(input_names),
        "output_names": list(output_names),
        "dynamic_axes": {**input_axes, **output_axes},
    }
    if opset is not None:
        kwargs["opset_version"] = opset
    if exporter == "dynamo":
        del kwargs["dynamic_axes"]  # torch cannot convert them through the wrapper's *args
        kwargs.update(dynamo=True, external_data=external_data, verbose=False,
                      dynamic_shapes=(dynamic_shapes(input_names, input_axes),))
    else:
        kwargs.update(dynamo=False, do_constant_folding=True)
    # torch writes side files of its own choosing (one per tensor for large TorchScript exports, a
    # .data file for dynamo); export into a scratch folder and write the final layout once.
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".export-") as scratch:
        raw = Path(scratch) / path.name
        with torch.no_grad(), warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")  # TorchScript's DeprecationWarning and tracer warnings are not the user's concern
            torch.onnx.export(wrapper, args, str(raw), **kwargs)
        graph = onnx.load(str(raw), load_external_data=True)
        name_axes(graph, {**input_axes, **output_axes})
        if external_data:
            onnx.save_model(graph, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                            location=EXTERNAL_DATA_FILE, size_threshold=1024)
        else:
            onnx.save_model(graph, str(path))


def dynamic_shapes(input_names: tuple[str, ...], input_axes: dict[str, dict[int, str]]) -> tuple[dict[int, Any], ...]:
    """torch.export dynamic shapes for the wrapper's ``*args``: one shared ``Dim`` per axis name."""
    dims: dict[str, Any] = {}
    spec = []
    for name in input_names:
        spec.append({i: dims.setdefault(axis, torch.export.Dim(axis)) for i, axis in input_axes.get(name, {}).items()})
    return tuple(spec)


def name_axes(graph: "onnx.ModelProto", axes: dict[str, dict[int, str]]) -> None:
    """Dynamo names axes after its symbols (``s0``, ``Gemmlogits_dim_0``); give every dynamic axis
    the name ``optibridge.json`` and users see: the input axis it follows."""
    for value in list(graph.graph.input) + list(graph.graph.output):
        dims = value.type.tensor_type.shape.dim
        for index, name in axes.get(value.name, {}).items():
            if index < len(dims):
                dims[index].dim_param = name
