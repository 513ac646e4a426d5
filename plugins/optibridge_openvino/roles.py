"""What each MatMul of an OpenVINO transformer graph does, read from the graph itself.

Static int8 treats the linears differently by what feeds them (see :mod:`.quantize`): the
projections fed by a normalization (Q/K/V, FFN up) have the per-channel outliers SmoothQuant is
made for; the FFN down-projections, fed by an activation, have a few outlier channels that are
split off instead (:mod:`.outliers`). The attention itself (``ScaledDotProductAttention``, or
MatMuls between two activations) has no weights at all.
"""

from __future__ import annotations

from typing import Any

ACTIVATIONS = {"Gelu", "Swish", "HSwish", "Mish", "Erf", "Tanh", "Sigmoid"}
GATE_OPS = {"Multiply", "Divide", "Add"}
WEIGHT_OPS = {"Convert", "Reshape", "Transpose", "Multiply", "Subtract"}  # a constant's dequantization or layout
ATTENTION_OPS = {"ScaledDotProductAttention"}


def _constant_like(node: Any, depth: int = 4) -> bool:
    kind = node.get_type_name()
    if kind == "Constant":
        return True
    return depth > 0 and kind in WEIGHT_OPS and all(_constant_like(v.get_node(), depth - 1) for v in node.input_values())


def has_weight(matmul: Any) -> bool:
    """True for a linear layer: one of its inputs is a constant (possibly compressed or transposed)."""
    return any(_constant_like(v.get_node()) for v in matmul.input_values())


def attention_nodes(model: Any) -> list[str]:
    """The attention computations: fused ``ScaledDotProductAttention`` ops and MatMuls between two activations."""
    return [op.get_friendly_name() for op in model.get_ordered_ops()
            if op.get_type_name() in ATTENTION_OPS or (op.get_type_name() == "MatMul" and not has_weight(op))]


def ffn_down_projections(model: Any) -> list[str]:
    """Linears whose input comes from a GELU/SiLU (directly or through the gate product)."""

    def from_activation(node: Any, depth: int = 3) -> bool:
        kind = node.get_type_name()
        if kind in ACTIVATIONS:
            return True
        return depth > 0 and kind in GATE_OPS and any(from_activation(i.get_node(), depth - 1) for i in node.input_values())

    return [op.get_friendly_name() for op in model.get_ordered_ops()
            if op.get_type_name() == "MatMul" and from_activation(op.input_value(0).get_node())]
