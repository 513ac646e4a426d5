"""Outlier channels of FFN down-projection inputs moved to a float side path before static int8.

Why: int8 static quantizes a MatMul's input with one range for the whole tensor. In BERT-like
encoders one or two of the 1536 GELU outputs of the early FFNs carry the "massive activation" of
the [CLS] token (all-MiniLM-L6-v2: 24.8 where the 99th-percentile channel reaches 4.7), so that
one range is ~5x wider than the rest needs and every other channel loses that much resolution.
SmoothQuant moves the excess into the weights, where per-channel int8 weights then lose it
instead (measured: worse). Here the excess is removed exactly: the outlier channels of the
up-projection are zeroed in place (GELU(0) = 0, so they reach the down-projection as zeros and
its calibrated range is the rest's), and the same channels are recomputed in float by a small
side path ``GELU(x @ W_up[:, k] + b[:, k]) @ W_down[k, :]`` whose sum with the down-projection is
the original output. The rewrite is exact in float; what it costs per split FFN is one tiny int8
MatMul (like the FFN's up-projection) and one float broadcast Multiply per channel.

Only plain FFNs are rewritten (MatMul with a float32 constant weight, optional bias Add, ``Gelu``,
MatMul with a float32 constant weight); gated (SiLU) FFNs and compressed weights are left as they
are (the record's ``ffns`` counts the FFNs recognized, ``split`` those rewritten).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from optibridge import outlier_channels as selection
from optibridge.outlier_channels import MAX_CHANNELS, SIDE_PATH_PREFIX, rest_range

OUTLIER_RATIO = 4.0
"""A channel is an outlier when its calibration range exceeds this many times the rest's 99th-percentile channel's."""


@dataclass(frozen=True)
class PlainFFN:
    up: Any
    bias_add: Any | None  # None when the bias was all zeros and folded away (randomly initialized models)
    bias: Any | None
    activation: Any
    down: Any
    w_up: np.ndarray  # the constants as stored (read once, when the pattern is matched)
    w_down: np.ndarray
    b_up: np.ndarray | None


def _float_constant(node: Any) -> np.ndarray | None:
    if node.get_type_name() != "Constant" or node.get_output_element_type(0).get_type_name() != "f32":
        return None
    return np.asarray(node.get_data())


def plain_ffns(model: Any) -> list[PlainFFN]:
    """The FFNs this rewrite understands, in graph order."""
    found = []
    for down in model.get_ordered_ops():
        if down.get_type_name() != "MatMul" or down.get_attributes().get("transpose_a"):
            continue
        activation = down.input_value(0).get_node()
        if activation.get_type_name() != "Gelu" or len(activation.output(0).get_target_inputs()) != 1:
            continue
        producer = activation.input_value(0).get_node()
        if len(producer.output(0).get_target_inputs()) != 1:
            continue
        up, bias_add, bias, b_up = producer, None, None, None
        if producer.get_type_name() == "Add":
            sources = [value.get_node() for value in producer.input_values()]
            up = next((s for s in sources if s.get_type_name() == "MatMul"), None)
            bias = next((s for s in sources if s.get_type_name() == "Constant"), None)
            b_up = _float_constant(bias) if bias is not None else None
            if up is None or b_up is None:
                continue
            bias_add = producer
        if up.get_type_name() != "MatMul" or up.get_attributes().get("transpose_a"):
            continue
        w_up, w_down = _float_constant(up.input_value(1).get_node()), _float_constant(down.input_value(1).get_node())
        if w_up is None or w_down is None or len(up.output(0).get_target_inputs()) != 1:
            continue
        found.append(PlainFFN(up, bias_add, bias, activation, down, w_up, w_down, b_up))
    return found


def channel_ranges(model: Any, feeds: Sequence[Mapping[str, np.ndarray]], nodes: Sequence[Any]) -> list[np.ndarray]:
    """Per channel, the largest |value| each node's output takes over ``feeds`` (float32 inference)."""
    import openvino as ov

    probe = model.clone()
    wanted = {node.get_friendly_name() for node in nodes}
    by_name = {op.get_friendly_name(): op for op in probe.get_ordered_ops() if op.get_friendly_name() in wanted}
    first = len(probe.outputs)
    probe.add_outputs([by_name[node.get_friendly_name()].output(0) for node in nodes])
    request = ov.Core().compile_model(probe, "CPU", {"INFERENCE_PRECISION_HINT": "f32"}).create_infer_request()
    names = {port.get_any_name() for port in model.inputs}
    ranges: list[np.ndarray | None] = [None] * len(nodes)
    for feed in feeds:
        values = list(request.infer({k: v for k, v in feed.items() if k in names}).values())[first:]
        for i, value in enumerate(values):
            peak = np.abs(value).reshape(-1, value.shape[-1]).max(axis=0)
            ranges[i] = peak if ranges[i] is None else np.maximum(ranges[i], peak)
    return [r if r is not None else np.zeros(0) for r in ranges]


