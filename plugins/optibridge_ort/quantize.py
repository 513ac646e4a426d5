"""int8 (dynamic, static QDQ) and int4 weight-only quantization with ``onnxruntime.quantization``.

Settings that kept all-MiniLM-L6-v2 at mean cosine >= 0.99 to float32 (mean-pooled embeddings),
where ORT's defaults reach 0.95 (dynamic) and 0.57 (static):

* per-channel weight scales (0.95 → 0.99 on their own);
* only MatMuls with a constant weight are quantized (``MatMulConstBOnly``): the two attention
  MatMuls multiply activations by activations and stay in float;
* SmoothQuant (``smoothing.py``) before quantizing: dynamic +0.004 cosine at alpha 0.7 (the
  attention output's division folded into the value projection, the others a ``Mul``);
* dynamic only: the few outlier channels of FFN down-projection inputs go to a float side path
  instead (``outliers.py``; exact in float): MiniLM mean / min cosine 0.99543 / 0.9831 → 0.99809 /
  0.9907 at the same speed, and weight zero points are written as scalars (``zero_points.py``).
  Left unset it follows SmoothQuant; either runs without the other (``--no-smooth
  --split-outliers``, ``--no-split-outliers``; docs/precision.md);
* static only: the FFN down-projections stay in float. Their input is the GELU output, whose
  largest values are 7-10x its 99.9th percentile; one calibrated range per tensor cannot hold
  both (0.93 → 0.99 once they are excluded; clipping with percentile calibration made it worse).

The token embedding (a large table only a ``Gather`` reads) is stored as float16 in int8 and int4
artifacts: all-MiniLM-L6-v2's int8 graph 58.9 → 35.5 MB, its 60-sentence accuracy unchanged (mean /
min cosine 0.99530 / 0.9811 → 0.99543 / 0.9831), the extra ``Cast`` within timing noise (0.3 %).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import onnx
from onnxruntime.quantization import CalibrationDataReader

from optibridge.artifact import Artifact, side_file_follows_umask
from optibridge.errors import BackendError, first_line
from optibridge.steps import CalibrationData, QuantizationConfig
from optibridge.tied_weights import materialize_tied_weights

from . import graphs
from .outliers import split_outlier_channels
from .presets import Int8Preset, get_preset
from .smoothing import smooth
from .zero_points import scalar_zero_points

QUANTIZED_OP_TYPES = (
    "MatMulInteger", "DynamicQuantizeLinear", "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "QAttention",
    "QuantizeLinear", "DequantizeLinear", "QLinearMatMul", "MatMulNBits", "QGemm", "GatherBlockQuantized",
)
GELU_TYPES = {"Gelu", "FastGelu", "BiasGelu", "QuickGelu"}
# Ops inside a decomposed activation (erf-GELU, tanh-GELU, SiLU = x * sigmoid(x)).
ACTIVATION_PARTS = {"Erf", "Tanh", "Sigmoid"}


@dataclass(frozen=True)
class ModeDefaults:
    """What a mode does when the config leaves a choice open (``None``)."""

    op_types: tuple[str, ...]
    smooth_alpha: float
    exclude_ffn_down: bool
    split_outliers: bool = False
    """Move a few outlier channels of FFN down-projection inputs to a float side path (``outliers.py``)."""


MODE_DEFAULTS = {
    # alpha measured on MiniLM, batch 8, 29 held-out sentences: 0.5 → 0.988, 0.7 → 0.993, 0.85 → 0.988.
    "dynamic": ModeDefaults(("MatMul", "Attention"), smooth_alpha=0.7, exclude_ffn_down=False, split_outliers=True),
    # alpha 0.5 → 0.997, 0.7 → 0.997 with the FFN down-projections in float; without them 0.93.
    "static": ModeDefaults(("MatMul",), smooth_alpha=0.5, exclude_ffn_down=True),
}


def ffn_down_projections(model: onnx.ModelProto) -> list[str]:
    """MatMuls whose input comes straight from a GELU/SiLU activation (the FFN down-projections)."""
    produced_by = graphs.producers(model)

    def activation_output(name: str, depth: int = 3) -> bool:
        node = produced_by.get(name)
        if node is None or depth == 0:
            return False
        if node.op_type in GELU_TYPES or node.op_type in ACTIVATION_PARTS:
            return True
        return node.op_type in ("Mul", "Div", "Add") and any(activation_output(i, depth - 1) for i in node.input)

    weights = graphs.initializer_names(model)
    return [n.name for n in model.graph.node
            if n.op_type == "MatMul" and len(n.input) > 1 and n.input[1] in weights and activation_output(n.input[0])]


def _quant_type(name: str) -> Any:
    from onnxruntime.quantization import QuantType

    return {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}[name]


def _calibration_method(name: str) -> Any:
    from onnxruntime.quantization import CalibrationMethod

    return {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
            "percentile": CalibrationMethod.Percentile}[name]


class _Reader(CalibrationDataReader):
    """Prepared feeds, restricted to the graph's inputs, for ORT's calibrators."""

    def __init__(self, feeds: list[Mapping[str, np.ndarray]], inputs: set[str]) -> None:
        self._feeds = iter([{k: v for k, v in f.items() if k in inputs} for f in feeds])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)


def _excluded(model: onnx.ModelProto, config: QuantizationConfig, defaults: ModeDefaults) -> tuple[list[str], list[str]]:
    """Node names to keep in float, and notes saying why."""
    notes = []
    names = graphs.matching_nodes(model, config.exclude_nodes)
    if config.exclude_nodes and not names:
        raise BackendError(
            f"--exclude-nodes {', '.join(config.exclude_nodes)} matches no node of the graph; node names look like "
            f"{', '.join(n.name for n in model.graph.node[:3])}"
        )
    if names:
        notes.append(f"{len(names)} node(s) kept in float by --exclude-nodes")
    excluded_types = set(config.exclude_ops)
    if excluded_types:
        typed = [n.name for n in model.graph.node if n.op_type in excluded_types]
        names += typed
        notes.append(f"{len(typed)} node(s) of type {', '.join(sorted(excluded_types))} kept in float by --exclude-ops")
    keep_ffn = defaults.exclude_ffn_down if config.exclude_ffn_down is None else config.exclude_ffn_down
    if config.min_cosine is not None:
        notes.append("--min-cosine guides OpenVINO's static int8 only; ONNX Runtime keeps or quantizes the FFN down-projections by rule")
    if keep_ffn:
        ffn = ffn_down_projections(model)
        names += ffn
        if ffn:
            notes.append(f"{len(ffn)} FFN down-projection MatMul(s) kept in float (their GELU/SiLU inputs have outlier ranges)")
    return sorted(set(names)), notes


def _int8(model: onnx.ModelProto, out: Path, config: QuantizationConfig, preset: Int8Preset,
          feeds: list[Mapping[str, np.ndarray]], external: bool) -> tuple[dict[str, Any], list[str]]:
    from onnxruntime.quantization import QuantFormat, quantize_dynamic, quantize_static

    defaults = MODE_DEFAULTS[config.mode]
    exclude, notes = _quantizable_products(model, config, defaults)
    op_types = [op for op in (config.op_types or defaults.op_types) if op not in config.exclude_ops]
    if not op_types:
        raise BackendError(f"nothing left to quantize: --exclude-ops removed every operator type of {', '.join(defaults.op_types)}")
    per_channel = preset.per_channel if config.per_channel is None else config.per_channel
    reduce_range = preset.reduce_range if config.reduce_range is None else config.reduce_range
    alpha = config.smooth_alpha if config.smooth_alpha is not None else defaults.smooth_alpha
    # Left unset, the split follows SmoothQuant: --no-smooth alone is the fast choice (docs/precision.md).
    split = defaults.split_outliers and (bool(config.smooth) if config.split_outliers is None else config.split_outliers)
    if config.split_outliers and not defaults.split_outliers:
        notes.append(f"--split-outliers applies to ONNX Runtime's dynamic int8; {config.mode} keeps the FFN down-projections "
                     "whole (in float by default)")
    # Shapes recorded by the exporter (and dynamo's value_info) confuse the quantizer's type
    # inference on fused graphs; it re-infers what it needs.
    del model.graph.value_info[:]
    plan: dict[str, Any] = {}
    excluded = len(exclude)  # by the config and the mode's rules (the side path below is recorded with the split)
    with graphs.scratch_cwd() as scratch:
        smooth_exclude = list(exclude)
        if feeds and split:
            side, split_downs, plan["outlier_split"] = split_outlier_channels(model, feeds, scratch)
            exclude += side  # the side path stays float
            smooth_exclude += side + split_downs  # their outliers are gone: nothing left to move
            if plan["outlier_split"].get("undone"):
                notes.append(f"outlier channels not split: {plan['outlier_split']['undone']}")
            if side:
                channels = sum(len(found["channels"]) for found in plan["outlier_split"]["split"].values())
                notes.append(f"{len(split_downs)} FFN down-projection input(s) had outlier channels: {channels} moved to a "
                             "float side path (exact in float)")
        smoothed = smooth(model, feeds, alpha, scratch, exclude=smooth_exclude) if config.smooth else 0
        if config.smooth:
            notes.append(f"SmoothQuant (alpha {alpha}) rescaled {smoothed} weight matri{'x' if smoothed == 1 else 'ces'} "
                         "(activations without outlier channels are left as they are)")
        halved = float16_embeddings(model)  # int8 leaves Gathers alone: the token embedding was the largest tensor
        if halved:
            notes.append(f"token embedding{'s' if len(halved) > 1 else ''} {', '.join(halved)} stored as float16, "
                         "the gathered rows cast back to float32")
        source = scratch / "input.onnx"
        graphs.save(model, source, external=external)
        extra = {"DefaultTensorType": onnx.TensorProto.FLOAT, "MatMulConstBOnly": True}
        common = dict(per_channel=per_channel, reduce_range=reduce_range, op_types_to_quantize=op_types,
                      nodes_to_exclude=exclude, use_external_data_format=external)
        if config.mode == "dynamic":
            quantize_dynamic(str(source), str(out), weight_type=_quant_type(preset.weight_type), extra_options=extra, **common)
            quantized = onnx.load(str(out), load_external_data=False)
            if scalar_zero_points(quantized):
                onnx.save(quantized, str(out))
        else:
            calibration = config.with_calibration()
            extra["CalibPercentile"] = calibration.percentile
            inputs = {i.name for i in model.graph.input}
            quantize_static(
                str(source), str(out), _Reader(feeds, inputs), quant_format=QuantFormat.QDQ,
                activation_type=_quant_type(preset.activation_type), weight_type=_quant_type(preset.weight_type),
                calibrate_method=_calibration_method(calibration.method), extra_options=extra, **common,
            )
    settings = {"preset": preset.name, "preset_reason": preset.reason, "per_channel": per_channel,
                "reduce_range": reduce_range, "weight_bits": 7 if reduce_range else 8, "op_types": op_types, "excluded_nodes": excluded,
                "smooth": bool(config.smooth), "smooth_alpha": alpha if config.smooth else None, "float16_embeddings": halved,
                "activation_type": preset.activation_type if config.mode == "static" else "uint8 (dynamic)",
                "weight_type": preset.weight_type, **plan}
    return settings, notes


def _quantizable_products(model: onnx.ModelProto, config: QuantizationConfig, defaults: ModeDefaults) -> tuple[list[str], list[str]]:
    """Give the weight products to quantize the form ORT's quantizers take, in place; returns the nodes
    to keep in float and notes.

    They quantize a ``MatMul`` (not a ``Gemm``) whose weight is an initializer (not a ``Transpose``
    of a tied embedding), and SmoothQuant and the outlier split look for the same form. A tied head
    kept in float goes on reading the table: no second copy of it.
    """
    gemms = gemm_to_matmul(model)  # first: --exclude-nodes patterns match the renamed nodes
    exclude, notes = _excluded(model, config, defaults)
    materialize_tied_weights(model, keep=set(exclude))
    if gemms:
        notes.append(f"{gemms} Gemm node(s) with constant weights rewritten as MatMul (node name + '_as_matmul')")
    return exclude, notes


def gemm_to_matmul(model: onnx.ModelProto) -> int:
    """Rewrite ``Gemm(A, W, b)`` with a constant ``W`` as ``MatMul`` (+ ``Add``), in place.

    GPT-2's Conv1D and some Linear layers export as Gemm, which MatMulNBits does not cover; the
    rewrite is exact (same products, same bias). Gemms with alpha/beta scaling or transposed A
    are left alone.
    """
    from onnx import helper, numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    users: dict[str, int] = {}
    for node in model.graph.node:
        for name in node.input:
            users[name] = users.get(name, 0) + 1
    rewritten, nodes = 0, []
    for node in model.graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        bias = node.input[2] if len(node.input) > 2 and node.input[2] else None
        if (node.op_type != "Gemm" or node.input[1] not in inits or attrs.get("alpha", 1.0) != 1.0
                or attrs.get("transA", 0) or (bias and attrs.get("beta", 1.0) != 1.0)):
            nodes.append(node)
            continue
        weight = node.input[1]
        if attrs.get("transB", 0):
            transposed = numpy_helper.from_array(np.ascontiguousarray(numpy_helper.to_array(inits[weight]).T), weight + "_transposed")
            if users.get(weight, 0) <= 1:
                model.graph.initializer.remove(inits[weight])
            model.graph.initializer.append(transposed)
            weight = transposed.name
        product = node.output[0] + "_matmul" if bias else node.output[0]
        nodes.append(helper.make_node("MatMul", [node.input[0], weight], [product], name=node.name + "_as_matmul"))
        if bias:
            nodes.append(helper.make_node("Add", [product, bias], [node.output[0]], name=node.name + "_bias"))
        rewritten += 1
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return rewritten


def _int4(model: onnx.ModelProto, out: Path, config: QuantizationConfig, external: bool) -> tuple[dict[str, Any], list[str]]:
    from onnxruntime.quantization import matmul_nbits_quantizer as nbits

    exclude, notes = _quantizable_products(model, config, ModeDefaults(("MatMul",), 0.0, exclude_ffn_down=False))
    # The quantizer logs every node it skips at INFO through a handler of its own.
    logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer").setLevel(logging.WARNING)
    if config.int4_algorithm == "hqq":
        algorithm = nbits.HQQWeightOnlyQuantConfig(block_size=config.block_size, bits=4)
    else:
        algorithm = nbits.DefaultWeightOnlyQuantConfig(block_size=config.block_size, is_symmetric=config.weights_symmetric(True), bits=4)
    compute = config.int4_compute or "int8"
    with graphs.scratch_cwd():
        quantizer = nbits.MatMulNBitsQuantizer(model, nodes_to_exclude=exclude, algo_config=algorithm)
        quantizer.process()
        packed = set_accuracy_level(quantizer.model.model, ACCURACY_LEVELS[compute])
        halved = float16_embeddings(quantizer.model.model)
        graphs.save(quantizer.model.model, out, external=external)
    settings = {"bits": 4, "block_size": config.block_size, "algorithm": config.int4_algorithm,
                "symmetric": config.weights_symmetric(True), "excluded_nodes": len(exclude),
                "compute": compute, "accuracy_level": ACCURACY_LEVELS[compute], "packed_matmuls": packed,
                "float16_embeddings": halved}
    return settings, notes


# Embedding tables smaller than this stay float32 (position tables, small vocabularies): too little to gain.
FLOAT16_EMBEDDING_MIN_ELEMENTS = 1 << 20


def float16_embeddings(model: onnx.ModelProto, min_elements: int | None = None) -> list[str]:
    """Store each large float32 table that only a ``Gather`` reads (a token embedding) as float16 and
    cast the gathered rows back to float32, in place; returns the tables' names.

    int4 leaves the token embedding alone (MatMulNBits replaces MatMuls; ONNX Runtime's quantizer
    offers 4 bits only for a Gather), so it was the largest tensor of an int4 decoder: GPT-2-small's
    154 MB of 224 MB. float16 rows change a float32 GPT-2's logits by at most 1e-3 (docs/generation.md).
    Tables read by anything else (a tied LM head, a node inside an If/Loop body) or holding values float16
    cannot represent are kept."""
    from onnx import TensorProto, helper, numpy_helper

    smallest = FLOAT16_EMBEDDING_MIN_ELEMENTS if min_elements is None else min_elements
    graph = model.graph
    readers = graphs.reader_counts(model)  # a graph output counts as a reader
    tables = {t.name: t for t in graph.initializer
              if t.data_type == TensorProto.FLOAT and len(t.dims) == 2 and int(np.prod(t.dims)) >= smallest}
    halved: list[str] = []
    nodes: list[onnx.NodeProto] = []
    for node in graph.node:
        table = node.input[0] if node.op_type == "Gather" and node.input else None
        if table is None or table not in tables or readers[table] != 1:
            nodes.append(node)
            continue
        values = numpy_helper.to_array(tables[table])
        if not np.isfinite(values).all() or float(np.abs(values).max()) >= float(np.finfo(np.float16).max):
            nodes.append(node)
            continue
        tables[table].CopyFrom(numpy_helper.from_array(values.astype(np.float16), table))
        rows = node.output[0] + "_float16"
        cast = helper.make_node("Cast", [rows], [node.output[0]], name=(node.name or table) + "_to_float32", to=TensorProto.FLOAT)
        node.output[0] = rows
        nodes += [node, cast]
        halved.append(table)
    if halved:
        del graph.node[:]
        graph.node.extend(nodes)
    return halved


# MatMulNBits' accuracy_level: the least precise arithmetic its CPU kernel may use. 4 lets MLAS quantize
# each block of activations to int8 and multiply in integers (AVX2, AVX-512 VNNI, AMX, NEON dot kernels);
# 0 leaves it unset: weights dequantized, float products. Random GPT-2-small, 64 tokens through
# onnxruntime-genai on an AVX2-only EPYC: 6.4-7.1x PyTorch at level 4, 2.9-3.1x at 0, the same
# logits error against PyTorch (docs/generation.md).
ACCURACY_LEVELS = {"int8": 4, "f32": 0}


def set_accuracy_level(model: onnx.ModelProto, level: int) -> int:
    """Set ``accuracy_level`` on every MatMulNBits node, in place; returns how many there are."""
    from onnx import helper

    count = 0
    for node in model.graph.node:
        if node.op_type != "MatMulNBits":
            continue
        kept = [a for a in node.attribute if a.name != "accuracy_level"]
        del node.attribute[:]
        node.attribute.extend([*kept, helper.make_attribute("accuracy_level", level)])
        count += 1
    return count


def quantize_artifact(artifact: Artifact, config: QuantizationConfig, output_dir: Path,
                      calibration: CalibrationData | None = None) -> dict[str, Any]:
    """Quantize every graph of ``artifact`` into ``output_dir`` (the backend's ``quantize``)."""
    if config.mode not in ("dynamic", "static", "int4"):  # the verb checks the declared modes first; a direct call lands here
        raise BackendError(f"the ort backend quantizes graphs in modes dynamic, static, int4, not {config.mode!r}")
    preset = get_preset(config.preset) if config.mode != "int4" else None
    pipeline = "diffusion" in artifact.metadata.extra  # static: the graphs with recorded samples, the VAE stays float
    if config.mode == "static" and len(artifact.metadata.graphs) > 1 and not pipeline:
        raise BackendError("static quantization of multi-graph artifacts (encoder/decoder) is not supported yet; use --mode dynamic")
    report: dict[str, Any] = {"graphs": {}, "notes": config.ignored_symmetric(("int4",))}
    settings: dict[str, Any] = {}
    for name, spec in artifact.metadata.graphs.items():
        source = graphs.load(artifact.path / spec.file)
        external = graphs.has_external_data(artifact, name)
        feeds = calibration.feeds(name) if calibration is not None else []
        if config.mode == "static" and not feeds and pipeline:
            graphs.save(source, output_dir / spec.file, external=external)
            report["graphs"][name] = {"quantized": {}, "notes": ["kept in float: no calibration samples for this graph"]}
            continue
        if config.mode == "static" and not feeds:
            raise BackendError(f"static quantization needs calibration samples for graph {name!r}")
        graph_config = config if feeds or config.mode == "int4" else dataclasses.replace(config, smooth=False)
        before = onnx.ModelProto()
        before.CopyFrom(source)
        out = output_dir / spec.file
        try:
            if config.mode == "int4":
                settings, notes = _int4(source, out, graph_config, external)
            else:
                assert preset is not None
                settings, notes = _int8(source, out, graph_config, preset, feeds, external)
        except (BackendError, KeyboardInterrupt):
            raise
        except Exception as exc:  # ORT's quantizer raises plain exceptions on graphs it cannot handle
            raise BackendError(f"ONNX Runtime could not quantize graph {name!r} ({config.mode}): {first_line(exc)}") from exc
        side_file_follows_umask(out)  # ORT's quantizer writes external data through onnx, owner-only
        after = onnx.load(str(out), load_external_data=False)
        quantized = graphs.count_delta(before, after, QUANTIZED_OP_TYPES)
        if not quantized:
            raise BackendError(
                f"{config.mode} quantization changed nothing in graph {name!r}: it has no "
                f"{'MatMul with constant weights' if config.mode == 'int4' else 'quantizable operator'} left after the exclusions"
            )
        report["graphs"][name] = {"quantized": quantized, "notes": notes}
    report["settings"] = settings
    return report
