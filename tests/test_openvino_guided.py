"""Accuracy-guided OpenVINO static int8: FFN down-projections go back to float only when the
calibration samples show the target missed, most harmful first; recorded and shown by `info`."""

from __future__ import annotations

import logging
import re

import numpy as np
import pytest

from optibridge import export, quantize
from optibridge.artifact import Artifact
from optibridge.cli import main
from optibridge.errors import BackendError
from optibridge.steps import CalibrationConfig, QuantizationConfig
from tiny_models import build_tiny_model, plant_ffn_outliers

pytest.importorskip("nncf")
from optibridge_openvino import guided  # noqa: E402  (the plugin needs NNCF for this module's tests)


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    """A tiny BERT feature extractor, weights redrawn N(0, 1/fan_in) so activations are O(1), exported once."""
    folder = build_tiny_model("bert", "feature-extraction", tmp_path_factory.mktemp("tiny") / "bert")
    # Outlier channels into each FFN down-projection, too many (10 of 37) for the side path of
    # test_openvino_outliers to take: only putting the projection back in float helps here.
    plant_ffn_outliers(folder, slice(0, 10), 300.0, seed=1)
    return export(folder, tmp_path_factory.mktemp("art") / "bert").artifact


def _static(bert, out, **options):
    calibration = CalibrationConfig(num_samples=8)  # also the validation samples; few keep the test cheap
    return quantize(bert.path, QuantizationConfig(mode="static", calibration=calibration, **options), out, backend="openvino")


def _fake_quantize_count(artifact):
    import openvino as ov

    graph = ov.Core().read_model(artifact.path / artifact.metadata.graphs["model"].file)
    return sum(op.get_type_name() == "FakeQuantize" for op in graph.get_ordered_ops())


def test_float_only_where_the_validation_misses_the_target(bert, tmp_path, capsys):
    loose = _static(bert, tmp_path / "loose", min_cosine=0.5)
    record = loose.step["settings"]["guided"]
    assert record["kept_in_float"] == [] and record["candidates"] == 2  # two layers, nothing needed in float
    assert record["validation"] == record["all_quantized"] and record["validation_samples"] > 0
    worst = record["all_quantized"]["min_cosine"]
    assert worst < 1.0
    with pytest.raises(BackendError, match=r"--min-cosine (\d\.\d+)") as caught:
        _static(bert, tmp_path / "impossible", min_cosine=1.0)
    best = float(re.search(r"reaches cosine (\d\.\d+)", str(caught.value)).group(1))  # every candidate in float
    assert best > worst, (best, worst)
    target = round((best + worst) / 2, 6)
    guided = _static(bert, tmp_path / "guided", min_cosine=target)
    record = guided.step["settings"]["guided"]
    assert 1 <= len(record["kept_in_float"]) <= 2 and record["validation"]["min_cosine"] >= target
    assert list(record["sensitivity"])[: len(record["kept_in_float"])] == record["kept_in_float"]
    assert _fake_quantize_count(guided.artifact) < _fake_quantize_count(loose.artifact)  # the kept ones lost their FakeQuantize
    recorded = Artifact.load(guided.artifact.path).metadata.steps[-1]["settings"]["guided"]
    assert recorded["kept_in_float"] == record["kept_in_float"]
    assert main(["info", str(guided.artifact.path)]) in (0, None)
    shown = capsys.readouterr().out
    assert "kept in float by validation" in shown and record["kept_in_float"][0] in shown


def test_fixed_choices_skip_the_validation(bert, tmp_path):
    settings = _static(bert, tmp_path / "keep", exclude_ffn_down=True).step["settings"]
    assert "guided" not in settings and settings["keep_ffn_down"] is True


def _scripted(cosines):
    """A scorer for models that are the tuple of bypassed names (see the monkeypatched bypass)."""
    calls = []

    def score(model):
        calls.append(model)
        return np.array(cosines[model])

    return score, calls


