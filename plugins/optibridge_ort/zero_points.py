"""Weight zero points in the form ONNX Runtime's fastest int8 path takes.

ORT's quantizer writes symmetric per-column int8 weights with a vector of zero points, all zeros.
Its ``MatMulIntegerToFloat``/``DynamicQuantizeMatMul`` kernels then take the per-column zero-point
path, which corrects every output column for a zero point that is not there: 0.5-1 % of
all-MiniLM-L6-v2's batch-1 int8 latency (Zen 5, ORT 1.31 and 1.32; the per-column scales stay).
A scalar zero point gives the same product on the plain path.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from optibridge.graph_readers import reader_counts


def scalar_zero_points(model: onnx.ModelProto) -> int:
    """Give each ``MatMulInteger`` whose weight zero point is a vector of zeros a scalar zero point;
    returns the number of nodes changed (the vectors no node reads any more are dropped)."""
    inits = {t.name: t for t in model.graph.initializer}
    scalars: dict[int, str] = {}
    replaced: set[str] = set()
    changed = 0
    for node in model.graph.node:
        if node.op_type != "MatMulInteger" or len(node.input) < 4 or node.input[3] not in inits:
            continue
        zero_point = inits[node.input[3]]
        values = numpy_helper.to_array(zero_point)
        if values.ndim != 1 or values.any():
            continue
        if zero_point.data_type not in scalars:
            name = f"optibridge_scalar_zero_point_{values.dtype.name}"
            model.graph.initializer.append(numpy_helper.from_array(np.zeros((), dtype=values.dtype), name))
            scalars[zero_point.data_type] = name
        replaced.add(node.input[3])
        node.input[3] = scalars[zero_point.data_type]
        changed += 1
    readers = reader_counts(model)
    unread = {name for name in replaced if not readers.get(name)}
    if unread:
        kept = [t for t in model.graph.initializer if t.name not in unread]
        del model.graph.initializer[:]
        model.graph.initializer.extend(kept)
    return changed
