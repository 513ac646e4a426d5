"""SmoothQuant on an ONNX graph: move activation outliers into the weights before int8 quantization.

int8 activations share one scale per tensor, so a few channels with very large values (they
exist in every BERT-style model) leave too few levels for all the others. For a MatMul ``X @ W``
with constant ``W``, ``X @ W == (X / s) @ (diag(s) W)`` for any per-channel ``s > 0``; with
``s_j = max|X_j|^alpha / max|W_j|^(1-alpha)`` both factors have flatter ranges (Xiao et al.,
SmoothQuant, 2022). ``max|X_j|`` comes from a few calibration samples.

Here the division is a ``Mul`` node inserted after the activation, shared by every smoothed
consumer of it (query/key/value read one activation: one ``Mul``); other readers of the
activation (the residual ``Add``) keep the original. Where the activation is an attention's
output -- ``softmax(QK) @ V`` with only head reshapes and transposes around it -- the division
is folded into the value projection's weight columns and bias instead: channel ``c`` of the
attention output is a mix of channel ``c`` of V alone, so scaling V's channel scales it, and the
``Mul`` (an extra pass over the activation per layer, ~1.5 % of all-MiniLM-L6-v2's int8 latency
at batch 1) disappears. Each fold is checked: the smoothed float graph must compute what the
original computed on a calibration sample, or the folds are undone and ``Mul`` nodes inserted.
The same holds for a normalization whose output only the smoothed linears read -- a pre-LN block
(GPT-2, Llama, ViT): the division folds into its per-channel scale and bias. A post-LN block (BERT)
also adds that output to the residual, so it keeps its ``Mul``. On a random GPT-2-small with planted
outlier channels in its norm scales, 24 of 27 ``Mul`` nodes go; int8 dynamic ran 1–2 % faster at 1
and 128 tokens (within this host's run-to-run spread; exact in float either way). And in a gated FFN
(``down(act(gate) * up)``: Llama, Qwen, Gemma) the down-projection's division folds into the up
projection's columns: channel c of the product scales with channel c of ``up``.

An activation without outlier channels (its largest channel under :data:`OUTLIER_RATIO` times the
median channel) is left as it is: there is nothing to move, and its ``Mul`` would cost a pass over
the activation for no accuracy. all-MiniLM-L6-v2 has 6 such activations of 24 (ratios 2.2–3.2; the
others 4.0–18.9), a random-weight BERT-base all 48 (1.6–3.6); measured one sentence at a time, MiniLM
kept its accuracy (60 sentences, mean / min cosine 0.99749 / 0.9879 → 0.99750 / 0.9885).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
import onnx
from onnx import numpy_helper

from . import graphs

SMOOTHABLE = {"MatMul": 1, "Attention": 1}
"""Operator type → index of its constant weight input (ORT's fused Attention takes [hidden, 3*hidden])."""
HEAD_LAYOUT_OPS = {"Reshape", "Transpose"}
"""What splits a projection into heads and merges them back (the fold looks through these only)."""
SHAPE_READERS = {"Shape", "Size"}
NORMALIZATION_AFFINE = {"LayerNormalization": (1, 2), "RMSNormalization": (1,), "SimplifiedLayerNormalization": (1,),
                        "SkipLayerNormalization": (2, 3), "SkipSimplifiedLayerNormalization": (2,)}
"""Normalization op → the inputs holding its per-channel scale (and bias); its other outputs
(mean, inverse deviation, the skip sum) do not depend on them."""
FOLD_TOLERANCE = 1e-3
"""Largest output difference, relative to the output's largest value, a fold may make in float."""
OUTLIER_RATIO = 4.0
"""Smooth an activation only if its largest channel range is at least this many times the median channel's."""


def smoothable_groups(model: onnx.ModelProto, exclude: Iterable[str] = ()) -> dict[str, list[onnx.NodeProto]]:
    """Activation name → the nodes that multiply it by a constant 2-D weight (excluded nodes left out)."""
    inits = {t.name: t for t in model.graph.initializer}
    skip = set(exclude)
    groups: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        index = SMOOTHABLE.get(node.op_type)
        if index is None or node.name in skip or len(node.input) <= index:
            continue
        weight = inits.get(node.input[index])
        activation = node.input[0]
        if weight is None or activation in inits or len(weight.dims) != 2:
            continue
        groups.setdefault(activation, []).append(node)
    return groups


def activation_maxima(model: onnx.ModelProto, names: list[str], feeds: Iterable[Mapping[str, np.ndarray]], scratch: Path,
                      reference: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Per-channel (last axis) max |value| of each named tensor over all feeds; the graph's own
    outputs on the first feed go into ``reference`` when one is given."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    outputs = [o.name for o in probe.graph.output]
    for name in names:
        if name not in outputs:
            probe.graph.output.append(onnx.ValueInfoProto(name=name))
    session = graphs.session_for(probe, scratch)
    inputs = {i.name for i in session.get_inputs()}
    maxima: dict[str, np.ndarray] = {}
    for feed in feeds:
        record = reference is not None and not reference  # the first feed only
        values = session.run(names + outputs if record else names, {k: v for k, v in feed.items() if k in inputs})
        for name, value in zip(names, values):
            flat = np.abs(np.asarray(value, dtype=np.float32)).reshape(-1, value.shape[-1]).max(axis=0)
            maxima[name] = np.maximum(maxima[name], flat) if name in maxima else flat
        if record:
            reference.update(zip(outputs, values[len(names):]))  # type: ignore[union-attr]  # record implies a dict
    return maxima


class _Graph:
    """Who produces and who reads each tensor, and the initializers, of a graph being rewritten."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self.inits = {t.name: t for t in model.graph.initializer}
        self.producer = {out: node for node in model.graph.node for out in node.output}
        self.users = graphs.reader_counts(model)
        self.value_users: dict[str, int] = {}  # readers of the values, not only of the shape
        for node in model.graph.node:
            if node.op_type not in SHAPE_READERS:
                for name in node.input:
                    self.value_users[name] = self.value_users.get(name, 0) + 1
        for output in model.graph.output:  # the caller reads a graph output too
            self.value_users[output.name] = self.value_users.get(output.name, 0) + 1

    def private(self, name: str) -> bool:
        """Read by one node only (an initializer that can be replaced)."""
        return self.users.get(name, 0) == 1

    def values_private(self, name: str) -> bool:
        """Its values read by one node only (exporters also take its ``Shape`` to size the head reshapes)."""
        return self.value_users.get(name, 0) == 1

    def through_layout(self, name: str) -> onnx.NodeProto | None:
        """The first producer above ``name`` that is not a head reshape/transpose (each tensor on the way read by one node)."""
        node = self.producer.get(name)
        while node is not None and node.op_type in HEAD_LAYOUT_OPS and self.values_private(node.input[0]):
            node = self.producer.get(node.input[0])
        return node


def linear_source(graph: _Graph, name: str) -> list[onnx.TensorProto] | None:
    """The weight (and bias) initializers of ``name = x @ W (+ b)`` when each is private and the
    product's values reach ``name`` only (a ``Shape`` may read them too); None otherwise. Scaling
    their output columns scales ``name``'s channels."""
    value = graph.producer.get(name)
    bias: onnx.TensorProto | None = None
    if value is not None and value.op_type == "Add" and graph.values_private(value.output[0]):
        operands = graphs.constant_operand(value, graph.inits.__contains__)
        if operands is None or len(graph.inits[operands[0]].dims) != 1 or not graph.private(operands[0]):
            return None
        bias, value = graph.inits[operands[0]], graph.producer.get(operands[1])
    if value is None or value.op_type != "MatMul" or not graph.values_private(value.output[0]):
        return None
    weight = graph.inits.get(value.input[1])
    if weight is None or len(weight.dims) != 2 or not graph.private(weight.name):
        return None
    if bias is not None and bias.dims[0] != weight.dims[1]:
        return None
    return [weight] if bias is None else [weight, bias]


def value_projection(graph: _Graph, activation: str) -> list[onnx.TensorProto] | None:
    """The weight (and bias) initializers of the V projection whose heads make ``activation``, when
    ``activation = layout(MatMul(probabilities, layout(V)))`` and ``V = x @ W (+ b)`` reach it
    through nothing but head reshapes/transposes, each read by one node (and perhaps a ``Shape``); None otherwise."""
    mix = graph.through_layout(activation)
    if mix is None or mix.op_type != "MatMul" or not graph.values_private(mix.output[0]) or mix.input[1] in graph.inits:
        return None
    value = graph.through_layout(mix.input[1])
    return None if value is None else linear_source(graph, value.output[0])


def gated_projection(graph: _Graph, activation: str) -> list[onnx.TensorProto] | None:
    """The weight (and bias) initializers of the "up" projection when ``activation = act(x @ W_gate) * (x @ W_up
    (+ b))`` (a gated FFN: Llama, Qwen, Gemma, T5 v1.1): channel c of the product scales with channel c
    of ``up``. The first operand that is such a private projection is taken; None if neither is."""
    gate = graph.producer.get(activation)
    if gate is None or gate.op_type != "Mul" or len(gate.input) != 2 or any(name in graph.inits for name in gate.input):
        return None
    for operand in gate.input:
        found = linear_source(graph, operand)
        if found is not None:
            return found
    return None


def normalization_affine(graph: _Graph, activation: str, readers: int) -> list[onnx.TensorProto] | None:
    """The per-channel scale (and bias) initializers applied last to ``activation`` when it is a
    normalization's output whose values only the ``readers`` smoothed nodes read: dividing them
    divides the activation, exactly. A normalization (``LayerNormalization``, RMS norms), a
    ``Mul`` by a constant vector (a decomposed RMS norm's weight), or that ``Mul`` plus an ``Add``
    of a constant vector (a decomposed LayerNorm). A ``Reshape`` between them is looked through (the
    flattening before a ``Gemm``): the scale's length must still match the activation's channels, and
    the float check after the folds catches a reshape that moved them. None otherwise (a post-LN
    residual reads the normalization's output too)."""
    node = graph.producer.get(activation)
    if node is None or graph.value_users.get(activation, 0) != readers:
        return None
    if node.op_type == "Reshape":
        if not graph.values_private(node.input[0]):
            return None
        node = graph.producer.get(node.input[0])
        if node is None:
            return None
        activation = node.output[0]
    if node.op_type in NORMALIZATION_AFFINE and node.output[0] == activation:
        names = [node.input[i] for i in NORMALIZATION_AFFINE[node.op_type] if i < len(node.input) and node.input[i]]
    elif (operands := graphs.constant_operand(node, graph.inits.__contains__, ("Mul", "Add"))) is not None:
        names = [operands[0]]
        if node.op_type == "Add":  # x * gamma + beta: the Mul's output read by this Add only
            gamma = graphs.constant_operand(graph.producer.get(operands[1]), graph.inits.__contains__, ("Mul",))
            if gamma is None or not graph.values_private(operands[1]):
                return None
            names = [gamma[0]] + names
    else:
        return None
    tensors = [graph.inits.get(name) for name in names]
    if not tensors or any(t is None or len(t.dims) != 1 or not graph.private(t.name) for t in tensors):
        return None
    return [t for t in tensors if t is not None]


def smooth(
    model: onnx.ModelProto,
    feeds: list[Mapping[str, np.ndarray]],
    alpha: float,
    scratch: Path,
    exclude: Iterable[str] = (),
    outlier_ratio: float = OUTLIER_RATIO,
) -> int:
    """Smooth ``model`` in place; returns the number of weight matrices rescaled. Activations whose
    channel ranges are flat (max under ``outlier_ratio`` × median; 0 smooths every one) are skipped."""
    groups = smoothable_groups(model, exclude)
    if not groups or not feeds:
        return 0
    reference: dict[str, np.ndarray] = {}
    maxima = activation_maxima(model, list(groups), feeds, scratch, reference)
    graph = _Graph(model)
    divisions: list[tuple[str, list[onnx.NodeProto], onnx.TensorProto]] = []
    rescaled = 0
    for activation, nodes in groups.items():
        channels = maxima[activation]
        if channels.max() < outlier_ratio * float(np.median(channels)):
            continue  # no outlier channel to move: a Mul would cost a pass and buy nothing
        weights = [numpy_helper.to_array(graph.inits[n.input[SMOOTHABLE[n.op_type]]]).astype(np.float32) for n in nodes]
        if any(w.shape[0] != channels.shape[0] for w in weights):
            continue  # the weight does not multiply the activation's last axis (a transposed layout): leave it
        weight_max = np.max(np.stack([np.abs(w).max(axis=1) for w in weights]), axis=0)
        scale = np.power(np.maximum(channels, 1e-5), alpha) / np.power(np.maximum(weight_max, 1e-5), 1 - alpha)
        scale = np.clip(scale, 1e-4, 1e4).astype(np.float32)
        base = activation.replace("/", "_").strip("_") or "x"
        divisions.append((activation, nodes, numpy_helper.from_array((1.0 / scale).astype(np.float32), f"{base}_smooth_inv_scale")))
        for node, weight in zip(nodes, weights):
            index = SMOOTHABLE[node.op_type]
            old = graph.inits[node.input[index]]
            scaled = numpy_helper.from_array((weight * scale[:, None]).astype(np.float32), f"{old.name}_smoothed")
            if graph.private(old.name):
                model.graph.initializer.remove(old)
            model.graph.initializer.append(scaled)
            graph.inits[scaled.name], graph.users[scaled.name] = model.graph.initializer[-1], 1  # the stored copy
            node.input[index] = scaled.name
            rescaled += 1
    # The divisions, once every weight is rescaled (a V projection may itself have been smoothed).
    folds: list[tuple[str, list[onnx.NodeProto], onnx.TensorProto, list[onnx.TensorProto]]] = []
    muls = []
    for activation, nodes, inverse in divisions:
        source = value_projection(graph, activation) or gated_projection(graph, activation)
        if source is None or source[0].dims[-1] != inverse.dims[0]:
            source = normalization_affine(graph, activation, len(nodes))
            if source is not None and any(t.dims[0] != inverse.dims[0] for t in source):
                source = None
        if source is not None:
            folds.append((activation, nodes, inverse, [_copy(t) for t in source]))
            for tensor in source:  # channel c of V / up / the normalization's output feeds channel c of the activation only
                _replace_data(tensor, numpy_helper.to_array(tensor).astype(np.float32) * numpy_helper.to_array(inverse))
        else:
            muls.append(_smoothing_mul(model, activation, nodes, inverse))
    if folds and not same_function(_with_nodes(model, _in_order(model, muls)), feeds[0], reference, scratch):
        for activation, nodes, inverse, saved in folds:  # a layout the fold misread: divide with a Mul after all
            for tensor in saved:
                _replace_data(graph.inits[tensor.name], numpy_helper.to_array(tensor))
            muls.append(_smoothing_mul(model, activation, nodes, inverse))
    in_order = _in_order(model, muls)
    del model.graph.node[:]
    model.graph.node.extend(in_order)
    return rescaled


def _in_order(model: onnx.ModelProto, muls: list[tuple[onnx.NodeProto, onnx.NodeProto]]) -> list[onnx.NodeProto]:
    """The graph's nodes with each new Mul right before the first node that reads it (topological order kept)."""
    nodes = list(model.graph.node)
    positions = [nodes.index(first_consumer) for first_consumer, _ in muls]
    for position, (_, mul) in sorted(zip(positions, muls), key=lambda pair: -pair[0]):
        nodes.insert(position, mul)
    return nodes


def _with_nodes(model: onnx.ModelProto, nodes: list[onnx.NodeProto]) -> onnx.ModelProto:
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    del copy.graph.node[:]
    copy.graph.node.extend(nodes)
    return copy


def _smoothing_mul(model: onnx.ModelProto, activation: str, nodes: list[onnx.NodeProto],
                   inverse: onnx.TensorProto) -> tuple[onnx.NodeProto, onnx.NodeProto]:
    """``activation * inverse`` as a new Mul read by ``nodes``; returned with the node it must precede."""
    model.graph.initializer.append(inverse)
    base = inverse.name.removesuffix("_smooth_inv_scale")
    smoothed = f"{base}_smoothed"
    for node in nodes:
        node.input[0] = smoothed
    return nodes[0], onnx.helper.make_node("Mul", [activation, inverse.name], [smoothed], name=f"{base}_smooth")


def _copy(tensor: onnx.TensorProto) -> onnx.TensorProto:
    kept = onnx.TensorProto()
    kept.CopyFrom(tensor)
    return kept


def _replace_data(tensor: onnx.TensorProto, values: np.ndarray) -> None:
    tensor.CopyFrom(numpy_helper.from_array(values.astype(onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type)), tensor.name))


def same_function(model: onnx.ModelProto, feed: Mapping[str, np.ndarray], reference: Mapping[str, np.ndarray], scratch: Path) -> bool:
    """Whether the rewritten float ``model`` still computes ``reference`` (its outputs before) on ``feed``."""
    session = graphs.session_for(model, scratch)
    inputs = {i.name for i in session.get_inputs()}
    names = [o.name for o in session.get_outputs() if o.name in reference]
    got = session.run(names, {k: v for k, v in feed.items() if k in inputs})
    for name, value in zip(names, got):
        want = np.asarray(reference[name], dtype=np.float64)
        scale = float(np.abs(want).max()) or 1.0
        if np.abs(np.asarray(value, dtype=np.float64) - want).max() > FOLD_TOLERANCE * scale:
            return False
    return bool(names)
