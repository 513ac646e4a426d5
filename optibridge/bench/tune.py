"""``optibridge tune``: measure every backend × config here, keep the fastest within an accuracy budget.

The candidates are the cells of one benchmark run at one shape (the PyTorch baseline is shown but
is not a candidate: it is not an artifact). A candidate is rejected when its accuracy against
PyTorch misses the budget, or when it failed or was skipped; among the rest the highest speed-up
over PyTorch wins. Each candidate's process times PyTorch eager interleaved with it, so that ratio
cancels how busy the machine was while that candidate ran; raw medians from processes measured
minutes apart do not (in one MiniLM tune on a shared 2-core machine, PyTorch's own median moved
from 25 to 38 ms between cells). The winner's artifact is copied to the output folder through a
staged write, with a ``tune`` step recorded in its ``optibridge.json`` (budget, measured figures,
what else was tried).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from ..accuracy import AccuracyBudget
from ..staging import pid_prefix
from .measure import SPEECH_TASKS, WAVEFORM_TASKS
from .runner import BenchRequest, run_bench
from .schema import BASELINE, BenchError, BenchRun, Cell


CLOSE_CALL = 0.10
"""Candidates within this fraction of the winner are called a close call: what interleaving leaves
of the drift between separate processes is about that much on a shared machine."""


@dataclass(frozen=True)
class Trial:
    cell: Cell
    verdict: str
    """"chosen", "slower", "rejected: accuracy ...", "failed: ...", "skipped: ..."."""


def choose(run: BenchRun, budget: AccuracyBudget) -> tuple[Cell | None, list[Trial]]:
    """The fastest candidate within ``budget`` (None if none is) and a verdict for every cell tried."""
    verdicts: dict[tuple[str, str, int, int], str] = {}
    within = []
    for cell in run.cells:
        if cell.backend == BASELINE:
            continue
        if not cell.ok:
            verdicts[cell.key] = f"{cell.status}: {cell.reason}"
            continue
        if cell.images is not None:  # a pipeline: judged on its images against PyTorch's (same prompts and seeds)
            missed = budget.image_violations(cell.images.psnr_db)
        else:
            missed = budget.violations(cell.accuracy) if cell.accuracy is not None else ["no accuracy measured"]
        if missed:
            verdicts[cell.key] = f"rejected: accuracy ({'; '.join(missed)})"
            continue
        within.append(cell)
    score, describe = _ranking(within)
    best = max(within, key=score, default=None)
    close = [c for c in within if c is not best and best is not None and score(c) * (1 + CLOSE_CALL) >= score(best)]
    for cell in within:
        if cell is best:
            verdicts[cell.key] = "chosen: fastest within the budget" + (
                f"; close call with {', '.join(c.name for c in close)} (re-run with a longer --duration to separate them)"
                if close else "")
        else:
            assert best is not None
            what = f"close second, within {CLOSE_CALL:.0%}" if cell in close else "slower"
            verdicts[cell.key] = f"{what} ({describe(cell)} vs {describe(best)})"
    return best, [Trial(c, verdicts[c.key]) for c in run.cells if c.key in verdicts]


def _ranking(cells: list[Cell]) -> tuple[Callable[[Cell], float], Callable[[Cell], str]]:
    """Higher is faster: the interleaved speed-up over PyTorch when every candidate has one (tune
    always measures it), else the inverse of the median latency."""
    if all(c.speedup for c in cells):
        return (lambda c: float(c.speedup or 0.0)), (lambda c: f"{c.speedup:.2f}× PyTorch")
    return (lambda c: 1.0 / c.latency.p50_ms if c.latency else 0.0), (lambda c: f"{c.latency.p50_ms:.2f} ms" if c.latency else "-")


def write_winner(source: Path, out: str | os.PathLike[str], best: Cell, run: BenchRun, budget: AccuracyBudget,
                 trials: list[Trial]) -> Path:
    """Copy the winner's artifact to ``out`` (staged) and record the tune step in its metadata."""
    from ..artifact import Artifact, check_output_dir, staged_directory, write_metadata

    check_output_dir(out)
    with staged_directory(out) as staging:
        for item in source.iterdir():
            (shutil.copytree if item.is_dir() else shutil.copy2)(item, staging / item.name)
        artifact = Artifact.load(staging)
        assert best.latency is not None
        artifact.metadata.steps.append({
            "step": "tune", "backend": best.backend, "config": best.config, "device": best.device,
            "accuracy_budget": budget.to_dict(),
            "measured": {"batch_size": best.batch_size, "seq_len": best.seq_len, "p50_ms": best.latency.p50_ms,
                         "speedup_vs_pytorch": best.speedup,
                         "accuracy": best.accuracy.to_dict() if best.accuracy else None,
                         **({"images": asdict(best.images)} if best.images is not None else {})},
            "machine": {"title": run.machine.get("title"), "fingerprint": run.machine.get("fingerprint")},
            "tried": [{"candidate": t.cell.name, "verdict": t.verdict} for t in trials],
        })
        write_metadata(staging, artifact.metadata)
    return Path(out)


