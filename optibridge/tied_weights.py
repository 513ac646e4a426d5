"""One copy of a tied embedding in an exported graph, instead of two.

Language models tie the LM head to the token embedding (GPT-2, Llama 3.2 1B, Qwen2.5 0.5B, Gemma,
T5, BERT's masked-LM head): one (vocabulary × hidden) matrix serves both. The torch exporters write it
twice, once as the ``Gather``'s table and once transposed as the head's ``MatMul`` weight: a random
GPT-2-small's graph holds 163 M weights for its 124 M parameters, 150 MB of float32 written, copied
and read twice. :func:`share_tied_weights` finds each ``MatMul`` weight that is exactly the transpose
of a ``Gather``'s table and reads it through a ``Transpose`` of that table instead, which every
runtime resolves when it loads the graph (ONNX Runtime folds it, OpenVINO turns it into the
``MatMul``'s own ``transpose_b``); the logits are bit-for-bit the same.

A tool that needs the head's weight as a constant of its own (ONNX Runtime's quantizers quantize a
``MatMul`` only when its weight is an initializer) calls :func:`materialize_tied_weights` first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Collection

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .graph_readers import reader_counts

TRANSPOSED_SUFFIX = ".transposed_for_matmul"
"""The output name of the ``Transpose`` a shared weight is read through (and of its materialized copy)."""


@dataclass(frozen=True)
class TiedWeights:
    """What :func:`share_tied_weights` removed: how many duplicate matrices and their bytes."""

    shared: int
    bytes_saved: int


def share_tied_weights(model: onnx.ModelProto) -> TiedWeights:
    """Replace each ``MatMul`` weight that equals the transpose of a ``Gather`` table by a
    ``Transpose`` of that table, in place, and drop the duplicate initializer."""
    graph = model.graph
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    readers = reader_counts(model)  # subgraph bodies and graph outputs read by name too
    graph_inputs = {value.name for value in graph.input}  # an initializer that is also an input can be fed
    tables = {node.input[0]: initializers[node.input[0]] for node in graph.node
              if node.op_type == "Gather" and node.input and node.input[0] in initializers
              and node.input[0] not in graph_inputs and len(initializers[node.input[0]].dims) == 2}
    if not tables:
        return TiedWeights(0, 0)
    by_shape = {tuple(table.dims): name for name, table in tables.items()}
    taken = set(initializers) | {out for node in graph.node for out in node.output}
    shared = saved = 0
    transposes: dict[str, str] = {}  # table → the Transpose output already added for it
    for node in list(graph.node):
        if node.op_type != "MatMul" or len(node.input) < 2:
            continue
        weight = initializers.get(node.input[1])
        if weight is None or len(weight.dims) != 2 or weight.name in graph_inputs or readers.get(weight.name) != 1:
            continue
        table_name = by_shape.get((weight.dims[1], weight.dims[0]))
        if table_name is None or table_name == weight.name or weight.data_type != tables[table_name].data_type:
            continue
        if not _transposed_equal(weight, tables[table_name]):
            continue
        if table_name not in transposes:
            transposes[table_name] = _unused(table_name + TRANSPOSED_SUFFIX, taken)
            graph.node.insert(list(graph.node).index(node), helper.make_node(
                "Transpose", [table_name], [transposes[table_name]], perm=[1, 0], name=f"{table_name}.Transpose"))
        node.input[1] = transposes[table_name]
        saved += _nbytes(weight)
        position = next(i for i, tensor in enumerate(graph.initializer) if tensor.name == weight.name)
        del graph.initializer[position]  # by position: remove() would compare whole tensors
        shared += 1
    return TiedWeights(shared, saved)


def materialize_tied_weights(model: onnx.ModelProto, keep: Collection[str] = ()) -> int:
    """Undo :func:`share_tied_weights`, in place: each ``MatMul`` that reads a ``Transpose`` of an
    initializer gets the transposed matrix as an initializer of its own. Returns how many.

    ``keep`` names MatMul nodes left reading the ``Transpose``: a head that stays in float needs no
    second copy of the table."""
    graph = model.graph
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    graph_inputs = {value.name for value in graph.input}
    producers = {out: node for node in graph.node for out in node.output}
    taken = set(initializers) | set(producers)
    done = 0
    bypassed: set[str] = set()
    for node in graph.node:
        if node.op_type != "MatMul" or len(node.input) < 2 or node.name in keep:
            continue
        transpose = producers.get(node.input[1])
        if transpose is None or transpose.op_type != "Transpose" or transpose.input[0] not in initializers:
            continue
        table = initializers[transpose.input[0]]
        perm = next((list(a.ints) for a in transpose.attribute if a.name == "perm"), [1, 0])
        if len(table.dims) != 2 or perm != [1, 0] or table.name in graph_inputs:
            continue
        copy = numpy_helper.from_array(np.ascontiguousarray(numpy_helper.to_array(table).T), _unused(f"{transpose.output[0]}.constant", taken))
        graph.initializer.append(copy)
        node.input[1] = copy.name
        bypassed.add(transpose.output[0])
        done += 1
    readers = reader_counts(model)
    for name in bypassed:
        if not readers[name]:  # a Transpose nothing reads any more (a subgraph body may still)
            graph.node.remove(producers[name])
    return done


def _unused(name: str, taken: set[str]) -> str:
    candidate, n = name, 1
    while candidate in taken:
        candidate, n = f"{name}.{n}", n + 1
    taken.add(candidate)
    return candidate


def _view(tensor: onnx.TensorProto) -> np.ndarray:
    """The tensor's values without a copy where its bytes are raw (a large table is gigabytes)."""
    if tensor.raw_data and tensor.data_type != onnx.TensorProto.STRING:
        dtype = np.dtype(helper.tensor_dtype_to_np_dtype(tensor.data_type)).newbyteorder("<")
        return np.frombuffer(tensor.raw_data, dtype=dtype).reshape(tuple(tensor.dims))
    return numpy_helper.to_array(tensor)


def _transposed_equal(weight: onnx.TensorProto, table: onnx.TensorProto, rows: int = 4096) -> bool:
    """``weight == table.T`` exactly, compared a block of table rows at a time (bounded scratch memory)."""
    w, t = _view(weight), _view(table)
    if w.shape != t.shape[::-1]:
        return False
    return all(np.array_equal(w[:, start:start + rows], t[start:start + rows].T) for start in range(0, t.shape[0], rows))


def _nbytes(tensor: onnx.TensorProto) -> int:
    count = int(np.prod(tensor.dims))
    return count * np.dtype(helper.tensor_dtype_to_np_dtype(tensor.data_type)).itemsize
