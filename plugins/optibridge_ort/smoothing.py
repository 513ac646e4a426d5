"""SmoothQuant on an ONNX graph: move activation outliers into the weights before int8 quantization.

int8 activations share one scale per tensor, so a few channels with very large values (they
exist in every BERT-style model) leave too few levels for all the others. For a MatMul ``X @ W``
with constant ``W``, ``X @ W == (X / s) @ (diag(s) W)`` for any per-channel ``s > 0``; with
``s_j = max|X_j|^alpha / max|W_j|^(1-alpha)`` both factors have flatter ranges (Xiao et al.,
SmoothQuant, 2022). ``max|X_j|`` comes from a few calibration samples.

Here the division is a ``Mul`` node inserted after the activation, shared by every smoothed
consumer of it (query/key/value read one activation: one ``Mul``); other readers of the
activation (the residual ``Add``) keep the original. The float graph computes the same function
(within float rounding), so this is checked only by the int8 result it enables.
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


def activation_maxima(model: onnx.ModelProto, names: list[str], feeds: Iterable[Mapping[str, np.ndarray]], scratch: Path) -> dict[str, np.ndarray]:
    """Per-channel (last axis) max |value| of each named tensor over all feeds."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    present = {o.name for o in probe.graph.output}
    for name in names:
        if name not in present:
            probe.graph.output.append(onnx.ValueInfoProto(name=name))
    session = graphs.session_for(probe, scratch)
    inputs = {i.name for i in session.get_inputs()}
    maxima: dict[str, np.ndarray] = {}
    for feed in feeds:
        values = session.run(names, {k: v for k, v in feed.items() if k in inputs})
        for name, value in zip(names, values):
            flat = np.abs(np.asarray(value, dtype=np.float32)).reshape(-1, value.shape[-1]).max(axis=0)
            maxima[name] = np.maximum(maxima[name], flat) if name in maxima else flat
    return maxima


def smooth(
    model: onnx.ModelProto,
    feeds: list[Mapping[str, np.ndarray]],
    alpha: float,
    scratch: Path,
    exclude: Iterable[str] = (),
) -> int:
    """Smooth ``model`` in place; returns the number of weight matrices rescaled."""
    groups = smoothable_groups(model, exclude)
    if not groups or not feeds:
        return 0
    maxima = activation_maxima(model, list(groups), feeds, scratch)
    inits = {t.name: t for t in model.graph.initializer}
    users: dict[str, int] = {}
    for node in model.graph.node:
        for name in node.input:
            users[name] = users.get(name, 0) + 1
    inserted: list[tuple[onnx.NodeProto, onnx.NodeProto]] = []
    rescaled = 0
    for activation, nodes in groups.items():
        weights = [numpy_helper.to_array(inits[n.input[SMOOTHABLE[n.op_type]]]).astype(np.float32) for n in nodes]
        if any(w.shape[0] != maxima[activation].shape[0] for w in weights):
            continue  # the weight does not multiply the activation's last axis (a transposed layout): leave it
        weight_max = np.max(np.stack([np.abs(w).max(axis=1) for w in weights]), axis=0)
        scale = np.power(np.maximum(maxima[activation], 1e-5), alpha) / np.power(np.maximum(weight_max, 1e-5), 1 - alpha)
        scale = np.clip(scale, 1e-4, 1e4).astype(np.float32)
        base = activation.replace("/", "_").strip("_") or "x"
        inverse = numpy_helper.from_array((1.0 / scale).astype(np.float32), f"{base}_smooth_inv_scale")
        model.graph.initializer.append(inverse)
        smoothed = f"{base}_smoothed"
        inserted.append((nodes[0], onnx.helper.make_node("Mul", [activation, inverse.name], [smoothed], name=f"{base}_smooth")))
        for node, weight in zip(nodes, weights):
            index = SMOOTHABLE[node.op_type]
            old = inits[node.input[index]]
            scaled = numpy_helper.from_array((weight * scale[:, None]).astype(np.float32), f"{old.name}_smoothed")
            if users.get(old.name, 0) <= 1:
                model.graph.initializer.remove(old)
            model.graph.initializer.append(scaled)
            node.input[index] = scaled.name
            node.input[0] = smoothed
            rescaled += 1
    nodes_in_order = list(model.graph.node)
    for first_consumer, mul in inserted:
        nodes_in_order.insert(nodes_in_order.index(first_consumer), mul)
    del model.graph.node[:]
    model.graph.node.extend(nodes_in_order)
    return rescaled
