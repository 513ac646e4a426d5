"""`optibridge bench` and `tune` end to end on the tiny BERT: real subprocess cells, fake backends
that crash (SIGSEGV), hang, run slow or break accuracy (tests/bench_fake_plugins.py, loaded in the
cell processes through OPTIBRIDGE_PLUGINS). No assertion on timing values beyond sanity."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable, Iterator

import pytest

from optibridge.artifact import Artifact
from optibridge.backends import PLUGINS_ENV, reset_registry
from optibridge.bench import BenchRun, load_run
from optibridge.cli import main

TESTS = Path(__file__).parent


@pytest.fixture
def fake_plugins(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv(PLUGINS_ENV, "bench_fake_plugins")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])))
    monkeypatch.syspath_prepend(str(TESTS))
    reset_registry()
    yield
    reset_registry()


@pytest.fixture
def tiny_bert(exported: Callable[..., Artifact]) -> Artifact:
    return exported("bert", "feature-extraction")


def test_crash_and_hang_are_failed_cells_while_the_run_completes(tiny_bert: Artifact, fake_plugins: None, tmp_path: Path) -> None:
    out = tmp_path / "bench"
    code = main(["bench", "--model", str(tiny_bert.path), "--backends", "ort,fake-crash,fake-hang", "--configs", "fp32",
                 "--batch-sizes", "1,2", "--seq-lens", "16", "--warmup", "1", "--runs", "5", "--timeout", "8",
                 "--no-progress", "--out", str(out)])
    assert code == 0
    run = load_run(out / "results.json")
    cells = {(c.name, c.batch_size): c for c in run.cells}
    assert len(run.cells) == 8  # pytorch, ort, fake-crash, fake-hang × 2 batch sizes: none dropped
    for batch in (1, 2):
        crash, hang = cells[("fake-crash:fp32", batch)], cells[("fake-hang:fp32", batch)]
        assert crash.status == "failed" and "SIGSEGV" in crash.reason
        assert hang.status == "failed" and "timed out" in hang.reason
        base, ort = cells[("pytorch:eager", batch)], cells[("ort:fp32", batch)]
        assert base.ok and ort.ok, (base.reason, ort.reason)
        for measured in (base, ort):
            assert 0 < measured.latency.min_ms <= measured.latency.p50_ms <= measured.latency.p99_ms
            assert measured.load_s > 0 and measured.peak_rss_mb > 0 and measured.size_mb > 0
        assert ort.baseline is not None and ort.speedup == pytest.approx(ort.baseline.p50_ms / ort.latency.p50_ms)
        assert ort.accuracy.cosine > 0.9999 and ort.accuracy.max_abs_diff < 1e-3
        assert ort.settings["intra_op_num_threads"] == ort.settings["threads"]
    assert run.machine["fingerprint"] and run.machine["cores"] >= 1 and "torch" in run.machine["libraries"]
    assert (out / "chart.png").stat().st_size > 0 and "ort:fp32" in (out / "report.md").read_text()


def test_tune_writes_the_fastest_artifact_within_the_budget(tiny_bert: Artifact, fake_plugins: None, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "tuned"
    code = main(["tune", "--model", str(tiny_bert.path), "--accuracy-budget", "0.99", "--backends", "fake-fast,fake-slow,fake-wrong",
                 "--configs", "fp32", "--batch-size", "1", "--seq-len", "16", "--warmup", "1", "--runs", "5", "--no-progress", str(out)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    step = Artifact.load(out).metadata.steps[-1]
    assert step["step"] == "tune" and step["backend"] == "fake-fast" and step["config"] == "fp32"
    verdicts = {t["candidate"]: t["verdict"] for t in step["tried"]}
    assert verdicts["fake-wrong:fp32"].startswith("rejected: accuracy")
    assert verdicts["fake-slow:fp32"].startswith("slower")
    assert "rejected: accuracy" in printed and "chosen" in printed
    assert json.loads((out / "optibridge.json").read_text())["steps"][-1]["accuracy_budget"]["min_cosine"] == 0.99


def bench_ort_fp32(artifact: Artifact, out: Path, batch: int) -> BenchRun:
    """A small real run of ORT fp32 against PyTorch at one shape (8 tokens); the exit code must be 0."""
    code = main(["bench", "--model", str(artifact.path), "--backends", "ort", "--configs", "fp32", "--batch-sizes", str(batch),
                 "--seq-lens", "8", "--warmup", "1", "--runs", "3", "--no-progress", "--out", str(out)])
    assert code == 0
    return load_run(out / "results.json")


def test_a_decoder_lm_reports_prefill_decode_and_tokens_per_second(exported_generative: Callable[..., Artifact], tmp_path: Path) -> None:
    run = bench_ort_fp32(exported_generative("gpt2"), tmp_path / "bench", batch=1)
    assert run.model["generative"] is True
    cells = {c.name: c for c in run.cells}
    base, ort = cells["pytorch:eager"], cells["ort:fp32"]
    assert base.ok and ort.ok, (base.reason, ort.reason)
    for measured in (base.generation, ort.generation, ort.baseline_generation):
        assert measured is not None and measured.new_tokens > 1
        assert measured.prefill_ms > 0 and measured.decode_ms_per_token > 0 and measured.tokens_per_s > 0
    assert ort.accuracy.top1 == 1.0  # the same logits' argmax as PyTorch on every position


def test_f16_weights_is_measured_on_a_decoder_like_any_config(exported_generative: Callable[..., Artifact], tmp_path: Path) -> None:
    """The OpenVINO mode no built-in config names becomes a bench candidate (so tune can pick it) and runs."""
    code = main(["bench", "--model", str(exported_generative("gpt2").path), "--backends", "openvino", "--configs", "fp32,f16-weights",
                 "--batch-sizes", "1", "--seq-lens", "8", "--warmup", "1", "--runs", "3", "--no-progress", "--out", str(tmp_path / "b")])
    assert code == 0
    cells = {c.name: c for c in load_run(tmp_path / "b" / "results.json").cells}
    fp32, f16w = cells["openvino:fp32"], cells["openvino:f16-weights"]
    assert fp32.ok and f16w.ok, (fp32.reason, f16w.reason)
    assert f16w.generation is not None and f16w.generation.tokens_per_s > 0
    assert f16w.accuracy.max_abs_diff > fp32.accuracy.max_abs_diff  # the weights were rounded ...
    assert f16w.accuracy.cosine > 0.9999 and f16w.accuracy.top1 == 1.0  # ... and the sums kept in float32


def test_a_seq2seq_lm_is_measured_like_a_decoder(exported_generative: Callable[..., Artifact], tmp_path: Path) -> None:
    run = bench_ort_fp32(exported_generative("t5"), tmp_path / "bench", batch=2)
    assert run.model["task"] == "text2text-generation" and run.model["generative"] is True
    ort = {c.name: c for c in run.cells}["ort:fp32"]
    assert ort.ok, ort.reason
    assert ort.generation is not None and ort.generation.tokens_per_s > 0 and ort.generation.prefill_ms > 0
    assert ort.accuracy.top1 == 1.0 and ort.accuracy.max_abs_diff < 1e-3  # encoder + first decoder step = PyTorch's


def test_a_speech_model_is_measured_on_the_encoders_fixed_input_length(exported_generative: Callable[..., Artifact], tmp_path: Path) -> None:
    artifact = exported_generative("whisper")
    frames = artifact.metadata.graphs["encoder"].inputs[0].shape[2]
    run = bench_ort_fp32(artifact, tmp_path / "bench", batch=2)  # asks for 8 tokens: not a length a Whisper encoder takes
    assert run.model["task"] == "automatic-speech-recognition" and run.model["generative"] is True
    assert run.settings["seq_lens"] == [frames] and {c.seq_len for c in run.cells} == {frames}
    cells = {c.name: c for c in run.cells}
    base, ort = cells["pytorch:eager"], cells["ort:fp32"]
    assert base.ok and ort.ok, (base.reason, ort.reason)
    assert ort.generation is not None and ort.generation.tokens_per_s > 0 and ort.generation.prefill_ms > 0
    assert ort.accuracy.top1 == 1.0 and ort.accuracy.max_abs_diff < 1e-3  # encoder + first decoder step = PyTorch's


def test_an_image_model_is_measured_once_per_batch_size_at_its_image_size(exported: Callable[..., Artifact], tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """Sequence lengths mean nothing to an image model: one shape per batch size (not one per --seq-lens
    entry, each the same measurement), and the table says batch × height × width."""
    artifact = exported("vit", "image-classification")
    height, width = artifact.metadata.extra["image_size"]["validated"]  # the model's own: PyTorch runs ViT there without interpolation
    code = main(["bench", "--model", str(artifact.path), "--backends", "ort", "--configs", "fp32", "--batch-sizes", "2",
                 "--seq-lens", "8,16", "--warmup", "1", "--runs", "3", "--no-progress", "--out", str(tmp_path / "bench")])
    assert code == 0
    run = load_run(tmp_path / "bench" / "results.json")
    assert run.model["image_size"] == [height, width] and len(run.cells) == 2  # PyTorch and ORT, one shape
    assert all(c.ok for c in run.cells), [c.reason for c in run.cells]
    assert f"2×{height}×{width}" in capsys.readouterr().out