def test_put_back_in_order_of_sensitivity_until_the_target(monkeypatch):
    monkeypatch.setattr(guided, "bypass_quantization", lambda model, names: tuple(names))
    cosines = {(): [0.90, 0.99], ("a",): [0.91, 0.99], ("b",): [0.95, 0.99], ("c",): [0.93, 0.99],
               ("b", "c"): [0.975, 0.99], ("b", "c", "a"): [0.99, 0.99]}
    score, calls = _scripted(cosines)
    _, record = guided.keep_sensitive_in_float((), ["a", "b", "c"], score, 0.97)
    assert record["kept_in_float"] == ["b", "c"] and list(record["sensitivity"]) == ["b", "c", "a"]
    assert record["validation"]["min_cosine"] == 0.975 and ("b", "c", "a") not in calls
    score, calls = _scripted(cosines)
    _, record = guided.keep_sensitive_in_float((), ["a", "b", "c"], score, 0.9)
    assert record["kept_in_float"] == [] and calls == [()]  # met at once: no sensitivity runs
    with pytest.raises(BackendError, match=r"0\.99.* below the target 0\.995: lower it \(--min-cosine 0\.990\)"):
        guided.keep_sensitive_in_float((), ["a", "b", "c"], _scripted(cosines)[0], 0.995)


def test_a_target_outside_the_cosine_range_is_refused():
    from optibridge.errors import ConfigError

    with pytest.raises(ConfigError, match=r"min_cosine must be in \(0, 1\].*not 1.5"):
        QuantizationConfig(mode="static", min_cosine=1.5)
    assert QuantizationConfig.from_dict(QuantizationConfig(mode="static", min_cosine=0.97).to_dict()).min_cosine == 0.97


def test_an_unset_target_out_of_reach_keeps_the_most_accurate_model_and_says_so(monkeypatch):
    # The default target is a goal: on a CPU without VNNI MiniLM cannot reach it, and optimum-intel code
    # that only changed its import (OVQuantizer, OVQuantizationConfig()) must still get a model.
    monkeypatch.setattr(guided, "bypass_quantization", lambda model, names: tuple(names))
    cosines = {(): [0.90, 0.99], ("a",): [0.91, 0.99], ("b",): [0.95, 0.99], ("c",): [0.93, 0.99],
               ("b", "c"): [0.975, 0.99], ("b", "c", "a"): [0.98, 0.99]}
    model, record = guided.keep_sensitive_in_float((), ["a", "b", "c"], _scripted(cosines)[0], 0.995, required=False)
    assert model == ("b", "c", "a") and record["target_reached"] is False
    assert record["kept_in_float"] == ["b", "c", "a"] and record["validation"]["min_cosine"] == 0.98
    with pytest.raises(BackendError, match="below the target 0.995"):  # the same target, set by the user
        guided.keep_sensitive_in_float((), ["a", "b", "c"], _scripted(cosines)[0], 0.995)


def test_quantize_with_the_default_target_out_of_reach_writes_a_model_with_a_warning(bert, tmp_path, monkeypatch):
    monkeypatch.setattr(guided, "DEFAULT_MIN_COSINE", 1.0)  # unreachable on any CPU
    logged: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = logged.append  # type: ignore[method-assign]
    logging.getLogger("optibridge").addHandler(handler)
    try:
        result = _static(bert, tmp_path / "goal")
    finally:
        logging.getLogger("optibridge").removeHandler(handler)
    record = result.step["settings"]["guided"]
    assert record["target_reached"] is False and record["target_min_cosine"] == 1.0
    assert len(record["kept_in_float"]) == record["candidates"] == 2
    assert any("out of reach" in note for note in result.report["graphs"]["model"]["notes"])  # printed by the CLI
    assert any("out of reach" in record.getMessage() for record in logged)  # Python callers see it too
    assert Artifact.load(result.artifact.path).metadata.steps[-1]["settings"]["guided"]["target_reached"] is False
