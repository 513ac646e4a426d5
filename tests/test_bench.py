"""`optibridge bench` / `tune`: schema, planning, compare, hardware matrix, plugins from the environment, CLI help.

Pure-Python parts are tested on synthetic runs here; the subprocess runs (crash, hang, tune,
a small real bench) are in test_bench_runs.py.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from optibridge.accuracy import AccuracyBudget, AccuracyReport, OutputAccuracy
from optibridge.backend import BackendStatus
from optibridge.backends import PLUGINS_ENV, BackendRegistry
from optibridge.bench import SCHEMA_VERSION, BenchRun, Cell, load_run, save_run
from optibridge.bench.compare import compare_runs
from optibridge.bench.configs import plan
from optibridge.bench.matrix import INSERT, update_matrix, update_text
from optibridge.bench.schema import BenchError, Generation, Latency
from optibridge.bench.tune import choose
from optibridge.cli import main

TESTS = Path(__file__).parent


def latency(p50: float) -> Latency:
    return Latency(p50, p50 * 1.1, p50 * 1.2, p50 * 1.05, 0.1, p50 * 0.9, 10)


def accuracy(cosine: float) -> AccuracyReport:
    return AccuracyReport([OutputAccuracy("last_hidden_state", 1e-3, cosine, cosine - 0.01, 12, None),
                           OutputAccuracy("logits", 2e-3, 0.9999, 0.999, 4, 0.75)], {"input_ids": (2, 16)}, "test inputs")


def cell(backend: str, config: str, p50: float, cosine: float = 0.9999, batch: int = 1, **kw: object) -> Cell:
    base = backend == "pytorch"
    return Cell(backend, config, batch, 16, "ok", latency=latency(p50), baseline=None if base else latency(20.0),
                speedup=20.0 / p50, throughput_samples_s=1000.0 * batch / p50, load_s=0.5, size_mb=1.25,
                peak_rss_mb=321.5, accuracy=None if base else accuracy(cosine), settings={"threads": 2}, **kw)  # type: ignore[arg-type]


def run_of(*cells: Cell, fingerprint: str = "abc123def456", title: str = "Test CPU, 2 cores") -> BenchRun:
    return BenchRun(model={"path": "/m/tiny", "task": "feature-extraction", "reference": "/m/tiny", "generative": False},
                    machine={"fingerprint": fingerprint, "title": title, "os": "Linux", "libraries": {"torch": "2"}},
                    settings={"runs": 10, "warmup": 2, "threads": 2, "duration_s": None, "batch_sizes": [1], "seq_lens": [16]},
                    cells=list(cells), created="2026-11-22T00:00:00+00:00", optibridge_version="0.1.0")


def full_run() -> BenchRun:
    gen = Generation(8, 12.5, 3.25, 123.0)
    return run_of(
        cell("pytorch", "eager", 20.0),
        cell("ort", "fp32", 10.0, generation=gen, baseline_generation=gen, build_s=None),
        cell("ort", "int8-dynamic", 5.0, cosine=0.95, build_s=3.5),
        Cell("openvino", "int8-static", 1, 16, "skipped", reason="backend 'openvino' cannot quantize here"),
        Cell("fake-crash", "fp32", 1, 16, "failed", reason="crashed (SIGSEGV)"),
    )


def test_json_round_trips_exactly(tmp_path: Path) -> None:
    run = full_run()
    path = save_run(run, tmp_path / "results.json")
    data = json.loads(path.read_text())
    assert data["schema_version"] == SCHEMA_VERSION
    assert data["cells"][1]["latency"]["p50_ms"] == 10.0 and data["cells"][1]["generation"]["tokens_per_s"] == 123.0
    back = load_run(path)
    assert back == run
    assert back.to_dict() == run.to_dict()
    assert save_run(back, tmp_path / "again.json").read_text() == path.read_text()
    assert back.cells[2].accuracy is not None and back.cells[2].accuracy.cosine == pytest.approx(0.95)


def test_load_run_refuses_other_versions_and_unknown_fields(tmp_path: Path) -> None:
    data = full_run().to_dict()
    path = tmp_path / "r.json"
    path.write_text(json.dumps({**data, "schema_version": SCHEMA_VERSION + 1}))
    with pytest.raises(BenchError, match="upgrade optibridge"):
        load_run(path)
    data["cells"][0]["new_field"] = 1
    path.write_text(json.dumps(data))
    with pytest.raises(BenchError, match="unknown cell field"):
        load_run(path)
    path.write_text("not json")
    with pytest.raises(BenchError, match="is not JSON"):
        load_run(path)
    with pytest.raises(BenchError, match="status"):
        Cell("ort", "fp32", 1, 16, "weird")


def test_plan_reports_every_cell_it_cannot_run() -> None:
    statuses = {
        "ort": BackendStatus("ort", True, ("cpu",), features=("run", "optimize", "quantize")),
        "openvino": BackendStatus("openvino", True, ("cpu",), features=("run",)),
        "cuda": BackendStatus("cuda", False, reason="no NVIDIA driver"),
        "gpu": BackendStatus("gpu", True, ("cuda",), features=("run", "optimize")),
    }
    cells = plan(None, None, statuses)
    names = [(c.backend, c.config, c.skip is None) for c in cells]
    assert names[0] == ("pytorch", "eager", True)
    assert ("ort", "int8-dynamic", True) in names and ("openvino", "fp32", True) in names
    skipped = {(c.backend, c.config): c.skip for c in cells if c.skip}
    assert "cannot quantize" in skipped[("openvino", "int8-static")]
    assert ("cuda", "fp32") not in skipped  # not available: not part of a default run
    gpu = {c.config: c for c in cells if c.backend == "gpu"}
    assert gpu["fp16"].skip is None and gpu["fp16"].device == "cuda"  # a GPU backend gets fp16 without code for it
    pinned = plan(None, ["ort:fp32", "openvino:fp32", "cuda:fp32", "ort:fp16"], statuses)
    assert [(c.backend, c.config) for c in pinned] == [("pytorch", "eager"), ("ort", "fp32"), ("ort", "fp16"), ("openvino", "fp32"), ("cuda", "fp32")]
    reasons = {(c.backend, c.config): c.skip for c in pinned}
    assert "needs a GPU" in reasons[("ort", "fp16")] and "no NVIDIA driver" in reasons[("cuda", "fp32")]
    assert plan(["nope"], ["fp32"], statuses)[1].skip == (
        "backend 'nope' is not installed (registered here: cuda, gpu, openvino, ort; a typo?)")
    with pytest.raises(BenchError, match="unknown config 'int3'.*valid: fp32"):
        plan(None, ["int3"], statuses)


def test_plan_skips_a_quantization_mode_the_backend_does_not_have() -> None:
    statuses = {
        "ort": BackendStatus("ort", True, devices=("cpu",), features=("run", "optimize", "quantize")),
        "openvino": BackendStatus("openvino", True, devices=("cpu",), features=("run", "optimize", "quantize")),
    }
    cells = {(c.backend, c.config): c for c in plan(None, ["int8-dynamic", "int8-static"], statuses)}
    assert "done by: ort" in cells["openvino", "int8-dynamic"].skip
    assert cells["openvino", "int8-static"].skip is None
    assert cells["ort", "int8-dynamic"].skip is None


def test_decoder_lms_get_every_weight_only_mode_by_default_and_encoders_do_not() -> None:
    """Batch-1 decoding reads every weight per token: for text-generation the default candidates add
    each backend's declared weight-only modes (ModeSpec.weight_only), those with a precision only
    where the backend computes it, never the ones that rework the PyTorch model (Neural Compressor)."""
    from optibridge.backends import get_registry

    declared = get_registry().backends()
    statuses = {name: BackendStatus(name, True, ("cpu",), features=("run", "optimize", "quantize"))
                for name in ("ort", "openvino") if name in declared}
    if "inc" in declared:
        statuses["inc"] = BackendStatus("inc", True, ("cpu",), features=("quantize",))
    encoder = {(c.backend, c.config) for c in plan(None, None, statuses, task="feature-extraction")}
    decoder = {(c.backend, c.config): c for c in plan(None, None, statuses, task="text-generation")}
    added = set(decoder) - encoder
    assert encoder <= set(decoder)
    assert {("ort", "int4"), ("openvino", "int8-weights"), ("openvino", "int8-weights-sym"), ("openvino", "int4-weights"),
            ("openvino", "f16-weights")} == added
    assert all(decoder[cell].skip is None for cell in added)  # only modes the backend declares: nothing to skip
    assert not any(config.startswith("inc-") for _, config in decoder)  # asked for by name
    with_bf16 = {c.config for c in plan(["openvino"], None, {"openvino": BackendStatus(
        "openvino", True, ("cpu",), features=("run", "optimize", "quantize", "bf16"))}, task="text-generation")}
    assert {"int8-weights+bf16", "int4-weights+bf16", "bf16"} <= with_bf16
    assert plan(None, None, statuses) == plan(None, None, statuses, task="feature-extraction")  # no task: the encoder set


def test_bench_plans_after_the_export_so_a_decoder_lm_gets_its_weight_only_candidates(exported_generative, tmp_path, monkeypatch):
    """The task is known once the source artifact is loaded; the plan is made from it."""
    from optibridge.bench import runner

    planned: list[list[tuple[str, str]]] = []

    def stop_after_planning(request, cells, *args, **kwargs):
        planned.append([(c.backend, c.config) for c in cells])
        raise BenchError("stopped by the test after planning")

    monkeypatch.setattr(runner, "prepare", stop_after_planning)
    request = runner.BenchRequest(str(exported_generative("gpt2").path), backends=["ort"], batch_sizes=[1], seq_lens=[8])
    with pytest.raises(BenchError, match="stopped by the test"):
        runner.run_bench(request, tmp_path, show_progress=False)
    assert ("ort", "int4") in planned[0] and ("ort", "int8-dynamic") in planned[0]
    with pytest.raises(BenchError, match="unknown config 'int3'"):  # still refused before anything is exported
        runner.run_bench(runner.BenchRequest("no-such-folder", configs=["int3"]), tmp_path, show_progress=False)


def test_skip_reasons_print_as_written(capsys: pytest.CaptureFixture[str]) -> None:
    # "nope:O2:" is an emoji code to rich and "[cuda]" is markup: both must reach the user verbatim.
    from optibridge.bench.report import print_table
    from optibridge.console import console

    reason = "onnxruntime-gpu not installed (pip install 'optibridge[cuda]')"
    print_table(run_of(cell("pytorch", "eager", 20.0), Cell("nope", "O2", 1, 16, "skipped", reason=reason)), console)
    assert f"skipped nope:O2: {reason}" in capsys.readouterr().out


def test_a_piped_table_keeps_every_column_whole(capsys: pytest.CaptureFixture[str]) -> None:
    from optibridge.bench.report import print_table
    from optibridge.console import console

    run = full_run()
    run.model["generative"] = True  # 16 columns: wider than the default piped width
    print_table(run, console)
    header = next(line for line in capsys.readouterr().out.splitlines() if "candidate" in line)
    assert "max abs diff" in header and header.rstrip().endswith("decode ms/tok ┃")


def test_plugins_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(TESTS))
    monkeypatch.setenv(PLUGINS_ENV, "bench_fake_plugins, no_such_module_xyz")
    registry = BackendRegistry()
    assert {"fake-fast", "fake-crash", "fake-hang"} <= set(registry.backends())
    assert "ort" in registry.backends()  # entry points still load
    broken = {s.name: s for s in registry.statuses() if not s.available}
    assert "no_such_module_xyz" in broken["no_such_module_xyz"].reason
    monkeypatch.delenv(PLUGINS_ENV)
    assert "fake-fast" not in BackendRegistry().backends()


def test_compare_flags_an_injected_2x_regression(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = run_of(cell("pytorch", "eager", 20.0), cell("ort", "fp32", 10.0), cell("ort", "O2", 10.0))
    b = run_of(cell("pytorch", "eager", 20.5), cell("ort", "fp32", 20.0), cell("ort", "O2", 10.4))
    found = {c.name: c for c in compare_runs(a, b, 1.1)}
    assert found["ort:fp32 1×16"].regression and found["ort:fp32 1×16"].ratio == pytest.approx(2.0)
    assert not found["ort:O2 1×16"].regression and not found["pytorch:eager 1×16"].regression
    save_run(a, tmp_path / "a.json")
    save_run(b, tmp_path / "b.json")
    assert main(["bench", "--compare", str(tmp_path / "a.json"), str(tmp_path / "b.json")]) == 1
    assert "REGRESSION" in capsys.readouterr().out
    assert main(["bench", "--compare", str(tmp_path / "a.json"), str(tmp_path / "a.json")]) == 0
    assert main(["bench", "--compare", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--threshold", "2.5"]) == 0
    failed = run_of(cell("pytorch", "eager", 20.0), Cell("ort", "fp32", 1, 16, "failed", reason="crashed"), cell("ort", "O2", 10.0))
    assert {c.name: c for c in compare_runs(a, failed)}["ort:fp32 1×16"].regression


def test_update_matrix_keeps_other_sections_and_hand_written_text(tmp_path: Path) -> None:
    other = run_of(cell("pytorch", "eager", 30.0), fingerprint="0123456789ab", title="Other box")
    hand = "# Hardware matrix\n\nHand-written intro.\n\n## Measured\n\n" + INSERT + "\n\n## Notes\n\nkept as is\n"
    text = update_text(hand, other)
    assert text.startswith("# Hardware matrix\n\nHand-written intro.") and text.endswith("## Notes\n\nkept as is\n")
    path = tmp_path / "hardware_matrix.md"
    path.write_text(text)
    mine = run_of(cell("pytorch", "eager", 20.0), cell("ort", "fp32", 10.0))
    update_matrix(path, mine)
    first = path.read_text()
    assert "Other box" in first and "Test CPU, 2 cores" in first and "| ort:fp32 | 1×16 | 10.00 |" in first
    assert first.index("Other box") < first.index("Test CPU") < first.index("## Notes")  # new machines go before the anchor
    update_matrix(path, run_of(cell("pytorch", "eager", 20.0), cell("ort", "fp32", 7.0)))
    second = path.read_text()
    assert second.count("begin abc123def456") == 1 and "| 7.00 |" in second and "| 10.00 |" not in second
    assert second.split("<!-- optibridge-bench:begin abc")[0] == first.split("<!-- optibridge-bench:begin abc")[0]
    assert second.split("<!-- optibridge-bench:end abc123def456 -->")[1] == first.split("<!-- optibridge-bench:end abc123def456 -->")[1]
    no_anchor = tmp_path / "plain.md"
    no_anchor.write_text("# Plain\n")
    update_matrix(no_anchor, mine)
    assert no_anchor.read_text().startswith("# Plain\n\n<!-- optibridge-bench:begin abc123def456 -->")
    with pytest.raises(BenchError, match="does not exist"):
        update_matrix(tmp_path / "missing.md", mine)


def test_bench_from_stored_results_writes_reports_and_matrix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    save_run(full_run(), tmp_path / "in.json")
    matrix = tmp_path / "m.md"
    matrix.write_text("# M\n")
    assert main(["bench", "--from", str(tmp_path / "in.json"), "--out", str(tmp_path / "out"), "--update-matrix", "--matrix", str(matrix)]) == 0
    out = capsys.readouterr().out
    assert "ort:int8-dynamic" in out and "skipped openvino:int8-static: backend 'openvino' cannot quantize here" in out
    assert "failed fake-crash:fp32: crashed (SIGSEGV)" in out
    assert load_run(tmp_path / "out" / "results.json") == full_run()
    assert (tmp_path / "out" / "chart.png").read_bytes()[:4] == b"\x89PNG"
    assert "| ort:fp32 | 1×16 |" in (tmp_path / "out" / "report.md").read_text()
    assert "begin abc123def456" in matrix.read_text()


def test_tune_choice_rejects_the_budget_breaker() -> None:
    run = run_of(cell("pytorch", "eager", 20.0), cell("a", "fp32", 10.0), cell("b", "int8-dynamic", 4.0, cosine=0.9),
                 cell("c", "fp32", 6.0), Cell("d", "fp32", 1, 16, "failed", reason="crashed (SIGSEGV)"))
    best, trials = choose(run, AccuracyBudget.parse("0.99"))
    assert best is not None and best.name == "c:fp32"
    verdicts = {t.cell.name: t.verdict for t in trials}
    assert verdicts["b:int8-dynamic"].startswith("rejected: accuracy (last_hidden_state cosine 0.9000 < 0.99")
    assert verdicts["a:fp32"].startswith("slower") and verdicts["d:fp32"] == "failed: crashed (SIGSEGV)"
    assert "pytorch:eager" not in verdicts
    assert choose(run, AccuracyBudget.parse("cosine>=0.99999"))[0] is None


def test_tune_calls_a_winner_within_ten_percent_a_close_call() -> None:
    run = run_of(cell("pytorch", "eager", 20.0), cell("a", "fp32", 10.0), cell("b", "fp32", 10.5), cell("c", "fp32", 12.0))
    best, trials = choose(run, AccuracyBudget.parse("0.99"))
    verdicts = {t.cell.name: t.verdict for t in trials}
    assert best is not None and best.name == "a:fp32"
    assert verdicts["a:fp32"].startswith("chosen") and "close call with b:fp32 (" in verdicts["a:fp32"]
    assert verdicts["b:fp32"].startswith("close second, within 10%") and verdicts["c:fp32"].startswith("slower")


def test_tune_ranks_by_the_interleaved_speedup_so_machine_drift_between_cells_does_not_decide() -> None:
    steady = cell("a", "fp32", 10.0)  # 2.0x: PyTorch took 20 ms in its process
    lucky = replace(cell("b", "fp32", 9.0), baseline=latency(12.0), speedup=12.0 / 9.0)  # lower median, but the machine was quieter
    best, trials = choose(run_of(cell("pytorch", "eager", 20.0), steady, lucky), AccuracyBudget.parse("0.99"))
    verdicts = {t.cell.name: t.verdict for t in trials}
    assert best is not None and best.name == "a:fp32"
    assert verdicts["b:fp32"] == "slower (1.33× PyTorch vs 2.00× PyTorch)"
    no_ratio = Cell("c", "fp32", 1, 16, "ok", latency=latency(8.0), accuracy=accuracy(0.9999))  # measured without a baseline
    best, trials = choose(run_of(steady, no_ratio), AccuracyBudget.parse("0.99"))
    assert best is not None and best.name == "c:fp32"  # then the medians decide
    assert {t.cell.name: t.verdict for t in trials}["a:fp32"] == "slower (10.00 ms vs 8.00 ms)"


def test_cli_help_texts(capsys: pytest.CaptureFixture[str]) -> None:
    def flat() -> str:  # the help is boxed and wrapped: compare words only
        return " ".join(capsys.readouterr().out.replace("│", " ").split())

    assert main(["bench", "--help"]) == 0
    text = flat()
    for needle in ("--update-matrix", "--compare", "--threshold", "exits with code 1", "--timeout", "--configs", "failed cell"):
        assert needle in text, needle
    assert main(["tune", "--help"]) == 0
    text = flat()
    for needle in ("--accuracy-budget", "bare number means cosine", "fastest", "nothing is written"):
        assert needle in text, needle
    assert main(["bench"]) == 1
    assert "give --model" in capsys.readouterr().err


def test_tune_writes_nothing_when_no_candidate_fits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from optibridge.bench import tune as tuning
    from optibridge.bench.runner import Prepared

    run = run_of(cell("a", "fp32", 10.0, cosine=0.9))
    monkeypatch.setattr(tuning, "run_bench", lambda request, workdir, show_progress=True: (run, Prepared(None, "", "feature-extraction")))
    out = tmp_path / "tuned"
    assert main(["tune", "--model", str(tmp_path), "--accuracy-budget", "0.99", "--no-progress", str(out)]) == 1
    captured = capsys.readouterr()
    assert "nothing was written" in captured.err and "rejected: accuracy" in captured.out
    assert not out.exists()


class _PromptRecorder:
    """A generative model that records the prompt of every generate() call."""

    def __init__(self):
        self.prompts = []

    def generate(self, input_ids, attention_mask=None, **settings):
        self.prompts.append(input_ids.clone())
        return input_ids

    def __call__(self, input_ids, attention_mask=None, use_cache=True):
        return {"logits": input_ids.float()[..., None]}


def test_timed_generate_calls_never_repeat_the_prompt_of_the_call_before(tmp_path):
    """openvino-genai skips the prefill of a prompt it has just seen: a bench that repeats one prompt flatters it."""
    from types import SimpleNamespace

    import torch

    from optibridge.bench.measure import PROMPT_VARIANTS, Candidate, measure_shape, prompt_inputs

    (tmp_path / "config.json").write_text(json.dumps({"vocab_size": 50}))
    artifact = SimpleNamespace(path=tmp_path)
    prompts = [{k: torch.from_numpy(v) for k, v in prompt_inputs(artifact, 2, 7, k).items()} for k in range(PROMPT_VARIANTS)]
    assert all(p["input_ids"].shape == (2, 7) and 5 <= int(p["input_ids"].min()) and int(p["input_ids"].max()) < 50 for p in prompts)
    models = _PromptRecorder(), _PromptRecorder()
    candidate, reference = (Candidate(m, True, 4, 0) for m in models)
    measure_shape(candidate, reference, prompts[0], None, 2, {"warmup": 1, "runs": 3, "new_tokens": 4}, prompts=prompts)
    seen = models[0].prompts
    assert len(seen) >= 2 * 3  # settle + timed call per round
    assert all(bool((a != b).all()) for a, b in zip(seen, seen[1:]))  # every token differs from the call before's
    assert len(models[1].prompts) == len(seen) and all(torch.equal(a, b) for a, b in zip(seen, models[1].prompts))
