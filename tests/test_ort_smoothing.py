"""SmoothQuant on ONNX graphs (plugins/optibridge_ort/smoothing.py): the float function is kept, and
the attention output's division is folded into the value projection where the head layout allows
it -- and only there (a layout that mixes channels is caught by the float check and gets a Mul)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from optibridge import export
from optibridge_ort import graphs
from optibridge_ort.quantize import gemm_to_matmul
from optibridge_ort.smoothing import smooth
from tiny_models import build_tiny_generative, build_tiny_model, plant_ffn_outliers

HIDDEN, HEADS, TOKENS = 8, 2, 5


def _run(model: onnx.ModelProto, feed, tmp_path) -> list[np.ndarray]:
    session = graphs.session_for(model, tmp_path)
    inputs = {i.name for i in session.get_inputs()}
    return session.run(None, {k: v for k, v in feed.items() if k in inputs})


def _smooth_muls(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    return [n for n in model.graph.node if n.op_type == "Mul" and n.name.endswith("_smooth")]


def _attention(merge_perm: list[int], bias: bool = True, v_also_output: bool = False) -> onnx.ModelProto:
    """x → V = x·Wv + bv → heads → softmax(scores)·V → merge with ``merge_perm`` → ·Wo. With
    (0, 2, 1, 3) the merge undoes the split (channel c of the output is channel c of V); with
    (0, 2, 3, 1) it interleaves heads and head dimensions, so the channels are permuted. Without
    ``bias`` V is the MatMul alone; with ``v_also_output`` V is a graph output too (read elsewhere)."""
    rng = np.random.default_rng(0)
    d = HIDDEN // HEADS
    inits = [
        numpy_helper.from_array(rng.normal(0, 0.4, (HIDDEN, HIDDEN)).astype(np.float32), "Wv"),
        numpy_helper.from_array(rng.normal(0, 0.4, HIDDEN).astype(np.float32), "bv"),
        numpy_helper.from_array(rng.normal(0, 0.4, (HIDDEN, HIDDEN)).astype(np.float32), "Wo"),
        numpy_helper.from_array(np.array([0, 0, HEADS, d], np.int64), "split_shape"),
        numpy_helper.from_array(np.array([0, 0, HIDDEN], np.int64), "merge_shape"),
    ]
    nodes = [
        helper.make_node("MatMul", ["x", "Wv"], ["v_mm" if bias else "v"], name="value/MatMul"),
        *([helper.make_node("Add", ["bv", "v_mm"], ["v"], name="value/Add")] if bias else []),
        helper.make_node("Reshape", ["v", "split_shape"], ["v_heads"], name="split"),
        helper.make_node("Transpose", ["v_heads"], ["v_t"], perm=[0, 2, 1, 3], name="split_t"),
        helper.make_node("Softmax", ["scores"], ["probs"], axis=-1, name="softmax"),
        helper.make_node("MatMul", ["probs", "v_t"], ["context"], name="mix"),
        helper.make_node("Transpose", ["context"], ["context_t"], perm=merge_perm, name="merge_t"),
        helper.make_node("Reshape", ["context_t", "merge_shape"], ["merged"], name="merge"),
        helper.make_node("MatMul", ["merged", "Wo"], ["out"], name="output/MatMul"),
    ]
    graph = helper.make_graph(
        nodes, "attention",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, TOKENS, HIDDEN]),
         helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, HEADS, TOKENS, TOKENS])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, TOKENS, HIDDEN]),
         *([helper.make_tensor_value_info("v", TensorProto.FLOAT, [1, TOKENS, HIDDEN])] if v_also_output else [])],
        [t for t in inits if bias or t.name != "bv"])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _feeds(count: int, seed: int):
    rng = np.random.default_rng(seed)
    spread = 1.0 + 10.0 * np.arange(HIDDEN, dtype=np.float32)  # channels of very different ranges: scales differ
    return [{"x": (rng.normal(0, 1, (1, TOKENS, HIDDEN)) * spread).astype(np.float32),
             "scores": rng.normal(0, 1, (1, HEADS, TOKENS, TOKENS)).astype(np.float32)} for _ in range(count)]


@pytest.mark.parametrize("merge_perm, folded", [([0, 2, 1, 3], True), ([0, 2, 3, 1], False)])
def test_the_attention_output_division_folds_into_v_only_when_the_heads_merge_back(merge_perm, folded, tmp_path):
    model = _attention(merge_perm)
    feeds = _feeds(4, seed=0)
    unseen = _feeds(1, seed=1)[0]
    want = _run(model, unseen, tmp_path)[0]
    assert smooth(model, feeds, 0.7, tmp_path, outlier_ratio=0) == 2  # Wv and Wo rescaled either way (every activation smoothed)
    muls = _smooth_muls(model)
    readers = {n.name: list(n.input) for n in model.graph.node}
    assert len(muls) == (1 if folded else 2)  # x always needs its Mul (a graph input has no producer to fold into)
    assert (readers["output/MatMul"][0] == "merged") is folded
    weights = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    changed_v = not np.array_equal(weights["bv"], numpy_helper.to_array(_attention(merge_perm).graph.initializer[1]))
    assert changed_v is folded  # undone when the check failed
    onnx.checker.check_model(model)  # topologically sorted, every input produced
    np.testing.assert_allclose(_run(model, unseen, tmp_path)[0], want, rtol=1e-4, atol=1e-4 * float(np.abs(want).max()))


@pytest.mark.parametrize("bias, v_also_output, folded", [(False, False, True), (True, True, False)])
def test_the_fold_needs_a_private_value_projection_with_or_without_bias(bias, v_also_output, folded, tmp_path):
    model = _attention([0, 2, 1, 3], bias=bias, v_also_output=v_also_output)
    unseen = _feeds(1, seed=1)[0]
    want = _run(model, unseen, tmp_path)
    smooth(model, _feeds(4, seed=0), 0.7, tmp_path, outlier_ratio=0)
    readers = {n.name: list(n.input) for n in model.graph.node}
    assert (readers["output/MatMul"][0] == "merged") is folded  # V read elsewhere: scaling it would change that reader
    onnx.checker.check_model(model)
    for got, expected in zip(_run(model, unseen, tmp_path), want):
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * float(np.abs(expected).max()))


def test_an_activation_without_outlier_channels_is_not_smoothed(tmp_path):
    """Flat channel ranges: nothing to move, so no division and no rescaled weight; an outlier channel: smoothed."""
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.normal(0, 0.4, (HIDDEN, HIDDEN)).astype(np.float32), "W")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"], name="linear")], "linear",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, TOKENS, HIDDEN])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, TOKENS, HIDDEN])], [weight])
    flat = [{"x": rng.normal(0, 1, (1, TOKENS, HIDDEN)).astype(np.float32)} for _ in range(4)]
    outlier = [{"x": feed["x"] * np.where(np.arange(HIDDEN) == 3, 20.0, 1.0).astype(np.float32)} for feed in flat]
    for feeds, smoothed in ((flat, 0), (outlier, 1)):
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        want = _run(model, outlier[0], tmp_path)[0]
        assert smooth(model, feeds, 0.7, tmp_path) == smoothed
        assert len(_smooth_muls(model)) == smoothed
        np.testing.assert_allclose(_run(model, outlier[0], tmp_path)[0], want, rtol=1e-4, atol=1e-4 * float(np.abs(want).max()))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    assert smooth(model, flat, 0.7, tmp_path, outlier_ratio=0) == 1  # asked to smooth every activation


def test_smoothing_a_bert_export_folds_every_layer_and_keeps_its_function(tmp_path):
    folder = build_tiny_model("bert", "feature-extraction", tmp_path / "bert")
    # Trained-like weights and biases: with the all-zero biases of a fresh model the exporter stores one
    # shared zero vector for all of them, and a shared bias is not folded (a Mul is used instead).
    plant_ffn_outliers(folder, slice(3, 4), 8.0, seed=1, bias_std=0.1)
    artifact = export(folder, tmp_path / "art").artifact
    model = onnx.load(str(artifact.graph_path("model")))
    rng = np.random.default_rng(0)
    feeds = [{"input_ids": rng.integers(5, 90, (1, 9)).astype(np.int64), "attention_mask": np.ones((1, 9), np.int64),
              "token_type_ids": np.zeros((1, 9), np.int64)} for _ in range(3)]
    want = _run(model, feeds[0], tmp_path)
    layers = sum(1 for n in model.graph.node if n.op_type == "Softmax")
    assert layers >= 2
    smooth(model, feeds, 0.7, tmp_path, outlier_ratio=0)  # the fold is what is tested: smooth every activation
    output_projections = [n for n in model.graph.node if n.op_type == "MatMul" and "attention/output/dense" in n.name]
    assert len(output_projections) == layers
    assert not any(p.input[0].endswith("_smoothed") for p in output_projections)  # read the attention output itself
    assert len(_smooth_muls(model)) > 0  # the normalization- and GELU-fed linears still divide with a Mul
    onnx.checker.check_model(model)
    for got, expected in zip(_run(model, feeds[0], tmp_path), want):
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * float(np.abs(expected).max()))


def _normalized_linear(producer: str, residual: bool) -> onnx.ModelProto:
    """x → a normalization with a per-channel scale (and bias) → ·W (and, with ``residual``, + itself:
    a post-LN residual also reads it). ``producer``: the ONNX ``LayerNormalization``, a decomposed
    RMS norm's weight ``Mul``, or a decomposed LayerNorm's ``Mul`` + ``Add``."""
    rng = np.random.default_rng(0)
    gamma = np.where(np.arange(HIDDEN) == 3, 20.0, 1.0).astype(np.float32)  # an outlier channel, as trained models have
    inits = [numpy_helper.from_array(gamma, "gamma"), numpy_helper.from_array(rng.normal(0, 0.3, HIDDEN).astype(np.float32), "beta"),
             numpy_helper.from_array(rng.normal(0, 0.4, (HIDDEN, HIDDEN)).astype(np.float32), "W")]
    nodes = {
        "layernorm": [helper.make_node("LayerNormalization", ["x", "gamma", "beta"], ["h"], axis=-1, name="norm")],
        "rms_mul": [helper.make_node("Mul", ["gamma", "x"], ["h"], name="norm/weight")],
        "mul_add": [helper.make_node("Mul", ["x", "gamma"], ["xg"], name="norm/weight"),
                    helper.make_node("Add", ["xg", "beta"], ["h"], name="norm/bias")],
    }[producer]
    nodes.append(helper.make_node("MatMul", ["h", "W"], ["y"], name="linear"))
    if residual:
        nodes.append(helper.make_node("Add", ["y", "h"], ["out"], name="residual"))
    graph = helper.make_graph(nodes, "normalized", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, TOKENS, HIDDEN])],
                              [helper.make_tensor_value_info("out" if residual else "y", TensorProto.FLOAT, [1, TOKENS, HIDDEN])],
                              [t for t in inits if producer != "rms_mul" or t.name != "beta"])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("producer", ["layernorm", "rms_mul", "mul_add"])
@pytest.mark.parametrize("residual", [False, True])
def test_the_division_folds_into_a_normalization_read_by_the_smoothed_linears_only(producer, residual, tmp_path):
    model = _normalized_linear(producer, residual)
    feeds = _feeds(4, seed=0)
    unseen = _feeds(1, seed=1)[0]
    want = _run(model, unseen, tmp_path)[0]
    assert smooth(model, feeds, 0.7, tmp_path) == 1  # the outlier channel is moved into W either way
    folded = not residual  # pre-LN: only the linears read the normalization; post-LN: the residual reads it too
    assert len(_smooth_muls(model)) == (0 if folded else 1)
    gamma = next(numpy_helper.to_array(t) for t in model.graph.initializer if t.name == "gamma")
    assert bool(gamma[3] < 20.0) is folded  # the outlier channel's scale is divided down in place of a Mul
    onnx.checker.check_model(model)
    np.testing.assert_allclose(_run(model, unseen, tmp_path)[0], want, rtol=1e-4, atol=1e-4 * float(np.abs(want).max()))


@pytest.mark.parametrize("model_type", ["gpt2", "llama"])
def test_a_pre_ln_decoder_smooths_without_a_single_mul_on_its_normalizations(model_type, tmp_path):
    """Pre-LN blocks (GPT-2's LayerNorm, Llama's decomposed RMS norm): the normalization output feeds the
    projections alone, so every division folds into its scale; the function is unchanged."""
    from transformers import AutoModelForCausalLM

    folder = build_tiny_generative(model_type, tmp_path / "src")
    model = AutoModelForCausalLM.from_pretrained(folder)
    torch.manual_seed(1)
    with torch.no_grad():  # trained decoders have distinct norm scales, with outlier channels
        for module in model.modules():
            if "norm" in type(module).__name__.lower() and getattr(module, "weight", None) is not None:
                module.weight.normal_(1.0, 0.1)
                module.weight[5] *= 25.0
                if getattr(module, "bias", None) is not None:
                    module.bias.normal_(0.0, 0.1)
    model.save_pretrained(folder)
    artifact = export(folder, tmp_path / "art", task="text-generation", atol=1e-3).artifact  # larger logits, same relative error
    graph = onnx.load(str(artifact.graph_path("model")))
    feed_names = {i.name for i in graph.graph.input}
    rng = np.random.default_rng(0)
    feeds = [{name: value for name, value in {
        "input_ids": rng.integers(5, 90, (1, 7)).astype(np.int64), "attention_mask": np.ones((1, 7), np.int64),
        "position_ids": np.arange(7, dtype=np.int64)[None]}.items() if name in feed_names} for _ in range(3)]
    for value in graph.graph.input:  # an empty KV cache
        if value.name.startswith("past_key_values"):
            dims = [d.dim_value or (1 if i == 0 else 0) for i, d in enumerate(value.type.tensor_type.shape.dim)]
            for feed in feeds:
                feed[value.name] = np.zeros(dims, np.float32)
    want = _run(graph, feeds[0], tmp_path)
    gemm_to_matmul(graph)
    normalized = _normalization_outputs(graph)
    assert len(normalized) >= 4  # two per block, and the final one
    smoothed = smooth(graph, feeds, 0.7, tmp_path)
    assert smoothed >= 6  # the planted channels are found and moved in every block (q, k, v read one activation)
    divided = {_through_reshape(graph, mul.input[0]) for mul in _smooth_muls(graph)}
    assert not divided & normalized  # what a Mul still divides comes from elsewhere (GPT-2's fused QKV attention)
    if model_type == "llama":  # its gated FFNs divide the up-projection instead of the product
        constants = {t.name for t in graph.graph.initializer}
        products = {n.output[0] for n in graph.graph.node if n.op_type == "Mul" and not set(n.input) & constants}
        assert len(products & {n.input[0] for n in graph.graph.node if n.op_type == "MatMul"}) >= 2 and not divided & products
    scales = [t for t in graph.graph.initializer if "norm" in t.name or "ln_" in t.name]
    assert any(numpy_helper.to_array(t).max() < 25.0 * 0.9 for t in scales)  # the planted scales were divided down instead
    onnx.checker.check_model(graph)
    for got, expected in zip(_run(graph, feeds[0], tmp_path), want):
        np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-3 * float(np.abs(expected).max()))


def _through_reshape(model: onnx.ModelProto, name: str) -> str:
    producer = {out: node for node in model.graph.node for out in node.output}.get(name)
    return producer.input[0] if producer is not None and producer.op_type == "Reshape" else name


def _normalization_outputs(model: onnx.ModelProto) -> set[str]:
    """LayerNormalization outputs, and the outputs of a decomposed RMS norm's weight Mul (its constant is a norm's weight)."""
    constants = {t.name for t in model.graph.initializer}
    return {n.output[0] for n in model.graph.node
            if n.op_type == "LayerNormalization" or (n.op_type == "Mul" and any(i in constants and "norm" in i for i in n.input))}


@pytest.mark.parametrize("up_bias", [False, True])
def test_a_gated_ffn_divides_its_up_projection_instead_of_the_product(up_bias, tmp_path):
    """down(silu(x·Wg) * (x·Wu + bu)): channel c of the product scales with channel c of up, so the
    division of the down-projection's input folds into Wu's columns (and bu); exact, no Mul."""
    rng = np.random.default_rng(0)
    inner = 3 * HIDDEN
    w_up = rng.normal(0, 0.4, (HIDDEN, inner)).astype(np.float32)
    w_up[:, 4] *= 30.0  # an outlier channel of the product, as trained gated FFNs have
    inits = [numpy_helper.from_array(rng.normal(0, 0.4, (HIDDEN, inner)).astype(np.float32), "Wg"), numpy_helper.from_array(w_up, "Wu"),
             numpy_helper.from_array(rng.normal(0, 0.3, inner).astype(np.float32), "bu"),
             numpy_helper.from_array(rng.normal(0, 0.4, (inner, HIDDEN)).astype(np.float32), "Wd")]
    nodes = [helper.make_node("MatMul", ["x", "Wg"], ["g"], name="gate"),
             helper.make_node("Sigmoid", ["g"], ["sg"], name="sigmoid"),
             helper.make_node("Mul", ["g", "sg"], ["silu"], name="silu"),
             helper.make_node("MatMul", ["x", "Wu"], ["up_mm" if up_bias else "up"], name="up"),
             *([helper.make_node("Add", ["up_mm", "bu"], ["up"], name="up_bias")] if up_bias else []),
             helper.make_node("Mul", ["silu", "up"], ["h"], name="product"),
             helper.make_node("MatMul", ["h", "Wd"], ["y"], name="down")]
    graph = helper.make_graph(nodes, "gated", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, TOKENS, HIDDEN])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, TOKENS, HIDDEN])],
                              [t for t in inits if up_bias or t.name != "bu"])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    feeds, unseen = [{"x": f["x"] / 10.0} for f in _feeds(4, seed=0)], {"x": _feeds(1, seed=1)[0]["x"] / 10.0}
    want = _run(model, unseen, tmp_path)[0]
    smooth(model, feeds, 0.7, tmp_path, exclude=("gate", "up"))  # the down-projection's input alone
    assert _smooth_muls(model) == []
    assert {n.name: list(n.input) for n in model.graph.node}["down"][0] == "h"
    weights = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    assert np.abs(weights["Wu"][:, 4]).max() < np.abs(w_up[:, 4]).max() / 2  # the outlier channel is divided down in up
    onnx.checker.check_model(model)
    np.testing.assert_allclose(_run(model, unseen, tmp_path)[0], want, rtol=1e-4, atol=1e-4 * float(np.abs(want).max()))
