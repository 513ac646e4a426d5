"""A benchmark run for people: the terminal table, a Markdown report and a PNG chart.

matplotlib is imported only inside :func:`write_chart` (Agg backend: no display needed).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .schema import BASELINE, BenchRun, Cell, save_run

RESULTS_FILE = "results.json"
REPORT_FILE = "report.md"
CHART_FILE = "chart.png"


def _f(value: float | None, digits: int = 1, suffix: str = "") -> str:
    return "-" if value is None else f"{value:.{digits}f}{suffix}"


def _acc(cell: Cell) -> tuple[str, str, str]:
    if cell.accuracy is None:
        return ("-", "-", "-") if cell.backend != BASELINE else ("ref", "ref", "ref")
    top1 = cell.accuracy.top1
    return f"{cell.accuracy.cosine:.5f}", f"{cell.accuracy.max_abs_diff:.1e}", "-" if top1 is None else f"{top1:.1%}"


COLUMNS = ("candidate", "batch×seq", "p50 ms", "p90 ms", "p99 ms", "vs PyTorch", "samples/s", "load s", "size MB",
           "peak MB", "cosine", "max abs diff", "top-1")
GEN_COLUMNS = ("tok/s", "prefill ms", "decode ms/tok")
PIPELINE_COLUMNS = ("candidate", "images×steps", "size", "s/image", "p90 s", "s/step", "vs PyTorch", "step vs PyTorch", "load s",
                    "size MB", "peak Δ MB", "mean abs pixel diff", "PSNR dB")
"""Diffusion pipelines: a call makes images (seconds), a step is one denoiser call; peak Δ is the
rise of peak RSS while the pipeline loaded and made its first image."""


def columns(run: BenchRun) -> tuple[str, ...]:
    if run.model.get("pipeline"):
        return PIPELINE_COLUMNS
    return COLUMNS + (GEN_COLUMNS if run.model.get("generative") else ())


def _pipeline_values(cell: Cell) -> list[str]:
    lat, img = cell.latency, cell.images
    assert lat is not None and img is not None
    base = cell.backend == BASELINE
    step_ratio = None if base or not img.baseline_step_ms else img.baseline_step_ms / img.step_ms
    psnr = "ref" if base else ("inf" if img.psnr_db is None else f"{img.psnr_db:.1f}")
    diff = "ref" if base else ("-" if img.mean_abs_pixel_diff is None else f"{img.mean_abs_pixel_diff:.1e}")
    return [cell.label, f"{cell.batch_size}×{img.steps}", f"{img.height}×{img.width}", _f(lat.p50_ms / 1000, 3), _f(lat.p90_ms / 1000, 3),
            _f(img.step_ms / 1000, 4), "1.00×" if base else _f(cell.speedup, 2, "×"), "1.00×" if base else _f(step_ratio, 2, "×"),
            _f(cell.load_s, 2), _f(cell.size_mb, 1), _f(img.peak_rss_delta_mb, 0), diff, psnr]


def rows(run: BenchRun) -> list[tuple[Cell, list[str]]]:
    """One row of display strings per cell, in the order of :data:`COLUMNS` (+ :data:`GEN_COLUMNS`)."""
    generative = bool(run.model.get("generative"))
    image = run.model.get("image_size")  # image models: batch × height × width, no sequence
    result = []
    for cell in run.cells:
        shape = f"{cell.batch_size}×{image[0]}×{image[1]}" if isinstance(image, list) and len(image) == 2 else f"{cell.batch_size}×{cell.seq_len}"
        if not cell.ok:
            values = [cell.label, shape, *(["-"] * (len(columns(run)) - 2))]
            result.append((cell, values))
            continue
        if cell.images is not None:
            result.append((cell, _pipeline_values(cell)))
            continue
        lat = cell.latency
        assert lat is not None
        values = [cell.label, shape, _f(lat.p50_ms, 2), _f(lat.p90_ms, 2), _f(lat.p99_ms, 2),
                  "1.00×" if cell.backend == BASELINE else _f(cell.speedup, 2, "×"), _f(cell.throughput_samples_s, 1),
                  _f(cell.load_s, 2), _f(cell.size_mb, 1), _f(cell.peak_rss_mb, 0), *_acc(cell)]
        if generative:
            gen = cell.generation
            values += [_f(gen.tokens_per_s, 1), _f(gen.prefill_ms, 2), _f(gen.decode_ms_per_token, 2)] if gen else ["-"] * 3
        result.append((cell, values))
    return result


def caption(run: BenchRun) -> str:
    s = run.settings
    amount = f"{s['runs']} runs" + (f" or {s['duration_s']:g} s" if s.get("duration_s") else "")
    if run.model.get("pipeline"):
        return (f"{run.machine.get('title', '')}; {s['threads']} threads; {amount} per candidate after {s['warmup']} warm-up, every "
                "candidate in one process, interleaved round-robin, medians; guidance 7.5, same prompts and seed; pixel diff vs PyTorch")
    return (f"{run.machine.get('title', '')}; {s['threads']} threads; {amount} per shape after {s['warmup']} warm-up, "
            "interleaved with PyTorch eager (settle=1), medians; accuracy vs PyTorch on the same inputs")


TERMINAL_WIDTH = 165
"""At least this wide when piped (CI logs, `| tee`), which would otherwise squeeze tables into 80 columns."""


def model_name(run: BenchRun) -> str:
    """The model folder's name; with its parent when the folder has a generic name (".../all-minilm/model")."""
    path = Path(str(run.model.get("path")))
    return f"{path.parent.name}/{path.name}" if path.name in ("model", "models", "artifact", "fp32") and path.parent.name else path.name


