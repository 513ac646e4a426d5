"""Quantization-aware training through NNCF's PyTorch API, and the int8 ONNX graph it ends in.

``nncf.quantize`` on the float torch model inserts fake quantizers (ranges from calibration
samples); training then goes on through them (straight-through gradients, learned ranges). For
export, each quantizer is switched to NNCF's QuantizeLinear/DequantizeLinear export mode, and the
weight QuantizeLinear nodes are folded into int8 initializers: the file holds int8 weights and
ONNX Runtime runs it with integer kernels (QDQ → QLinearMatMul / MatMulIntegerToFloat). OpenVINO
reads the same QDQ graph and compiles it to int8 (FakeQuantize → low-precision kernels).
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from ..hardware import needs_seven_bit_weights
from .config import QATConfig, TrainingConfigError


def _nncf() -> Any:
    try:
        import nncf
    except ImportError:
        raise TrainingConfigError(
            "quantization-aware training uses NNCF's PyTorch API: pip install 'optibridge[openvino-quant]' (nncf)"
        ) from None
    logging.getLogger("nncf").setLevel(logging.ERROR)
    return nncf


@contextlib.contextmanager
def reference_kernels() -> Iterator[None]:
    """Run NNCF's fake quantizers with its pure-PyTorch reference kernels, for this block only.

    On a CPU, NNCF otherwise compiles a C++ extension on first use (a compiler and minutes on a
    2-core machine, under a lock file that a killed process leaves behind); the reference kernels
    compute the same function.
    """
    import nncf.torch.quantization.quantize_functions as functions
    from nncf.torch.quantization.reference import torch_executor

    class _Reference:
        @staticmethod
        def get(name: str) -> Any:
            return {"Quantize_forward": torch_executor.forward, "Quantize_backward": torch_executor.backward}[name]

    previous = functions.QuantizedFunctionsCPU
    functions.QuantizedFunctionsCPU = _Reference  # type: ignore[assignment]
    try:
        yield
    finally:
        functions.QuantizedFunctionsCPU = previous


def weight_bits(config: QATConfig) -> int:
    """7 where int8 products saturate on this CPU (or ``reduce_range`` asks for it), else 8."""
    return 7 if needs_seven_bit_weights("auto", config.reduce_range) else 8


def insert_fake_quantizers(model: Any, samples: Iterable[dict[str, Any]], config: QATConfig) -> Any:
    """``nncf.quantize`` the float model (eval mode for range statistics); returns the model with quantizers."""
    nncf = _nncf()
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix

    feeds = [{k: v for k, v in sample.items() if k != "labels"} for sample in samples]
    if not feeds:
        raise TrainingConfigError("QAT needs calibration samples, and the training data yielded none")
    model.eval()
    preset = nncf.QuantizationPreset.MIXED if config.preset == "mixed" else nncf.QuantizationPreset.PERFORMANCE
    with reference_kernels():
        # NNCF's overflow fix starts each weight quantizer at twice its range, so the weights take int8 values
        # in [-64, 64]; training can move scales and weights past that, which fold_weight_quantizers clips.
        overflow_fix = OverflowFix.ENABLE if weight_bits(config) == 7 else OverflowFix.DISABLE
        quantized = nncf.quantize(
            model, nncf.Dataset(feeds), preset=preset, subset_size=len(feeds), model_type=nncf.ModelType.TRANSFORMER,
            advanced_parameters=AdvancedQuantizationParameters(overflow_fix=overflow_fix),
        )
    return quantized


def quantizers(model: Any) -> list[Any]:
    from nncf.torch.quantization.layers import BaseQuantizer

    return [m for m in model.modules() if isinstance(m, BaseQuantizer)]


@contextlib.contextmanager
def qdq_export_mode(model: Any) -> Iterator[int]:
    """Make the quantizers trace as ONNX QuantizeLinear/DequantizeLinear pairs; yields how many there are."""
    from nncf.torch.quantization.layers import QuantizerExportMode

    found = quantizers(model)
    previous = [q._export_mode for q in found]
    for q in found:
        q.set_export_mode(QuantizerExportMode.ONNX_QUANTIZE_DEQUANTIZE_PAIRS)
    try:
        with reference_kernels():
            yield len(found)
    finally:
        for q, mode in zip(found, previous):
            q.set_export_mode(mode)


SEVEN_BIT_MAGNITUDE = 64
"""The largest |integer| a weight may take where int8 products are summed in 16 bits: 2 x 255 x 64 fits."""


def fold_weight_quantizers(path: Path, max_magnitude: int | None = None) -> dict[str, int]:
    """Replace ``QuantizeLinear(constant float weight)`` by its int8 result, in place in the ONNX file.

    The graph keeps ``DequantizeLinear(int8 weight)`` → MatMul, the QDQ form runtimes turn into
    integer kernels; the file shrinks by ~4x in its weights. ``max_magnitude`` clips the integers of
    the dot-product weights (not the embedding tables, which are looked up) around their zero point.
    Returns counts for the report.
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    constants = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            constants[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    # embedding tables (Gather ← DequantizeLinear ← QuantizeLinear) are looked up, not multiplied: never clipped
    gathered = {node.input[0] for node in model.graph.node if node.op_type == "Gather"}
    lookups = {node.input[0] for node in model.graph.node if node.op_type == "DequantizeLinear" and node.output[0] in gathered}
    folded, clipped, kept = 0, 0, []
    for node in model.graph.node:
        if node.op_type != "QuantizeLinear" or node.input[0] not in constants or len(node.input) < 3:
            kept.append(node)
            continue
        weight = constants[node.input[0]].astype(np.float32)
        scale = constants[node.input[1]]
        zero_point = constants[node.input[2]]
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        if scale.ndim == 1 and weight.ndim > 1:
            shape = [1] * weight.ndim
            shape[axis] = -1
            scale, zp = scale.reshape(shape), zero_point.reshape(shape).astype(np.int32)
        else:
            zp = zero_point.astype(np.int32)
        info = np.iinfo(zero_point.dtype)
        levels = np.clip(np.rint(weight / scale) + zp, info.min, info.max)
        if max_magnitude is not None and node.output[0] not in lookups:
            clipped += int((np.abs(levels - zp) > max_magnitude).sum())
            levels = np.clip(levels, zp - max_magnitude, zp + max_magnitude)
        model.graph.initializer.append(numpy_helper.from_array(levels.astype(zero_point.dtype), node.output[0]))
        folded += 1
    del model.graph.node[:]
    model.graph.node.extend(kept)
    _drop_unused(model)
    onnx.save_model(model, str(path))
    counts: dict[str, int] = {"weights_folded_to_int8": folded}
    if max_magnitude is not None:
        counts["weight_values_clipped"] = clipped
    for node in model.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


def _drop_unused(model: Any) -> None:
    """Remove the float weights (initializers, Constant nodes) nothing reads any more."""
    used = {name for node in model.graph.node for name in node.input} | {o.name for o in model.graph.output}
    initializers = [t for t in model.graph.initializer if t.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(initializers)
    nodes = [n for n in model.graph.node if n.op_type != "Constant" or any(o in used for o in n.output)]
    del model.graph.node[:]
    model.graph.node.extend(nodes)
