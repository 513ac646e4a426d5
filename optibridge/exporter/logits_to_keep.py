"""An optional ``logits_to_keep`` input on exported decoder graphs, as transformers' models take it.

``generate()`` reads one row of logits per step, yet a prompt's prefill projects every position
onto the vocabulary: for GPT-2-small that is a 768 × 50257 MatMul per prompt token, a fifth of a
32-token prefill and a quarter of a 256-token one on ONNX Runtime. The exporter therefore slices
the hidden states right before the LM head: ``logits_to_keep`` = k > 0 keeps the last k positions,
0 (the default) keeps them all, a k past the length keeps them all (transformers' ``[:, -k:, :]``).

The input has an initializer as its default value (ONNX's way to make an input optional): callers
that do not know it (onnxruntime-genai, Optimum, older optibridge) run the graph as before, and
ONNX Runtime lists it among the overridable initializers, not the inputs. OpenVINO's ONNX reader
folds it into a constant, so an IR made from the graph has no such input.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..backend import LOGITS_TO_KEEP

_PREFIX = "optibridge.logits_to_keep"

# Ops that act on each position alone: slicing positions before them equals slicing after.
_UNARY = {"Identity", "Cast", "Tanh", "Relu", "Sigmoid", "Softplus", "Neg", "Abs"}
_BINARY = {"Add", "Sub", "Mul", "Div"}


def add_logits_to_keep(model: onnx.ModelProto, logits: str = "logits") -> bool:
    """Slice the LM head's input by a new optional ``logits_to_keep`` input, in place.

    False (``model`` unchanged) when the graph has the input already or its LM head is not a MatMul
    of (batch, positions, hidden) states by a constant matrix reached from ``logits`` through
    position-wise ops only (a per-vocabulary bias or scale, a soft-cap, a cast)."""
    graph = model.graph
    if any(value.name == LOGITS_TO_KEEP for value in graph.input):
        return False
    head = lm_head(model, logits)
    if head is None:
        return False
    graph.input.append(helper.make_tensor_value_info(LOGITS_TO_KEEP, TensorProto.INT64, []))
    graph.initializer.extend([
        numpy_helper.from_array(np.array(0, np.int64), LOGITS_TO_KEEP),  # the default: every position
        numpy_helper.from_array(np.array([0], np.int64), f"{_PREFIX}.axis0"),
        numpy_helper.from_array(np.array([np.iinfo(np.int64).max], np.int64), f"{_PREFIX}.end"),
        numpy_helper.from_array(np.array([1], np.int64), f"{_PREFIX}.positions_axis"),
    ])
    kept = f"{_PREFIX}.hidden"
    nodes = [
        helper.make_node("Neg", [LOGITS_TO_KEEP], [f"{_PREFIX}.negated"], name=f"{_PREFIX}.Neg"),
        helper.make_node("Unsqueeze", [f"{_PREFIX}.negated", f"{_PREFIX}.axis0"], [f"{_PREFIX}.start"], name=f"{_PREFIX}.Unsqueeze"),
        helper.make_node("Slice", [head.input[0], f"{_PREFIX}.start", f"{_PREFIX}.end", f"{_PREFIX}.positions_axis"], [kept],
                         name=f"{_PREFIX}.Slice"),
    ]
    head.input[0] = kept
    at = list(graph.node).index(head)
    for offset, node in enumerate(nodes):  # before the head: the node list stays in topological order
        graph.node.insert(at + offset, node)
    return True


def lm_head(model: onnx.ModelProto, logits: str = "logits") -> onnx.NodeProto | None:
    """The MatMul whose output reaches the ``logits`` output through position-wise ops only, with a
    constant right-hand side and a rank-3 left-hand side; None when the graph is not built so."""
    graph = model.graph
    output = next((value for value in graph.output if value.name == logits), None)
    if output is None or len(output.type.tensor_type.shape.dim) != 3:
        return None
    producers: dict[str, onnx.NodeProto] = {name: node for node in graph.node for name in node.output}
    constants = _ConstantFinder(graph, producers)
    name = logits
    for _ in range(16):
        node = producers.get(name)
        if node is None:
            return None
        if node.op_type == "MatMul":
            # A (hidden, vocab) weight and constants of rank <= 1 on the path: the activation has the logits' rank 3.
            if constants.rank(node.input[1]) == 2 and not constants.is_constant(node.input[0]):
                return node
            return None
        if node.op_type in _UNARY:
            name = node.input[0]
        elif node.op_type in _BINARY:
            computed = [i for i in node.input if not constants.is_constant(i)]
            fixed = [i for i in node.input if constants.is_constant(i)]
            # A constant with a positions axis (rank >= 2) would be misplaced by the slice, or could raise the rank.
            if len(computed) != 1 or not all(constants.rank(i) in (0, 1) for i in fixed):
                return None
            name = computed[0]
        else:
            return None
    return None


class _ConstantFinder:
    """Which values of a graph are computed from initializers / Constant nodes alone, and their rank."""

    def __init__(self, graph: onnx.GraphProto, producers: dict[str, onnx.NodeProto]) -> None:
        self._initializers = {tensor.name: len(tensor.dims) for tensor in graph.initializer}
        self._inputs = {value.name for value in graph.input}
        self._producers = producers

    def is_constant(self, name: str, depth: int = 6) -> bool:
        if name in self._inputs:  # an input with an initializer default can still be fed
            return False
        if name in self._initializers:
            return True
        node = self._producers.get(name)
        if node is None or depth == 0:
            return False
        if node.op_type == "Constant":
            return True
        return len(node.input) > 0 and all(self.is_constant(i, depth - 1) for i in node.input if i)

    def rank(self, name: str) -> int | None:
        """The rank of an initializer or a Constant node's ``value``, also through a Transpose or Cast of
        one (a tied embedding's transposed table); None for anything else."""
        if name in self._inputs:
            return None
        if name in self._initializers:
            return self._initializers[name]
        node = self._producers.get(name)
        if node is not None and node.op_type in ("Transpose", "Cast", "Identity"):
            return self.rank(node.input[0])
        if node is not None and node.op_type == "Constant":
            for attribute in node.attribute:
                if attribute.name == "value":
                    return len(attribute.t.dims)
                if attribute.name in ("value_float", "value_int"):
                    return 0
        return None
