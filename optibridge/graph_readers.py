"""Who reads each tensor of an ONNX graph, subgraphs included (before a rewrite drops or replaces one)."""

from __future__ import annotations

import collections

import onnx


def reader_counts(model: onnx.ModelProto) -> collections.Counter[str]:
    """How many nodes read each tensor; a graph output counts as one more reader (the caller).

    Nodes inside If/Loop/Scan bodies count too: a body reads the outer graph's tensors by name, so a
    table it reads is not read "only by this Gather" even when the outer graph says so."""
    counts: collections.Counter[str] = collections.Counter()
    _count_readers(model.graph, counts)
    return counts


def _count_readers(graph: onnx.GraphProto, counts: collections.Counter[str]) -> None:
    for node in graph.node:
        counts.update(name for name in node.input if name)
        for attribute in node.attribute:
            for body in (attribute.g,) if attribute.type == onnx.AttributeProto.GRAPH else attribute.graphs:
                _count_readers(body, counts)
    counts.update(output.name for output in graph.output)