def print_trials(run: BenchRun, trials: list[Trial], console: Any) -> None:
    from rich.table import Table

    task = run.model.get("task")
    pipeline = bool(run.model.get("pipeline"))
    if pipeline:
        side = run.settings.get("image_size")
        image = run.model.get("image_size") or ([side, side] if side else ["native", "native"])
        shape = (f"batch {run.settings['batch_sizes'][0]} of {image[0]}×{image[1]} images, {run.settings['steps']} steps; "
                 "accuracy: the images vs PyTorch's, same prompts and seeds")
    else:
        unit = "input frames" if task in SPEECH_TASKS else "waveform steps" if task in WAVEFORM_TASKS else "tokens"
        shape = f"batch {run.settings['batch_sizes'][0]} × {run.settings['seq_lens'][0]} {unit}; accuracy vs PyTorch on the same inputs"
    table = Table(title="optibridge tune: what was tried",
                  caption=f"{shape}; each candidate timed interleaved with PyTorch eager in its own process")
    measures = ("PSNR dB", "mean abs pixel diff") if pipeline else ("cosine", "max abs diff")
    for column in ("candidate", "p50 ms", "PyTorch p50 ms", "vs PyTorch", *measures, "verdict"):
        table.add_column(column, justify="left" if column in ("candidate", "verdict") else "right")
    for trial in trials:
        cell = trial.cell
        lat = f"{cell.latency.p50_ms:.2f}" if cell.latency else "-"
        speed = f"{cell.speedup:.2f}×" if cell.speedup is not None and cell.ok else "-"
        if cell.images is not None and cell.images.psnr_db is not None:
            cos, diff = f"{cell.images.psnr_db:.1f}", f"{cell.images.mean_abs_pixel_diff or 0.0:.1e}"
        else:
            cos = f"{cell.accuracy.cosine:.5f}" if cell.accuracy else "-"
            diff = f"{cell.accuracy.max_abs_diff:.1e}" if cell.accuracy else "-"
        colour = "green" if trial.verdict.startswith("chosen") else ("red" if trial.verdict.startswith(("rejected", "failed")) else "")
        verdict = f"[{colour}]{trial.verdict}[/]" if colour else trial.verdict
        base = f"{cell.baseline.p50_ms:.2f}" if cell.baseline else "-"
        table.add_row(cell.name, lat, base, speed, cos, diff, verdict)
    from .report import wide_console

    wide_console(console, table).print(table)


def _check_budget_fits(model: str, budget: AccuracyBudget) -> None:
    """A pipeline is judged on its images (psnr), any other model on its outputs (cosine, top1, max-abs-diff)."""
    from ..diffusion.bench import is_pipeline_input

    pipeline = is_pipeline_input(str(model))
    if pipeline and not budget.judges_images:
        raise BenchError(f"{model} is a diffusion pipeline: it is judged on its images against PyTorch's; give a PSNR budget, "
                         "e.g. --accuracy-budget psnr>=35")
    if not pipeline and budget.judges_images:
        raise BenchError(f"the psnr budget term judges a diffusion pipeline's images; {model} is not a pipeline: use cosine, "
                         "top1 or max-abs-diff")


def tune(request: BenchRequest, budget: AccuracyBudget, out: str | os.PathLike[str], console: Any,
         *, show_progress: bool = True) -> tuple[Cell, BenchRun]:
    """Run the benchmark, choose, write the winner to ``out``; raise BenchError (nothing written) if none fits."""
    from ..artifact import check_output_dir

    check_output_dir(out)  # fail before minutes of measuring
    _check_budget_fits(request.model, budget)
    request.baseline_cell = False  # each candidate is timed against PyTorch in its own process already
    if len(request.batch_sizes) != 1 or len(request.seq_lens) != 1:
        raise BenchError("tune measures one shape: give one --batch-size and one --seq-len")
    with tempfile.TemporaryDirectory(prefix=pid_prefix("optibridge-tune-")) as tmp:
        run, prepared = run_bench(request, Path(tmp), show_progress=show_progress)
        best, trials = choose(run, budget)
        print_trials(run, trials, console)
        if best is None:
            raise BenchError(f"no candidate stayed within the accuracy budget {budget.describe()} (see the table); "
                             "nothing was written. Loosen the budget or add configs (--configs)")
        write_winner(prepared.artifacts[(best.backend, best.config)], out, best, run, budget, trials)
    return best, run
