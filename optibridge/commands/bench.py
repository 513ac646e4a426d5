"""`optibridge bench`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Tuple

import typer

from ..console import console
from .run import LOCAL

if TYPE_CHECKING:
    from ..bench.schema import BenchRun


def _ints(text: str, what: str) -> list[int]:
    from ..bench.schema import BenchError

    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise BenchError(f"{what} takes comma-separated integers, e.g. 1,8; not {text!r}") from None


def bench(
    model: Optional[str] = typer.Option(None, "--model", help="Transformers model folder (exported first) or optibridge artifact folder."),
    task: Optional[str] = typer.Option(None, "--task", help="Task to export for (default: inferred from the config)."),
    backends: Optional[str] = typer.Option(None, "--backends", help="Comma-separated backends (default: every available one). PyTorch eager is always measured."),
    configs: Optional[str] = typer.Option(
        None, "--configs",
        help="Comma-separated configs: {configs}; 'backend:config' pins one to a backend "
             "(e.g. ort:int8-dynamic,openvino:fp32). Default: fp32,O2,int8-dynamic,int8-static; plus fp16 on GPUs, "
             "the bf16/f16 configs where the CPU computes them, and for decoder LMs (text-generation) every weight-only "
             "mode the backend declares (int4, int8-weights, int8-weights-sym, int4-weights, f16-weights)."),
    batch_sizes: Optional[str] = typer.Option(None, "--batch-sizes", help="Comma-separated batch sizes (default 1,8; diffusion pipelines: prompts per call, default 1)."),
    seq_lens: str = typer.Option("128", "--seq-lens", help="Comma-separated sequence lengths (tokens; prompt length for LMs; waveform models: steps of 400 samples, 25 ms at 16 kHz; speech models use the input length they were exported for)."),
    warmup: Optional[int] = typer.Option(None, "--warmup", help="Untimed warm-up calls per candidate and shape (default 3; pipelines 1)."),
    runs: Optional[int] = typer.Option(None, "--runs", help="Timed calls per candidate and shape, at most (default 20; pipelines 5)."),
    duration: Optional[float] = typer.Option(None, "--duration", help="Stop timing a shape after this many seconds (at least one round)."),
    threads: int = typer.Option(os.cpu_count() or 1, "--threads", help="Threads for every runtime (default: all cores)."),
    timeout: float = typer.Option(300.0, "--timeout", help="Seconds to wait for each cell's result before killing its process (a failed cell)."),
    new_tokens: int = typer.Option(8, "--new-tokens", help="Generated tokens per call for text-generation models."),
    steps: int = typer.Option(10, "--steps", help="Diffusion pipelines: denoising steps per image."),
    image_size: Optional[int] = typer.Option(None, "--image-size", help="Diffusion pipelines: image height and width (default: the pipeline's native size)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Folder for results.json, report.md and chart.png."),
    update_matrix: bool = typer.Option(False, "--update-matrix", help="Write this machine's measured section of the hardware matrix (--matrix)."),
    matrix: Path = typer.Option(Path("hardware_matrix.md"), "--matrix", help="The hardware matrix file --update-matrix rewrites."),
    from_json: Optional[Path] = typer.Option(None, "--from", help="Use a stored results.json instead of measuring (with --update-matrix or --out)."),
    compare: Optional[Tuple[Path, Path]] = typer.Option(None, "--compare", help="Compare two results.json files A B; exits 1 when B regressed."),
    threshold: float = typer.Option(1.1, "--threshold", help="With --compare: B p50 / A p50 above this is a regression."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show the progress bar."),
    ray: Optional[str] = typer.Option(
        None, "--ray",
        help="Run each cell as a Ray task on a node that has what it needs (Ray GPU/HPU resources for cells on those devices): "
             "--ray alone starts a local cluster, --ray ADDRESS joins one (as ray.init takes it). pip install 'optibridge[ray]'."),
    all_nodes: bool = typer.Option(False, "--all-nodes", help="With --ray: repeat the CPU cells once per distinct machine (fingerprint) of the cluster."),
) -> None:
    """Measure a model on every backend and config this machine has, against PyTorch eager.

    Examples:

        optibridge bench --model ./all-MiniLM-L6-v2 --batch-sizes 1,8 --seq-lens 128 --out bench-out

        optibridge bench --model ./minilm-onnx --configs ort:fp32,ort:int8-dynamic,openvino:fp32 --duration 5

        optibridge bench --model ./minilm --update-matrix

        optibridge bench --compare before/results.json after/results.json --threshold 1.1

        optibridge bench --model ./sd-onnx --steps 20 --image-size 512 --configs ort:fp32,openvino:fp32,openvino:bf16

    Reports per cell (backend × config × batch × sequence length): latency p50/p90/p99, speed-up
    vs PyTorch eager measured interleaved in the same process, throughput (tokens/s, prefill and
    per-token decode latency for text-generation models), load time, size on disk, peak memory,
    and accuracy against PyTorch on the same inputs (max abs diff, cosine, top-1). Each backend ×
    config runs in its own process: a crash or a hang (--timeout) is a failed cell and the run
    goes on. A config a backend cannot do here is listed as skipped, with the reason.

    --compare prints the p50 ratio B/A per cell and exits with code 1 when any cell of B is
    slower than A by more than --threshold, or failed where A ran (for CI).

    A diffusion pipeline (folder or artifact) is measured per image and per denoising step, every
    candidate in one process interleaved with diffusers' PyTorch pipeline, with the rise of peak
    memory while each loads and makes its first image and its pixel difference to PyTorch's image.

    --ray measures on a Ray cluster instead (see docs/ray.md): each row names the fingerprint of
    the machine that measured it, and --update-matrix writes one section per machine.
    """
    from ..bench import compare as comparing
    from ..bench.schema import BenchError, load_run

    if compare:
        a, b = load_run(compare[0]), load_run(compare[1])
        found = comparing.compare_runs(a, b, threshold)
        if comparing.print_comparison(a, b, found, threshold, console):
            raise typer.Exit(code=1)
        return
    if from_json is not None:
        run = load_run(from_json)
    elif model is None:
        raise BenchError("give --model MODEL_OR_ARTIFACT to measure (or --from results.json, or --compare A.json B.json)")
    else:
        if all_nodes and ray is None:
            raise BenchError("--all-nodes needs --ray [ADDRESS]: it repeats cells on the machines of a Ray cluster")
        executor = None
        if ray is not None:
            from ..integrations.ray.bench import RayExecutor

            executor = RayExecutor(None if ray == LOCAL else ray, threads=threads, all_nodes=all_nodes)
        from ..diffusion.bench import is_pipeline_input

        pipeline = is_pipeline_input(model)  # whole images: fewer, bigger calls by default
        shape_defaults = ("1", 1, 5) if pipeline else ("1,8", 3, 20)
        run = _measure(model, task, backends, configs, batch_sizes or shape_defaults[0], seq_lens,
                       shape_defaults[1] if warmup is None else warmup, shape_defaults[2] if runs is None else runs, duration, threads,
                       timeout, new_tokens, progress, executor, steps=steps, image_size=image_size)
    _report(run, out, update_matrix, matrix)
    if from_json is None:
        _exit_when_nothing_measured(run)


def _exit_when_nothing_measured(run: BenchRun) -> None:
    """Exit 1 when no requested candidate produced a measurement (all skipped or failed): a run
    that measured nothing must not look like success to a script or CI."""
    from ..bench.schema import BASELINE
    from ..console import err_console

    candidates = [cell for cell in run.cells if cell.backend != BASELINE]
    if not any(cell.ok for cell in candidates):
        err_console.print(f"error: nothing requested was measured: {len(candidates)} candidate cell(s), all skipped or failed "
                          "(see the table for each reason)", markup=False, highlight=False)
        raise typer.Exit(code=1)


def _measure(model: str, task: Optional[str], backends: Optional[str], configs: Optional[str], batch_sizes: str, seq_lens: str,
             warmup: int, runs: int, duration: Optional[float], threads: int, timeout: float, new_tokens: int, progress: bool,
             executor: object = None, steps: int = 10, image_size: Optional[int] = None) -> BenchRun:
    import tempfile

    from ..bench.configs import parse_list
    from ..staging import pid_prefix
    from ..bench.runner import BenchRequest, run_bench

    request = BenchRequest(
        model=model, task=task, backends=parse_list(backends) if backends else None, configs=parse_list(configs) or None,
        batch_sizes=_ints(batch_sizes, "--batch-sizes"), seq_lens=_ints(seq_lens, "--seq-lens"), warmup=warmup, runs=runs,
        duration_s=duration, threads=threads, timeout_s=timeout, new_tokens=new_tokens, steps=steps, image_size=image_size,
    )
    with tempfile.TemporaryDirectory(prefix=pid_prefix("optibridge-bench-")) as tmp:
        run, _ = run_bench(request, Path(tmp), show_progress=progress, executor=executor)
    return run


def _report(run: BenchRun, out: Optional[Path], update_matrix: bool, matrix: Path) -> None:
    from ..bench.matrix import update_matrix as write_matrix
    from ..bench.report import print_table, write_outputs

    print_table(run, console)
    if out is not None:
        written = write_outputs(run, out)
        console.print("[green]wrote[/] " + ", ".join(str(p) for p in written.values()))
    if update_matrix:
        path = write_matrix(matrix, run)
        for machine in (run.nodes or {"": run.machine}).values():
            console.print(f"[green]updated[/] {path}: section of machine {machine.get('fingerprint')} ({machine.get('title')})")