def wide_console(console: Any, table: Any = None) -> Any:
    """``console`` itself on a terminal; else a console on the same file as wide as ``table`` needs
    (at least :data:`TERMINAL_WIDTH`), so piped tables keep every column whole."""
    if console.is_terminal:
        return console
    from rich.console import Console
    from rich.measure import Measurement

    piped = Console(file=console.file, width=TERMINAL_WIDTH, soft_wrap=True, no_color=console.no_color, emoji=False)
    if table is not None:
        needed = Measurement.get(piped, piped.options.update(max_width=10_000), table).maximum
        piped.width = max(TERMINAL_WIDTH, needed)
    return piped


def print_table(run: BenchRun, console: Any) -> None:
    """The run as a rich table, with failed and skipped cells and their reasons under it."""
    from rich.table import Table

    table = Table(title=f"optibridge bench: {model_name(run)} ({run.model.get('task')})", caption=caption(run))
    for column in columns(run):
        table.add_column(column, justify="left" if column == "candidate" else "right", no_wrap=True)
    problems = []
    for cell, values in rows(run):
        if not cell.ok:
            colour = "yellow" if cell.status == "skipped" else "red"
            values[0] = f"[{colour}]{cell.label}[/]"
            values[2] = f"[{colour}]{cell.status}[/]"
            problems.append(cell)
        elif cell.backend != BASELINE and cell.speedup is not None:
            speed = columns(run).index("vs PyTorch")
            values[speed] = f"[bold]{values[speed]}[/]"
        table.add_row(*values)
    wide_console(console, table).print(table)
    from rich.markup import escape

    seen = set()
    for cell in problems:
        if (cell.label, cell.reason) in seen:
            continue
        seen.add((cell.label, cell.reason))
        colour = "yellow" if cell.status == "skipped" else "red"
        # escaped: reasons quote pip commands like "pip install 'optibridge[cuda]'", which is markup to rich
        console.print(f"[{colour}]{cell.status}[/] {escape(cell.label)}: {escape(cell.reason or '')}", highlight=False, emoji=False)
    noisy = [f"{c.label} {c.batch_size}×{c.seq_len}" for c in run.cells if c.ok and c.latency and c.latency.noisy]
    if noisy:
        console.print(f"[yellow]noisy timings[/] (median > 1.5× min or p90 > 1.5× median): {', '.join(noisy)}; "
                      "another process was busy; re-run for steadier numbers")


def markdown(run: BenchRun, *, heading: str | None = "## optibridge bench") -> str:
    """The run as Markdown: machine, settings, one table row per cell, reasons for the rest."""
    head = list(columns(run))
    lines = [heading, ""] if heading else []
    machine = run.machine
    libs = ", ".join(f"{k} {v}" for k, v in machine.get("libraries", {}).items())
    lines += [
        f"Model `{model_name(run)}` ({run.model.get('task')}), {run.created}; machine "
        f"{machine.get('title')} (fingerprint `{machine.get('fingerprint')}`), {machine.get('os')}; {libs}.",
        "",
        caption(run) + ".",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for cell, values in rows(run):
        if not cell.ok:
            values[2] = cell.status
        lines.append("| " + " | ".join(v.replace("|", "/") for v in values) + " |")
    notes = {(c.label, c.status, c.reason) for c in run.cells if not c.ok}
    if notes:
        lines.append("")
        lines += [f"- {name}: {status}: {reason}" for name, status, reason in sorted(notes)]
    return "\n".join(lines) + "\n"


def write_chart(run: BenchRun, path: str | os.PathLike[str]) -> Path | None:
    """Latency (p50) and speed-up vs PyTorch per candidate, one bar group per shape; None if nothing ran."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [c for c in run.cells if c.ok and c.latency is not None]
    if not ok:
        return None
    names = list(dict.fromkeys(c.label for c in ok))
    shapes = list(dict.fromkeys((c.batch_size, c.seq_len) for c in ok))
    width = 0.8 / len(names)
    fig, (left, right) = plt.subplots(1, 2, figsize=(max(8.0, 2.2 * len(shapes) + 6), 4.2))
    for index, name in enumerate(names):
        cells = {(c.batch_size, c.seq_len): c for c in ok if c.label == name}
        xs = [i + (index - (len(names) - 1) / 2) * width for i in range(len(shapes))]
        p50 = [cells[s].latency.p50_ms if s in cells else 0.0 for s in shapes]  # type: ignore[union-attr]
        speed = [cells[s].speedup or 0.0 if s in cells else 0.0 for s in shapes]
        left.bar(xs, p50, width, label=name)
        right.bar(xs, speed, width, label=name)
    labels = [f"b{b} s{s}" for b, s in shapes]
    for axis, title in ((left, "median latency (ms, lower is better)"), (right, "speed-up vs PyTorch eager (×)")):
        axis.set_xticks(range(len(shapes)), labels)
        axis.set_title(title, fontsize=10)
        axis.grid(axis="y", alpha=0.3)
    right.axhline(1.0, color="black", linewidth=0.8)
    left.legend(fontsize=8)
    fig.suptitle(f"{model_name(run)} on {run.machine.get('title', '')}", fontsize=10)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def write_outputs(run: BenchRun, folder: str | os.PathLike[str]) -> dict[str, Path]:
    """results.json, report.md and chart.png in ``folder``; returns what was written."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    written = {"json": save_run(run, out / RESULTS_FILE)}
    (out / REPORT_FILE).write_text(markdown(run) + f"\n![chart]({CHART_FILE})\n")
    written["markdown"] = out / REPORT_FILE
    chart = write_chart(run, out / CHART_FILE)
    if chart is not None:
        written["chart"] = chart
    return written