def outlier_channels(ranges: np.ndarray, ratio: float = OUTLIER_RATIO, limit: int = MAX_CHANNELS) -> np.ndarray:
    """The channels (sorted) whose range exceeds ``ratio`` x the rest's 99th-percentile channel (the core's rule)."""
    return selection.outlier_channels(ranges, ratio, limit)


def _transposed(matmul: Any) -> bool:
    return bool(matmul.get_attributes().get("transpose_b"))


def _split(ffn: PlainFFN, channels: np.ndarray, tag: str) -> list[str]:
    import openvino.opset13 as ops

    # Weights as stored: [in, out], or [out, in] when the MatMul transposes them (what ov.convert_model writes).
    up_t, down_t = _transposed(ffn.up), _transposed(ffn.down)
    w_up, w_down = ffn.w_up.copy(), ffn.w_down
    bias = ffn.b_up.copy() if ffn.b_up is not None else np.zeros(w_up.shape[0] if up_t else w_up.shape[1], dtype=np.float32)
    flat_bias = bias.reshape(-1)
    mode = str(ffn.activation.get_attributes().get("approximation_mode", "ERF")).lower()

    up_side = w_up[channels, :] if up_t else w_up[:, channels]
    down_side = w_down[:, channels] if down_t else w_down[channels, :]
    side_up = ops.matmul(ffn.up.input_value(0), ops.constant(np.ascontiguousarray(up_side)), False, up_t)
    side_up.set_friendly_name(f"{SIDE_PATH_PREFIX}{tag}/up")
    pre = side_up if ffn.bias is None else ops.add(side_up, ops.constant(flat_bias[channels].copy()))
    side = ops.gelu(pre, approximation_mode=mode)
    side_down, kept = _outer_products(side, down_side.T if down_t else down_side, f"{SIDE_PATH_PREFIX}{tag}/down")

    if up_t:  # the main path's outlier channels become GELU(0) = 0
        w_up[channels, :] = 0.0
    else:
        w_up[:, channels] = 0.0
    ffn.up.input(1).replace_source_output(ops.constant(w_up).output(0))
    if ffn.bias_add is not None and ffn.bias is not None:
        flat_bias[channels] = 0.0
        for port in ffn.bias_add.inputs():
            if port.get_source_output().get_node().get_friendly_name() == ffn.bias.get_friendly_name():
                port.replace_source_output(ops.constant(bias).output(0))

    consumers = list(ffn.down.output(0).get_target_inputs())
    total = ops.add(ffn.down.output(0), side_down)
    total.set_friendly_name(f"{SIDE_PATH_PREFIX}{tag}/sum")
    for port in consumers:
        port.replace_source_output(total.output(0))
    # Only the side down-projection stays float: the side up-projection reads the same normalized input
    # as the FFN's own and shares its quantizer (a float reader would keep that quantizer from fusing).
    return kept


def _outer_products(side: Any, rows: np.ndarray, name: str) -> tuple[Any, list[str]]:
    """``side [.., c] @ rows [c, H]`` as broadcast Multiplies (one per channel, summed), and their names.

    Why not a MatMul: with an inner size of 1 or 2 the CPU plugin runs it as a float GEMM call (~13 µs
    at 128 rows, measured) and then needs a separate Add into the down-projection's output; a Multiply
    is one eltwise pass that the plugin fuses with that Add (MiniLM: 40 → 27 µs per split FFN).
    """
    import openvino.opset13 as ops

    count = rows.shape[0]
    columns = [side] if count == 1 else list(ops.split(side, -1, count).outputs())
    total, names = None, []
    for i, column in enumerate(columns):
        product = ops.multiply(column, ops.constant(np.ascontiguousarray(rows[i:i + 1])))
        product.set_friendly_name(name if count == 1 else f"{name}/{i}")
        names.append(product.get_friendly_name())
        total = product if total is None else ops.add(total, product)
    return total, names


def split_outlier_channels(model: Any, feeds: Sequence[Mapping[str, np.ndarray]]) -> tuple[list[str], dict[str, Any]]:
    """Rewrite ``model`` in place; the side-path MatMuls to keep out of quantization, and a record."""
    ffns = plain_ffns(model)
    record: dict[str, Any] = {"ratio": OUTLIER_RATIO, "ffns": len(ffns), "split": {}}
    if not ffns or not feeds:
        return [], record
    side_matmuls: list[str] = []
    for ffn, ranges in zip(ffns, channel_ranges(model, feeds, [f.activation for f in ffns])):
        channels = outlier_channels(ranges)
        if len(channels):
            name = ffn.down.get_friendly_name()
            side_matmuls += _split(ffn, channels, str(len(record["split"])))
            reference = rest_range(ranges) or 0.0
            record["split"][name] = {"channels": [int(c) for c in channels],
                                     "range": round(float(ranges[channels].max()), 3), "rest_p99": round(reference, 3)}
    model.validate_nodes_and_infer_types()
    return side_matmuls, record
