"""The three UNet schemes of ``pipeline_quantize`` on a small convolution + MatMul graph: which ops
get int8 activations (a FakeQuantize on their input), which get int8 weights only, and which stay
float. The pipeline test (test_openvino_diffusion.py) covers the default scheme end to end; this
one checks every scheme's placement directly, where a wrong ignored scope would show."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("openvino")
pytest.importorskip("nncf")

from optibridge.errors import BackendError  # noqa: E402
from optibridge_openvino.pipeline_quantize import UNET_SCHEMES, quantize_unet  # noqa: E402


def _unet_like():
    """latent (1, 4, 8, 8) → 3×3 convolution → flatten to 64 tokens of 8 → MatMul with (8, 16) weights."""
    import openvino as ov
    import openvino.opset13 as ops

    rng = np.random.default_rng(0)
    latent = ops.parameter([1, 4, 8, 8], np.float32, name="sample")
    conv = ops.convolution(latent, ops.constant(rng.normal(0, 0.3, (8, 4, 3, 3)).astype(np.float32)),
                           [1, 1], [1, 1], [1, 1], [1, 1])
    tokens = ops.transpose(ops.reshape(conv, ops.constant(np.array([1, 8, 64], np.int64)), False),
                           ops.constant(np.array([0, 2, 1], np.int64)))
    out = ops.matmul(tokens, ops.constant(rng.normal(0, 0.35, (8, 16)).astype(np.float32)), False, False)
    return ov.Model([out], [latent], "unet_like")


def _placement(model):
    """Per op type of interest: (activation through a FakeQuantize?, weight stored as an 8-bit constant?)."""
    found = {}
    for op in model.get_ordered_ops():
        if op.get_type_name() not in ("Convolution", "MatMul"):
            continue
        source = op.input_value(0).get_node()
        while source.get_type_name() in ("Reshape", "Transpose"):  # NNCF places a quantizer above layout ops
            source = source.input_value(0).get_node()
        activation = source.get_type_name() == "FakeQuantize"
        node, weight_int8 = op.input_value(1).get_node(), False
        for _ in range(6):  # weight ← [Convert ←] Multiply ← [Subtract ←] Convert ← u8/i8 Constant (NNCF compressed), or ← f32 Constant
            if node.get_type_name() == "Constant":
                weight_int8 = node.get_element_type().get_type_name() in ("u8", "i8")
                break
            node = node.input_value(0).get_node()
        found[op.get_type_name()] = (activation, weight_int8)
    return found


def _run(model, feed):
    import openvino as ov

    return ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"}).create_infer_request().infer(feed)[0]


@pytest.mark.parametrize("scheme, want", [
    ("matmul", {"Convolution": False, "MatMul": True}),   # int8 activations on convolutions cost ~9 dB: float
    ("full", {"Convolution": True, "MatMul": True}),
    ("hybrid", {"Convolution": True, "MatMul": False}),   # MatMul weights only, convolutions static
])
def test_each_unet_scheme_puts_int8_where_it_says(scheme, want):
    rng = np.random.default_rng(1)
    feeds = [{"sample": rng.normal(0, 1, (1, 4, 8, 8)).astype(np.float32)} for _ in range(4)]
    model = _unet_like()
    reference = _run(model, feeds[0])
    quantized = quantize_unet(model, feeds, scheme=scheme)
    placement = _placement(quantized)
    assert {op: activation for op, (activation, _) in placement.items()} == want
    if scheme == "hybrid":
        assert placement["MatMul"][1], "hybrid stores the MatMul weights as 8-bit constants"
    got = _run(quantized, feeds[0])
    assert not np.array_equal(got, reference)  # something was quantized ...
    cosine = float((got * reference).sum() / np.linalg.norm(got) / np.linalg.norm(reference))
    assert cosine > 0.99  # ... and the graph still computes the same thing


def test_an_unknown_unet_scheme_is_refused_naming_the_known_ones():
    rng = np.random.default_rng(1)
    feeds = [{"sample": rng.normal(0, 1, (1, 4, 8, 8)).astype(np.float32)}]
    with pytest.raises(BackendError, match="unknown UNet quantization scheme 'int4'; one of " + ", ".join(UNET_SCHEMES)):
        quantize_unet(_unet_like(), feeds, scheme="int4")
