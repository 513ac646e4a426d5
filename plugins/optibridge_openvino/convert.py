"""``optimize`` for OpenVINO: every graph converted to OpenVINO IR (``.xml`` + ``.bin``).

OpenVINO has no offline fusion levels: its CPU/GPU plugins fuse attention, MVN (LayerNorm), GELU
and the rest when they compile the model. What optimize can do ahead of time is the conversion
itself (a load reads the IR instead of converting the ONNX graph each time), float16 weights
(level 4 only, as ORT's O4; the default keeps float32 parity), and a stateful decoder (the KV
cache kept inside the compiled model, see :mod:`.stateful`).

The IR replaces the ONNX file in the output artifact (one file per graph, ``GraphSpec.format`` =
"openvino-ir"): the artifact is for the openvino backend, as an O4 graph is for a GPU.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from optibridge.artifact import Artifact, GraphSpec
from optibridge.errors import BackendError, first_line
from optibridge.probing import distribution_version

from .stateful import cache_pairs, is_stateful, make_stateful

IR_FORMAT = "openvino-ir"


def read_graph(artifact: Artifact, name: str) -> Any:
    """The graph as an ``ov.Model``: converted from ONNX, or read from the artifact's IR."""
    import openvino as ov

    spec = artifact.metadata.graphs[name]
    path = artifact.graph_to_read(name, formats=("onnx", IR_FORMAT))
    try:
        return ov.Core().read_model(str(path)) if spec.format == IR_FORMAT else ov.convert_model(str(path))
    except Exception as exc:  # OpenVINO raises RuntimeError/OpConversionFailure on graphs it cannot read
        raise BackendError(f"OpenVINO could not convert graph {name!r} ({path.name}): {first_line(exc)}") from exc


def save_graph(model: Any, output_dir: Path, spec: GraphSpec, *, compress_to_fp16: bool = False) -> GraphSpec:
    """Write ``model`` as ``<stem>.xml``/``.bin``; returns the graph's new spec (same interface)."""
    import openvino as ov

    file = str(Path(spec.file).with_suffix(".xml"))
    ov.save_model(model, str(output_dir / file), compress_to_fp16=compress_to_fp16)
    # OpenVINO's ONNX reader turns an input with a default (logits_to_keep) into a constant: the IR has no such input.
    kept = tuple(t for t in spec.optional_inputs if any(t.name in port.get_names() for port in model.inputs))
    return dataclasses.replace(spec, file=file, format=IR_FORMAT, optional_inputs=kept)


def finish_graph(artifact: Artifact, name: str, model: Any, notes: list[str]) -> bool:
    """Make a decoder LM stateful (the last rewrite: quantizers need the stateless graph); True if it is."""
    spec = artifact.metadata.graphs[name]
    pairs = cache_pairs(artifact, spec)
    if not pairs:
        return False
    if not is_stateful(model):
        make_stateful(model, pairs)
        notes.append(f"stateful: the KV cache ({len(pairs)} tensors) is kept inside the compiled model; a beam_idx input reorders it")
    return True


def openvino_extra(artifact: Artifact, stateful: list[str], weights: str, precision: str | None = None) -> dict[str, Any]:
    """What the metadata records about the IR (``extra["openvino"]``): the loader reads ``stateful_graphs``
    and ``inference_precision`` (the precision it compiles the graphs in unless told otherwise)."""
    extra: dict[str, Any] = {"stateful": bool(stateful), "stateful_graphs": stateful, "weights": weights,
                             "version": distribution_version("openvino")}
    if precision and precision != "f32":
        extra["inference_precision"] = precision
    return {"openvino": extra}


def step_precision(config: Any, notes: list[str]) -> str | None:
    """The step's ``inference_precision`` after checking this CPU computes it natively (or None)."""
    from optibridge.errors import OptibridgeError
    from optibridge.hardware import check_precision

    precision = getattr(config, "inference_precision", None)
    if precision in (None, "f32"):
        return None
    try:
        check_precision(precision)
    except OptibridgeError as exc:
        raise BackendError(str(exc)) from None
    notes.append(f"inference precision {precision}: recorded in the artifact, which OpenVINO compiles in {precision} "
                 "(what stays in float); load with inference_precision='f32' to override")
    return precision


def optimize_artifact(artifact: Artifact, config: Any, output_dir: Path) -> dict[str, Any]:
    compress = config.level >= 4
    report: dict[str, Any] = {"graphs": {}, "specs": {}, "notes": [
        "OpenVINO fuses attention, LayerNorm (MVN) and GELU when it compiles the IR for a device: "
        "levels 1-3 write the same float32 IR, level 4 stores its weights as float16",
    ]}
    precision = step_precision(config, report["notes"])
    stateful = write_ir(artifact, output_dir, report, compress_to_fp16=compress)
    weights = "float16" if compress else "float32"
    report["metadata_extra"] = openvino_extra(artifact, stateful, weights, precision)
    report["settings"] = {"level": config.level, "format": IR_FORMAT, "compress_to_fp16": compress, "inference_precision": precision or "f32",
                          "stateful": bool(stateful), "openvino": distribution_version("openvino")}
    return report


def write_ir(artifact: Artifact, output_dir: Path, report: dict[str, Any], *, compress_to_fp16: bool) -> list[str]:
    """Every graph written as IR as it is (decoders made stateful), specs and notes into ``report``;
    returns the stateful graphs' names."""
    stateful = []
    for name, spec in artifact.metadata.graphs.items():
        notes: list[str] = []
        model = read_graph(artifact, name)
        if finish_graph(artifact, name, model, notes):
            stateful.append(name)
        report["specs"][name] = save_graph(model, output_dir, spec, compress_to_fp16=compress_to_fp16)
        if compress_to_fp16:
            notes.append("weights stored as float16 (compress_to_fp16); they run in the device's inference precision (float32 unless inference_precision says otherwise)")
        report["graphs"][name] = {"fused": {}, "format": IR_FORMAT, "notes": notes}
    return stateful
