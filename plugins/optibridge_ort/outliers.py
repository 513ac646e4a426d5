"""Outlier channels of FFN down-projection inputs moved to a float side path before dynamic int8.

ONNX Runtime's dynamic int8 gives a MatMul's input one range per call. A few GELU channels of the
early FFNs of BERT-like encoders are 4-6x the rest (``optibridge/outlier_channels.py``), so that
range leaves the other 1500 channels a fifth of the levels they need. SmoothQuant divided the whole
activation by per-channel scales: one ``Mul`` over [tokens, 1536] per layer, and the excess went
into the weight rows. Here the outlier channels are removed exactly instead: zeroed in the
up-projection (GELU(0) = 0, so the down-projection's input range is the rest's) and recomputed in
float by a side path ``GELU(x @ W_up[:, k] + b_k) @ W_down[k, :]`` added to the down-projection's
output. Four small nodes per split FFN, the same cost as the ``Mul`` they replace.

all-MiniLM-L6-v2 (60 sentences in one padded batch, mean / min cosine to PyTorch): SmoothQuant on
every input 0.99543 / 0.9831; with layers 0-3 split and their down-projections no longer smoothed,
0.99809 / 0.9907, at the same speed.

Only FFNs built of ``MatMul`` (float32 constant weight), an optional bias ``Add``, the ONNX ``Gelu``
operator (what torch's exporter writes for ``nn.GELU``) and ``MatMul`` are rewritten; gated (SiLU)
FFNs and GELUs written out as ``Erf``/``Tanh`` arithmetic are left to SmoothQuant.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import onnx
from onnx import helper, numpy_helper

from optibridge.graph_readers import reader_counts
from optibridge.outlier_channels import SIDE_PATH_PREFIX, outlier_channels, rest_range

from . import graphs
from .smoothing import activation_maxima, same_function

SPLIT_RATIO = 3.0
"""A GELU channel is an outlier above this many times the rest's 99th-percentile channel. all-MiniLM-L6-v2's
layer 3 has one at 3.9x; splitting it too took the worst sentence from 0.9879 to 0.9905 (OpenVINO's
static plan uses 4.0: it puts a down-projection back in float when the samples need it)."""


@dataclass(frozen=True)
class UpBias:
    add: onnx.NodeProto  # the up-projection's bias Add
    input: str  # that Add's bias input
    initializer: str  # the initializer behind it (possibly shared with other layers through an Identity)


@dataclass(frozen=True)
class PlainFFN:
    up: onnx.NodeProto
    bias: UpBias | None  # None when the up-projection has no bias
    activation: onnx.NodeProto
    down: onnx.NodeProto
    joins: onnx.NodeProto  # the side path's output is added to this node's: the down-projection's bias Add, or itself


def _float_weight(inits: Mapping[str, onnx.TensorProto], name: str, rank: int) -> bool:
    tensor = inits.get(name)
    return tensor is not None and tensor.data_type == onnx.TensorProto.FLOAT and len(tensor.dims) == rank


def _bias_add(node: onnx.NodeProto | None, inits: Mapping[str, onnx.TensorProto],
              aliases: Mapping[str, str]) -> tuple[str, str, str] | None:
    """(bias input, its initializer, computed input) of an ``Add`` of one 1-D float constant and one
    computed tensor. Exporters write a constant shared by several layers (all-zero biases) once and
    give the others an ``Identity`` of it: ``aliases`` maps those outputs to the initializer."""
    operands = graphs.constant_operand(node, lambda name: aliases.get(name, name) in inits)
    if operands is None or not _float_weight(inits, aliases.get(operands[0], operands[0]), 1):
        return None
    return operands[0], aliases.get(operands[0], operands[0]), operands[1]


def plain_ffns(model: onnx.ModelProto) -> list[PlainFFN]:
    """The FFNs this rewrite understands, in graph order (each tensor on the way read by one node)."""
    inits = {t.name: t for t in model.graph.initializer}
    aliases = {n.output[0]: n.input[0] for n in model.graph.node if n.op_type == "Identity" and n.input[0] in inits}
    producer = graphs.producers(model)
    readers = reader_counts(model)
    outputs = {o.name for o in model.graph.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def private(name: str) -> bool:
        return readers.get(name, 0) == 1

    found = []
    for down in model.graph.node:
        if down.op_type != "MatMul" or not _float_weight(inits, down.input[1], 2):
            continue
        activation = producer.get(down.input[0])
        if activation is None or activation.op_type != "Gelu" or activation.domain not in ("", "ai.onnx"):
            continue
        pre = producer.get(activation.input[0])
        if not private(activation.output[0]) or pre is None or not private(pre.output[0]):
            continue
        bias, up = None, pre
        added = _bias_add(pre, inits, aliases)
        if added is not None:
            bias_input, initializer, computed = added
            bias, up = UpBias(pre, bias_input, initializer), producer.get(computed)
            if up is None or not private(computed):
                continue
        if up.op_type != "MatMul" or not _float_weight(inits, up.input[1], 2) or not private(up.input[1]):
            continue
        joins = down
        after = consumers.get(down.output[0], [])
        if private(down.output[0]) and len(after) == 1 and _bias_add(after[0], inits, aliases) is not None:
            joins = after[0]
        if not private(joins.output[0]) or joins.output[0] in outputs:  # several readers, or the caller's: leave it
            continue
        found.append(PlainFFN(up, bias, activation, down, joins))
    return found


def _split(model: onnx.ModelProto, ffn: PlainFFN, channels: np.ndarray, tag: str) -> list[onnx.NodeProto]:
    """Zero ``channels`` of the FFN's up-projection and return the side path's nodes (to insert after ``ffn.joins``)."""
    inits = {t.name: t for t in model.graph.initializer}
    w_up = numpy_helper.to_array(inits[ffn.up.input[1]]).copy()
    w_down = numpy_helper.to_array(inits[ffn.down.input[1]])
    prefix = f"{SIDE_PATH_PREFIX}{tag}/"
    names = {key: prefix + key for key in ("w_up", "b_up", "w_down", "up", "pre", "gelu", "down", "sum")}
    model.graph.initializer.extend([
        numpy_helper.from_array(np.ascontiguousarray(w_up[:, channels]), names["w_up"]),
        numpy_helper.from_array(np.ascontiguousarray(w_down[channels, :]), names["w_down"]),
    ])
    side_input = names["up"]
    nodes = [helper.make_node("MatMul", [ffn.up.input[0], names["w_up"]], [names["up"]], name=names["up"])]
    if ffn.bias is not None:
        b_up = numpy_helper.to_array(inits[ffn.bias.initializer]).copy()
        model.graph.initializer.append(numpy_helper.from_array(b_up[channels].copy(), names["b_up"]))
        nodes.append(helper.make_node("Add", [names["up"], names["b_up"]], [names["pre"]], name=names["pre"]))
        side_input = names["pre"]
        b_up[channels] = 0.0
        main_bias = prefix + "b_up_main"  # a copy: the bias may be shared with other layers
        model.graph.initializer.append(numpy_helper.from_array(b_up, main_bias))
        ffn.bias.add.input[list(ffn.bias.add.input).index(ffn.bias.input)] = main_bias
    gelu = helper.make_node("Gelu", [side_input], [names["gelu"]], name=names["gelu"])
    gelu.attribute.extend(ffn.activation.attribute)  # the same approximation
    nodes += [gelu, helper.make_node("MatMul", [names["gelu"], names["w_down"]], [names["down"]], name=names["down"])]
    w_up[:, channels] = 0.0  # the main path's outlier channels become GELU(0) = 0
    inits[ffn.up.input[1]].CopyFrom(numpy_helper.from_array(w_up, ffn.up.input[1]))

    joined = ffn.joins.output[0]
    for node in model.graph.node:
        for i, name in enumerate(node.input):
            if name == joined:
                node.input[i] = names["sum"]
    nodes.append(helper.make_node("Add", [joined, names["down"]], [names["sum"]], name=names["sum"]))
    return nodes


def split_outlier_channels(model: onnx.ModelProto, feeds: Sequence[Mapping[str, np.ndarray]], scratch: Path,
                           ratio: float = SPLIT_RATIO) -> tuple[list[str], list[str], dict[str, Any]]:
    """Rewrite ``model`` in place: the side-path MatMuls (to keep in float), the down-projections
    split (to keep out of SmoothQuant), and a record. Checked in float on the first feed: a rewrite
    that changes the function is undone (none is expected; the check guards the pattern match)."""
    ffns = plain_ffns(model)
    record: dict[str, Any] = {"ratio": ratio, "ffns": len(ffns), "split": {}}
    if not ffns or not feeds:
        return [], [], record
    reference: dict[str, np.ndarray] = {}
    ranges = activation_maxima(model, [f.activation.output[0] for f in ffns], feeds, scratch, reference)
    before: onnx.ModelProto | None = None  # copied once something is to be rewritten (models can be large)
    inserted: list[tuple[onnx.NodeProto, list[onnx.NodeProto]]] = []
    side, downs = [], []
    for ffn in ffns:
        channel_ranges = ranges[ffn.activation.output[0]]
        channels = outlier_channels(channel_ranges, ratio)
        if not len(channels):
            continue
        if before is None:
            before = onnx.ModelProto()
            before.CopyFrom(model)
        tag = str(len(record["split"]))
        nodes = _split(model, ffn, channels, tag)
        inserted.append((ffn.joins, nodes))
        side += [nodes[0].name, nodes[-2].name]
        downs.append(ffn.down.name)
        record["split"][ffn.down.name] = {"channels": [int(c) for c in channels],
                                          "range": round(float(channel_ranges[channels].max()), 3),
                                          "rest_p99": round(rest_range(channel_ranges) or 0.0, 3)}
    if before is None:
        return [], [], record
    ordered = list(model.graph.node)
    for joins, nodes in inserted:
        at = next(i for i, node in enumerate(ordered) if node.output[0] == joins.output[0]) + 1
        ordered[at:at] = nodes
    del model.graph.node[:]
    model.graph.node.extend(ordered)
    if not same_function(model, feeds[0], reference, scratch):
        model.CopyFrom(before)
        return [], [], {**record, "split": {}, "undone": "the rewritten graph did not compute the original outputs"}
    return side, downs, record
