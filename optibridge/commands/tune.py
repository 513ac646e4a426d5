"""`optibridge tune`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer

from ..console import console


def tune(
    output_dir: Path = typer.Argument(..., help="Artifact folder to write the chosen artifact to (created; replaced only if it is an artifact)."),
    model: str = typer.Option(..., "--model", help="Transformers model folder (exported first) or optibridge artifact folder."),
    accuracy_budget: str = typer.Option(
        ..., "--accuracy-budget",
        help="Least accuracy vs PyTorch to keep: a bare number means cosine>=, e.g. 0.99; or 'cosine>=0.999,top1>=0.99', 'max-abs-diff<=1e-3'; "
             "a diffusion pipeline: 'psnr>=35' (its images vs PyTorch's, same prompts and seeds)."),
    task: Optional[str] = typer.Option(None, "--task", help="Task to export for (default: inferred from the config)."),
    backends: Optional[str] = typer.Option(None, "--backends", help="Comma-separated backends to try (default: every available one)."),
    configs: Optional[str] = typer.Option(None, "--configs", help="Comma-separated configs to try (as `optibridge bench --configs`)."),
    batch_size: int = typer.Option(1, "--batch-size", help="Batch size to measure at."),
    seq_len: int = typer.Option(128, "--seq-len", help="Sequence length to measure at."),
    steps: int = typer.Option(10, "--steps", help="Diffusion pipelines: denoising steps per image."),
    image_size: Optional[int] = typer.Option(None, "--image-size", help="Diffusion pipelines: image height and width (default: the pipeline's native size)."),
    warmup: int = typer.Option(3, "--warmup", help="Untimed warm-up calls per candidate."),
    runs: int = typer.Option(20, "--runs", help="Timed calls per candidate (at most)."),
    duration: Optional[float] = typer.Option(None, "--duration", help="Stop timing a candidate after this many seconds."),
    threads: int = typer.Option(os.cpu_count() or 1, "--threads", help="Threads for every runtime."),
    timeout: float = typer.Option(300.0, "--timeout", help="Seconds to wait for a candidate before it counts as failed."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show the progress bar."),
) -> None:
    """Try every backend and config available here; write the fastest artifact that stays within the accuracy budget.

    Example:

        optibridge tune --model ./all-MiniLM-L6-v2 --accuracy-budget 0.99 ./minilm-tuned

        optibridge tune --model ./sd-onnx --accuracy-budget psnr>=35 --steps 20 --image-size 512 ./sd-tuned

    Each candidate is built (optimize/quantize), measured against PyTorch eager in its own
    process (as `optibridge bench`), and checked against the budget on the same inputs. Fastest
    means the highest speed-up over PyTorch timed interleaved in the candidate's process, which
    cancels how busy the machine was while it ran. The table says for every candidate why it was
    chosen, rejected (accuracy), failed, skipped or slower.
    The winner is written through a staged folder, with a `tune` step in its optibridge.json;
    when no candidate fits, nothing is written and the exit code is 1.
    """
    from ..accuracy import AccuracyBudget
    from ..bench.configs import parse_list
    from ..bench.runner import BenchRequest
    from ..bench.tune import tune as run_tune

    budget = AccuracyBudget.parse(accuracy_budget)
    request = BenchRequest(
        model=model, task=task, backends=parse_list(backends) if backends else None, configs=parse_list(configs) or None,
        batch_sizes=[batch_size], seq_lens=[seq_len], warmup=warmup, runs=runs, duration_s=duration, threads=threads,
        timeout_s=timeout, steps=steps, image_size=image_size,
    )
    best, _ = run_tune(request, budget, output_dir, console, show_progress=progress)
    console.print(f"[green]wrote[/] {output_dir}: {best.name} ({best.speedup:.2f}× PyTorch eager, budget {budget.describe()}); "
                  f"load it with from_pretrained({str(output_dir)!r}, backend={best.backend!r})")
