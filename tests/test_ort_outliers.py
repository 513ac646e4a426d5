"""ONNX Runtime dynamic int8 by role: the few outlier channels of FFN down-projection inputs go to a
float side path (plugins/optibridge_ort/outliers.py; exact in float), SmoothQuant stays off the
split projections, and weight zero points are written as scalars (zero_points.py). The fixture BERT
has one planted outlier channel per FFN, as real BERTs do."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from optibridge import export, quantize
from optibridge.bench.configs import all_configs
from optibridge.cli import main
from optibridge.steps import QuantizationConfig
from optibridge_ort import graphs, outliers
from optibridge_ort.zero_points import scalar_zero_points
from tiny_models import OUTLIER_CHANNEL, bert_feeds, build_outlier_bert, build_tiny_model, plant_ffn_outliers

@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    return export(build_outlier_bert(tmp_path_factory.mktemp("tiny") / "bert"), tmp_path_factory.mktemp("art") / "bert").artifact


def _run(model, feeds, tmp_path):
    session = graphs.session_for(model, tmp_path)
    names = {i.name for i in session.get_inputs()}
    return [np.concatenate([np.asarray(v).ravel() for v in session.run(None, {k: f[k] for k in names})]) for f in feeds]


def test_the_split_finds_the_planted_channel_and_is_exact_in_float(bert, tmp_path):
    original = graphs.load(bert.graph_path("model"))
    rewritten = onnx.ModelProto()
    rewritten.CopyFrom(original)
    side, downs, record = outliers.split_outlier_channels(rewritten, bert_feeds(6, seed=0), tmp_path)
    assert record["ffns"] == 2 and len(record["split"]) == 2 and len(side) == 4 and sorted(downs) == sorted(record["split"])
    for found in record["split"].values():
        assert found["channels"] == [OUTLIER_CHANNEL] and found["range"] > outliers.SPLIT_RATIO * found["rest_p99"]
    names = {node.name for node in rewritten.graph.node}
    assert set(side) <= names and all(name.startswith(outliers.SIDE_PATH_PREFIX) for name in side)
    inits = {t.name: numpy_helper.to_array(t) for t in rewritten.graph.initializer}
    for ffn in outliers.plain_ffns(rewritten):  # the main path no longer computes the channel
        if ffn.down.name in downs:
            assert ffn.bias is not None and ffn.bias.input.endswith("b_up_main")
            assert not inits[ffn.up.input[1]][:, OUTLIER_CHANNEL].any() and not inits[ffn.bias.input][OUTLIER_CHANNEL]
    unseen = bert_feeds(4, seed=1, length=9)  # other samples, another length
    for want, got in zip(_run(original, unseen, tmp_path), _run(rewritten, unseen, tmp_path)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_a_split_that_changes_the_function_is_undone(bert, tmp_path, monkeypatch):
    model = graphs.load(bert.graph_path("model"))
    before = model.SerializeToString()
    monkeypatch.setattr(outliers, "same_function", lambda *args: False)  # as if the pattern had been misread
    side, downs, record = outliers.split_outlier_channels(model, bert_feeds(6, seed=0), tmp_path)
    assert (side, downs, record["split"]) == ([], [], {}) and "did not compute" in record["undone"]
    assert model.SerializeToString() == before


def test_an_ffn_without_outliers_is_left_as_it_is(tmp_path_factory, tmp_path):
    folder = build_tiny_model("bert", "feature-extraction", tmp_path_factory.mktemp("plain") / "bert")
    plant_ffn_outliers(folder, slice(0, 0), 1.0, seed=3)  # the same N(0, 1/fan_in) weights, no channel raised
    model = graphs.load(export(folder, tmp_path_factory.mktemp("plain-art") / "bert").artifact.graph_path("model"))
    before = model.SerializeToString()
    side, downs, record = outliers.split_outlier_channels(model, bert_feeds(6, seed=0), tmp_path)
    assert record["ffns"] == 2 and (side, downs, record["split"]) == ([], [], {})
    assert model.SerializeToString() == before


def _ffn(gelu_readers: int = 1, output_is_sum: bool = False) -> onnx.ModelProto:
    """x -> MatMul -> Add(b) -> Gelu -> MatMul -> Add(b2) -> y, with an optional second Gelu reader."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)
             for name, shape in (("w_up", (4, 32)), ("b_up", (32,)), ("w_down", (32, 4)), ("b_down", (4,)))]
    nodes = [helper.make_node("MatMul", ["x", "w_up"], ["u"], name="up"),
             helper.make_node("Add", ["u", "b_up"], ["ub"], name="up_bias"),
             helper.make_node("Gelu", ["ub"], ["g"], name="gelu"),
             helper.make_node("MatMul", ["g", "w_down"], ["d"], name="down"),
             helper.make_node("Add", ["d", "b_down"], ["y" if output_is_sum else "db"], name="down_bias")]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    if not output_is_sum:
        nodes.append(helper.make_node("Relu", ["db"], ["y"], name="after"))
    if gelu_readers == 2:
        nodes.append(helper.make_node("Identity", ["g"], ["g_copy"], name="second_reader"))
        outputs.append(helper.make_tensor_value_info("g_copy", TensorProto.FLOAT, None))
    graph = helper.make_graph(nodes, "ffn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])], outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])


def test_only_private_plain_ffns_are_matched():
    assert [f.down.name for f in outliers.plain_ffns(_ffn())] == ["down"]
    assert outliers.plain_ffns(_ffn())[0].joins.name == "down_bias"  # the side path joins after the down-projection's bias
    assert outliers.plain_ffns(_ffn(gelu_readers=2)) == []  # the GELU output is read elsewhere: zeroing a channel would show
    assert outliers.plain_ffns(_ffn(output_is_sum=True)) == []  # the sum is the graph output: nothing to rewire


def test_scalar_zero_points_give_the_same_product(tmp_path):
    rng = np.random.default_rng(0)
    weight = rng.integers(-127, 128, (16, 8)).astype(np.int8)
    inits = [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(np.zeros(8, np.int8), "w_zp"),
             numpy_helper.from_array(np.array(3, np.uint8), "x_zp"),
             numpy_helper.from_array(np.full(8, 2, np.int8), "w2_zp")]  # a real per-column zero point: kept
    nodes = [helper.make_node("MatMulInteger", ["x", "w", "x_zp", "w_zp"], ["y"], name="symmetric"),
             helper.make_node("MatMulInteger", ["x", "w", "x_zp", "w2_zp"], ["y2"], name="asymmetric")]
    graph = helper.make_graph(nodes, "mmi", [helper.make_tensor_value_info("x", TensorProto.UINT8, [4, 16])],
                              [helper.make_tensor_value_info(n, TensorProto.INT32, None) for n in ("y", "y2")], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    feed = [{"x": rng.integers(0, 256, (4, 16)).astype(np.uint8)}]
    before = _run(model, feed, tmp_path)
    assert scalar_zero_points(model) == 1
    zero_points = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    assert zero_points[model.graph.node[0].input[3]].shape == () and "w_zp" not in zero_points
    assert model.graph.node[1].input[3] == "w2_zp"
    np.testing.assert_array_equal(_run(model, feed, tmp_path)[0], before[0])


def _cosines(reference, candidate, tmp_path):
    feeds = bert_feeds(12, seed=5, length=10)
    want, got = _run(reference, feeds, tmp_path), _run(candidate, feeds, tmp_path)
    return [float(w @ g / np.linalg.norm(w) / np.linalg.norm(g)) for w, g in zip(want, got)]


def test_dynamic_int8_splits_the_outliers_keeps_them_float_and_records_it(bert, tmp_path, capsys):
    result = quantize(bert.path, QuantizationConfig(mode="dynamic"), tmp_path / "int8")
    settings = result.step["settings"]
    assert sorted(settings["outlier_split"]["split"]) == sorted(f.down.name for f in outliers.plain_ffns(graphs.load(bert.graph_path("model"))))
    assert any("moved to a float side path" in note for note in result.report["graphs"]["model"]["notes"])
    graph = onnx.load(str(result.artifact.graph_path("model")))
    side = [n for n in graph.graph.node if n.name.startswith(outliers.SIDE_PATH_PREFIX) and n.op_type == "MatMul"]
    assert len(side) == 4  # the side path stays float
    assert settings["excluded_nodes"] == 0  # it is recorded with the split, not as an exclusion the config asked for
    inits = {t.name: t for t in graph.graph.initializer}
    integer = [n for n in graph.graph.node if n.op_type == "MatMulInteger"]
    assert len(integer) >= 8 and all(len(inits[n.input[3]].dims) == 0 for n in integer)  # scalar weight zero points
    assert min(_cosines(graphs.load(bert.graph_path("model")), graph, tmp_path)) > 0.99
    assert main(["info", str(result.artifact.path)]) in (0, None)
    assert "2 outlier channel(s) of 2 FFN down-projection(s) computed by a float side path" in capsys.readouterr().out


def test_the_split_runs_without_smoothquant_when_asked(bert, tmp_path):
    result = quantize(bert.path, QuantizationConfig(mode="dynamic", smooth=False, split_outliers=True), tmp_path / "split-only")
    settings = result.step["settings"]
    assert settings["smooth"] is False and len(settings["outlier_split"]["split"]) == 2
    graph = onnx.load(str(result.artifact.graph_path("model")))
    assert len([n for n in graph.graph.node if n.name.startswith(outliers.SIDE_PATH_PREFIX) and n.op_type == "MatMul"]) == 4
    assert not any(n.name.endswith("_smooth") for n in graph.graph.node)
    assert min(_cosines(graphs.load(bert.graph_path("model")), graph, tmp_path)) > 0.99


def test_no_split_outliers_turns_the_split_off_and_keeps_smoothquant(bert, tmp_path):
    result = quantize(bert.path, QuantizationConfig(mode="dynamic", split_outliers=False), tmp_path / "smooth-only")
    settings = result.step["settings"]
    assert "outlier_split" not in settings and settings["smooth"] is True
    graph = onnx.load(str(result.artifact.graph_path("model")))
    assert not any(n.name.startswith(outliers.SIDE_PATH_PREFIX) for n in graph.graph.node)
    assert any(n.name.endswith("_smooth") for n in graph.graph.node)


@pytest.mark.parametrize("split", [None, False, "bench"])
def test_no_smooth_alone_turns_the_split_off_too_and_reads_no_samples(split, bert, tmp_path, monkeypatch):
    import optibridge.steps.run as run

    def unexpected(*args, **kwargs):
        raise AssertionError("samples loaded although smoothing and the split are both off")

    monkeypatch.setattr(run, "load_calibration", unexpected)
    if split == "bench":  # the bench / tune candidate for it
        config = all_configs()["int8-dynamic-fast"].step_config()
    else:
        config = QuantizationConfig(mode="dynamic", smooth=False, split_outliers=split)
    result = quantize(bert.path, config, tmp_path / "plain")
    assert "outlier_split" not in result.step["settings"] and result.step["settings"]["smooth"] is False
    graph = onnx.load(str(result.artifact.graph_path("model")))
    assert not any(n.name.startswith(outliers.SIDE_PATH_PREFIX) or n.name.endswith("_smooth") for n in graph.graph.node)


def test_static_int8_says_it_does_not_split(bert, tmp_path):
    result = quantize(bert.path, QuantizationConfig(mode="static", split_outliers=True), tmp_path / "static")
    assert "outlier_split" not in result.step["settings"]
    assert any("--split-outliers applies to ONNX Runtime's dynamic int8" in note for note in result.report["graphs"]["model"]["notes"])
