"""OpenVINO static int8 by role: outlier channels of the FFN down-projections split off into a float
side path (exact in float), SmoothQuant kept off those projections, attention under bf16 in int8 only where
the calibration samples reach the target. The fixture BERT has one planted outlier channel per FFN, as real BERTs do."""

from __future__ import annotations

import numpy as np
import pytest

from optibridge import export, quantize
from optibridge.cli import main
from optibridge.hardware import detect_cpu, float_precisions
from optibridge.steps import CalibrationConfig, QuantizationConfig
from tiny_models import OUTLIER_CHANNEL, bert_feeds, build_outlier_bert

pytest.importorskip("nncf")
from optibridge_openvino import outliers  # noqa: E402  (the plugin needs NNCF for this module's tests)
from optibridge_openvino.roles import attention_nodes  # noqa: E402

@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    return export(build_outlier_bert(tmp_path_factory.mktemp("tiny") / "bert"), tmp_path_factory.mktemp("art") / "bert").artifact


def _run(model, feeds):
    import openvino as ov

    request = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"}).create_infer_request()
    names = {port.get_any_name() for port in model.inputs}
    return [np.concatenate([np.asarray(v).ravel() for v in request.infer({k: f[k] for k in names}).values()]) for f in feeds]


def test_the_split_finds_the_planted_channel_and_is_exact_in_float(bert):
    import openvino as ov

    original = ov.convert_model(str(bert.graph_path("model")))
    rewritten = original.clone()
    side, record = outliers.split_outlier_channels(rewritten, bert_feeds(6, seed=0))
    assert record["ffns"] == 2 and len(record["split"]) == 2 and len(side) == 2
    for found in record["split"].values():
        assert found["channels"] == [OUTLIER_CHANNEL] and found["range"] > outliers.OUTLIER_RATIO * found["rest_p99"]
    side_names = {op.get_friendly_name() for op in rewritten.get_ordered_ops()}
    assert set(side) <= side_names and all(name.startswith(outliers.SIDE_PATH_PREFIX) for name in side)
    unseen = bert_feeds(4, seed=1, length=9)  # other samples, another length
    for want, got in zip(_run(original, unseen), _run(rewritten, unseen)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_outlier_channels_are_few_and_far_above_the_rest():
    ranges = np.ones(200, dtype=np.float32)
    assert outliers.outlier_channels(ranges).size == 0
    ranges[[3, 50]] = [25.0, 3.0]
    assert outliers.outlier_channels(ranges).tolist() == [3]  # 3.0 is not 4x the 99th percentile
    ranges[:20] = 30.0  # a tenth of the channels: not outliers, a wide layer; left to SmoothQuant and validation
    assert outliers.outlier_channels(ranges).size == 0
    narrow = np.ones(24, dtype=np.float32)
    narrow[5] = 25.0  # in a narrow layer the outlier does not raise its own reference
    assert outliers.outlier_channels(narrow).tolist() == [5]
    assert outliers.outlier_channels(np.ones(10)).size == 0 and outliers.outlier_channels(np.zeros(0)).size == 0


def _fake_quantized_inputs(model, names):
    """For each named node, whether any of its inputs comes (through layout ops) from a FakeQuantize."""
    wanted = set(names)
    found = {}
    for op in model.get_ordered_ops():
        if op.get_friendly_name() not in wanted:
            continue
        def quantized(node, depth=3):
            kind = node.get_type_name()
            if kind == "FakeQuantize":
                return True
            return depth > 0 and kind in ("Reshape", "Transpose", "Convert") and quantized(node.input_value(0).get_node(), depth - 1)
        found[op.get_friendly_name()] = any(quantized(v.get_node()) for v in op.input_values())
    return found


def _quantize(bert, out, precision=None, split=None):
    config = QuantizationConfig(mode="static", calibration=CalibrationConfig(num_samples=8), inference_precision=precision,
                                split_outliers=split)
    result = quantize(bert.path, config, out, backend="openvino")
    import openvino as ov

    graph = ov.Core().read_model(result.artifact.path / result.artifact.metadata.graphs["model"].file)
    return result, graph


def test_the_static_plan_splits_quantizes_by_role_and_records_it(bert, tmp_path, capsys):
    result, graph = _quantize(bert, tmp_path / "f32")
    settings = result.step["settings"]
    assert len(settings["outlier_split"]["split"]) == 2 and settings["smooth_quant_skipped"] == 2
    assert settings["attention"] == "int8"  # under f32 int8 attention is the faster plan
    side = [op.get_friendly_name() for op in graph.get_ordered_ops() if op.get_friendly_name().startswith(outliers.SIDE_PATH_PREFIX)]
    downs = list(settings["outlier_split"]["split"])  # the FFN down-projections (in the saved graph FakeQuantize feeds them)
    side_downs = [n for n in side if n.endswith("/down")]
    assert len(side_downs) == 2  # one side path per split FFN survives into the saved graph
    quantized = _fake_quantized_inputs(graph, downs + side_downs + attention_nodes(graph))
    assert all(quantized[name] for name in downs)  # the down-projections themselves are int8
    assert not any(quantized[name] for name in side_downs)  # their outlier channels are not
    assert any(quantized[name] for name in attention_nodes(graph))
    assert any("outlier channel" in note for note in result.report["graphs"]["model"]["notes"])
    # The outlier is gone from the int8 path: all quantized already meets the default target on this model.
    assert settings["guided"]["kept_in_float"] == [] and settings["guided"]["validation"]["min_cosine"] >= 0.99
    assert main(["info", str(result.artifact.path)]) in (0, None)
    shown = capsys.readouterr().out
    assert "2 outlier channel(s) of 2 FFN down-projection(s) computed by a float side path" in shown
    assert f"channels [{OUTLIER_CHANNEL}]" in shown and "attention inputs int8" in shown


def test_no_split_outliers_leaves_the_plan_without_side_paths(bert, tmp_path):
    result, graph = _quantize(bert, tmp_path / "whole", split=False)
    settings = result.step["settings"]
    assert settings["outlier_split"] == {"split": {}, "off": "--no-split-outliers"} and "smooth_quant_skipped" not in settings
    assert not any(op.get_friendly_name().startswith(outliers.SIDE_PATH_PREFIX) for op in graph.get_ordered_ops())
    # The down-projections go through SmoothQuant with the rest; the guided step still checks the result.
    assert not any("quantized without SmoothQuant" in note for note in result.report["graphs"]["model"]["notes"])
    assert settings["guided"]["validation"]["min_cosine"] >= 0.99


def _quantize_bf16(bert, out, min_cosine):
    config = QuantizationConfig(mode="static", calibration=CalibrationConfig(num_samples=8), inference_precision="bf16",
                                min_cosine=min_cosine)
    result = quantize(bert.path, config, out, backend="openvino")
    import openvino as ov

    return result, ov.Core().read_model(result.artifact.path / result.artifact.metadata.graphs["model"].file)


needs_bf16 = pytest.mark.skipif("bf16" not in float_precisions(detect_cpu()), reason="this CPU computes no bf16 (the f32 plan is tested above)")


@needs_bf16
def test_under_bf16_int8_attention_stays_when_the_samples_reach_the_target(bert, tmp_path):
    result, graph = _quantize_bf16(bert, tmp_path / "bf16", min_cosine=0.5)
    settings = result.step["settings"]
    assert settings["attention"] == "int8" and settings["attention_check"]["int8"]["min_cosine"] >= 0.5
    attention = attention_nodes(graph)
    assert attention and any(_fake_quantized_inputs(graph, attention).values())
    assert any("attention in int8 under bf16" in note for note in result.report["graphs"]["model"]["notes"])


@needs_bf16
def test_under_bf16_the_attention_goes_float_when_int8_misses_the_target(bert, tmp_path, monkeypatch):
    from optibridge_openvino import guided

    real = guided.cosine_scorer

    def first_model_scores_low(float_model, feeds, precision):  # what an AMX Xeon measured for MiniLM: int8 Q/K at 0.93
        score, calls = real(float_model, feeds, precision), []

        def scored(model):
            calls.append(model)
            cosines = score(model)
            return cosines * 0.9 if len(calls) == 1 else cosines
        return scored

    monkeypatch.setattr(guided, "cosine_scorer", first_model_scores_low)
    result, graph = _quantize_bf16(bert, tmp_path / "bf16", min_cosine=0.95)
    settings = result.step["settings"]
    assert settings["attention"] == "float" and settings["attention_check"]["int8"]["min_cosine"] < 0.9
    attention = attention_nodes(graph)
    assert attention and not any(_fake_quantized_inputs(graph, attention).values())
    notes = result.report["graphs"]["model"]["notes"]
    assert any("attention inputs kept in float under bf16" in note for note in notes)
    # the second plan does not repeat the first's notes
    assert sum("outlier channel(s)" in note for note in notes) == 1
    assert sum("quantized without SmoothQuant" in note for note in notes) == 1


def test_the_attention_check_keeps_int8_only_at_the_target():
    from optibridge_openvino.quantize import _attention_by_validation

    for worst, expected in ((0.991, "int8"), (0.989, "float")):
        settings, notes = {}, []
        model, scored = _attention_by_validation("int8 plan", lambda: "float plan", lambda m: np.array([0.999, worst]), 0.99,
                                                 "bf16", settings, notes)
        assert settings["attention"] == expected and model == f"{expected} plan" and len(notes) == 1
        assert (scored is not None) == (expected == "int8")  # the guided step reuses the int8 plan's cosines
        assert settings["attention_check"]["int8"]["min_cosine"] == worst


@pytest.mark.parametrize("channels", [1, 3])
def test_the_side_down_projection_is_broadcast_multiplies_equal_to_the_product(channels):
    import openvino as ov
    import openvino.opset13 as ops

    rng = np.random.default_rng(channels)
    side_value = rng.standard_normal((2, 5, channels)).astype(np.float32)
    rows = rng.standard_normal((channels, 7)).astype(np.float32)
    side = ops.parameter([2, 5, channels], np.float32, name="side")
    total, names = outliers._outer_products(side, rows, "side/down")
    model = ov.Model([total], [side])
    kinds = {op.get_type_name() for op in model.get_ordered_ops()}
    assert "MatMul" not in kinds and len(names) == channels  # no GEMM call with an inner size of 1-3
    assert {op.get_friendly_name() for op in model.get_ordered_ops() if op.get_type_name() == "Multiply"} == set(names)
    got = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})({"side": side_value})[0]
    np.testing.assert_allclose(got, side_value @ rows, rtol=1e-6, atol=1e-6)
