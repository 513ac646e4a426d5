"""Run a benchmark: export once, build each config's artifact once, measure each cell in its own process.

One process per backend × config measures every shape (batch size × sequence length) in turn
(:mod:`optibridge.bench.measure`), streaming one result per shape. The runner waits at most
``timeout_s`` for each result: a process that hangs is killed, one that crashes (a segfault, an
``os._exit``) ends; either way the shapes it did not finish become failed cells with the reason,
and the run goes on with the next candidate. Processes run one after another, never side by side,
so candidates do not compete for the cores.
"""

from __future__ import annotations

import datetime
import functools
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from ..staging import pid_prefix
from .process import _exit_reason, _kill, child_env
from .configs import BASELINE_CONFIG, PlannedCell, all_configs, backend_options, check_config_names, plan
from .machine import describe_machine
from .measure import GENERATIVE_TASKS, SPEECH_TASKS, speech_frames
from .schema import BASELINE, BenchError, BenchRun, Cell

POLL_S = 0.05
LOAD_TIMEOUT_S = 120.0
"""At least this long for a process to start, import and load its model (a cold import of torch
on a busy 2-core machine takes 10 s and more); after that, ``timeout_s`` per shape."""
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


@dataclass
class BenchRequest:
    """What to measure and how; the CLI's options one to one."""

    model: str
    task: str | None = None
    backends: list[str] | None = None
    """None: every available backend; PyTorch eager is always measured."""
    configs: list[str] | None = None
    batch_sizes: list[int] = field(default_factory=lambda: [1, 8])
    seq_lens: list[int] = field(default_factory=lambda: [128])
    warmup: int = 3
    runs: int = 20
    duration_s: float | None = None
    """Cap on the timed part of each shape (the run stops earlier than ``runs`` rounds)."""
    threads: int = field(default_factory=lambda: os.cpu_count() or 1)
    timeout_s: float = 300.0
    new_tokens: int = 8
    baseline_cell: bool = True
    """Measure PyTorch eager alone too (its own row); every candidate is timed against it anyway."""
    steps: int = 10
    """Diffusion pipelines: denoising steps per image (the cells' ``seq_len``)."""
    image_size: int | None = None
    """Diffusion pipelines: image height and width (None: the pipeline's native size)."""

    def __post_init__(self) -> None:
        if not self.batch_sizes or min(self.batch_sizes) < 1 or not self.seq_lens or min(self.seq_lens) < 2:
            raise BenchError("need batch sizes >= 1 and sequence lengths >= 2, e.g. --batch-sizes 1,8 --seq-lens 128")
        if self.warmup < 0 or self.runs < 1 or self.threads < 1 or self.timeout_s <= 0 or self.new_tokens < 1 or self.steps < 1:
            raise BenchError("need --warmup >= 0, --runs >= 1, --threads >= 1, --timeout > 0, --new-tokens >= 1, --steps >= 1")
        if self.duration_s is not None and self.duration_s <= 0:
            raise BenchError(f"--duration must be > 0 seconds, not {self.duration_s}")

    def settings(self) -> dict[str, Any]:
        return {"backends": self.backends, "configs": self.configs, "batch_sizes": list(self.batch_sizes),
                "seq_lens": list(self.seq_lens), "warmup": self.warmup, "runs": self.runs, "duration_s": self.duration_s,
                "threads": self.threads, "timeout_s": self.timeout_s, "new_tokens": self.new_tokens, "steps": self.steps,
                "image_size": self.image_size,
                "method": "interleaved with PyTorch eager in one process per backend x config, settle=1, medians"}


@dataclass
class Prepared:
    """The run's inputs: the float32 artifact, the PyTorch reference, and each config's built artifact."""

    fp32: Any
    reference: str
    task: str
    artifacts: dict[tuple[str, str], Path] = field(default_factory=dict)
    build_s: dict[tuple[str, str], float] = field(default_factory=dict)
    build_errors: dict[tuple[str, str], str] = field(default_factory=dict)


Reporter = Callable[[str], None]


def _one_line(exc: BaseException) -> str:
    from ..errors import first_line

    return first_line(exc)


def reference_model(artifact: Any) -> str:
    """The PyTorch model an artifact was exported from, as a path that works from any directory:
    the absolute ``local_path`` recorded at export, or a hub id; never the relative path typed then."""
    from ..exporter.loading import looks_like_path

    source = artifact.metadata.source
    local, typed = source.get("local_path"), str(source.get("model") or "")
    if isinstance(local, str) and os.path.isabs(local) and Path(local).is_dir():
        return local
    if typed and not looks_like_path(typed) and not Path(typed).exists():
        return typed  # a hub id
    where = local or typed or "nothing"
    raise BenchError(
        f"{artifact.path} records {where!r} as the model it came from, which is not a folder here; "
        "bench the transformers folder instead (optibridge bench --model MODEL_FOLDER)"
    )


def source_artifact(request: BenchRequest, workdir: Path, report: Reporter) -> tuple[Any, str]:
    """The float32 artifact to start from (exported now from a transformers folder) and the reference model."""
    from ..artifact import Artifact, is_artifact

    if is_artifact(request.model):
        artifact = Artifact.load(request.model)
        if request.task and request.task != artifact.metadata.task:
            raise BenchError(f"{request.model} was exported for {artifact.metadata.task!r}, not {request.task!r}; drop --task")
        return artifact, reference_model(artifact)
    from ..exporter import export

    report(f"exporting {request.model}")
    local = Path(request.model).expanduser()
    return export(request.model, workdir / "fp32", task=request.task).artifact, str(local.resolve()) if local.exists() else str(request.model)


def prepare(request: BenchRequest, cells: list[PlannedCell], workdir: Path, fp32: Any, reference: str, report: Reporter) -> Prepared:
    """Build the artifact of every runnable backend × config, once; a failed build fails its cells."""
    from ..steps import optimize, quantize

    prepared = Prepared(fp32, reference, fp32.metadata.task)
    configs = all_configs()
    for cell in cells:
        key = (cell.backend, cell.config)
        if cell.skip or cell.backend == BASELINE:
            continue
        config = configs[cell.config]
        if config.step is None:
            prepared.artifacts[key] = fp32.path
            continue
        report(f"building {cell.backend}:{cell.config}")
        out = workdir / f"{cell.backend}-{cell.config}"
        started = time.perf_counter()
        try:
            verb = optimize if config.step == "optimize" else quantize
            result = verb(fp32.path, config.step_config(), out, backend=cell.backend)
        except Exception as exc:  # any step error (BackendError, ConfigError, a runtime's own) fails these cells only
            prepared.build_errors[key] = f"build failed: {_one_line(exc)}"
            continue
        prepared.artifacts[key] = result.artifact.path
        prepared.build_s[key] = time.perf_counter() - started
    return prepared


def weights_mb(folder: str) -> float | None:
    path = Path(folder)
    if not path.is_dir():
        return None
    total = sum(f.stat().st_size for f in path.iterdir() if f.suffix in WEIGHT_SUFFIXES and f.is_file())
    return total / 1e6 if total else None


def _read_events(path: Path, seen: int) -> tuple[list[dict[str, Any]], int]:
    if not path.exists():
        return [], seen
    lines = path.read_text().splitlines()
    events = []
    for line in lines[seen:]:
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut by a crash mid-write
            continue
    return events, len(lines)


def run_process(spec: dict[str, Any], timeout_s: float, on_event: Callable[[dict[str, Any]], None]) -> str | None:
    """Run one measurement process; ``on_event`` gets each result line as it arrives.

    Returns None when the process finished every shape, else why it stopped early (crash, hang,
    load failure): the caller fails the shapes that got no result.
    """
    with tempfile.TemporaryDirectory(prefix=pid_prefix("optibridge-cell-")) as tmp:
        folder = Path(tmp)
        spec_file, results, stderr = folder / "spec.json", folder / "results.jsonl", folder / "stderr.txt"
        spec_file.write_text(json.dumps(spec))
        with stderr.open("wb") as err:
            process = subprocess.Popen(
                [sys.executable, "-m", "optibridge.bench.measure", str(spec_file), str(results)],
                stdout=subprocess.DEVNULL, stderr=err, env=child_env(), start_new_session=True,
            )
        seen, pending, fatal = 0, len(spec["shapes"]), None
        deadline = time.monotonic() + max(timeout_s, LOAD_TIMEOUT_S)
        try:
            while True:
                finished = process.poll() is not None
                events, seen = _read_events(results, seen)
                for event in events:
                    if event.get("event") == "fatal":
                        fatal = str(event.get("reason"))
                    elif event.get("event") == "loaded":
                        deadline = time.monotonic() + timeout_s
                    elif event.get("event") == "cell":
                        pending -= 1
                        deadline = time.monotonic() + timeout_s
                        on_event(event)
                if finished:
                    break
                if time.monotonic() > deadline:
                    _kill(process)
                    return f"timed out: no result within {timeout_s:g} s (process killed)"
                time.sleep(POLL_S)
        except BaseException:  # Ctrl-C: never leave a measuring process behind
            _kill(process)
            raise
        if pending <= 0:
            return None
        return fatal or _exit_reason(process.returncode, stderr)


def _image_only_size(artifact: Any) -> tuple[int, int] | None:
    """(height, width) the bench feeds an image model (its graph takes pixels and no text); None otherwise."""
    if "diffusion" in artifact.metadata.extra:
        return None
    from ..steps.samples import is_text_graph, is_vision_graph, recorded_image_size

    graph = artifact.metadata.main_graph
    if not is_vision_graph(graph) or is_text_graph(graph):
        return None
    spec = next(s for s in graph.inputs if s.name == "pixel_values")
    fixed = tuple(d for d in spec.shape[2:] if isinstance(d, int))
    found = recorded_image_size(artifact, "validated") or (fixed if len(fixed) == 2 else None)
    return (int(found[0]), int(found[1])) if found else None


def _shapes(request: BenchRequest) -> list[tuple[int, int]]:
    return [(b, s) for s in request.seq_lens for b in request.batch_sizes]


def _cell_from_event(planned: PlannedCell, event: dict[str, Any], extra: dict[str, Any]) -> Cell:
    fields = {k: v for k, v in event.items() if k != "event"}
    return Cell.from_dict({"backend": planned.backend, "config": planned.config, "device": planned.device, **extra, **fields})


@dataclass
class CellJob:
    """One backend × config to measure at every shape in one process: what an executor runs."""

    index: int
    """Position of the planned cell in the run (results keep this order)."""
    planned: PlannedCell
    spec: dict[str, Any]
    """The measuring process's spec (:mod:`optibridge.bench.measure`)."""
    extra: dict[str, Any]
    """Fields every cell of the job gets (settings, size, build time)."""
    placement: dict[str, Any] = field(default_factory=dict)
    """Where an executor runs the job (its own business: a Ray node, nothing locally)."""


JobEvent = Callable[[CellJob, dict[str, Any]], None]
JobDone = Callable[[CellJob, "str | None", dict[str, Any]], None]


class LocalExecutor:
    """Runs the jobs here, one process after another (never side by side: they would share the cores)."""

    def statuses(self) -> dict[str, Any]:
        from ..backends import get_registry

        return {s.name: s for s in get_registry().statuses()}

    def expand(self, jobs: list[CellJob]) -> list[CellJob]:
        return jobs

    def run(self, jobs: list[CellJob], timeout_s: float, on_event: JobEvent, on_done: JobDone) -> None:
        for job in jobs:
            stopped = run_process(job.spec, timeout_s, functools.partial(on_event, job))
            on_done(job, stopped, {})

    def nodes(self) -> dict[str, dict[str, Any]]:
        return {}


def measure_all(request: BenchRequest, cells: list[PlannedCell], prepared: Prepared,
                on_cell: Callable[[Cell], None], on_start: Callable[[PlannedCell, tuple[int, int]], None],
                executor: Any = None) -> list[Cell]:
    """Every planned cell at every shape, in order; skipped and failed ones included.

    ``executor`` runs the measuring processes (:class:`LocalExecutor` by default; see
    :mod:`optibridge.integrations.ray.bench` for a cluster); it may run a job more than once
    (once per machine) and adds where each ran to the cells (``node`` fields).
    """
    executor = executor or LocalExecutor()
    shapes = _shapes(request)
    results: dict[int, list[Cell]] = {}
    jobs: list[CellJob] = []
    for index, planned in enumerate(cells):
        key = (planned.backend, planned.config)
        is_baseline = planned.backend == BASELINE
        options = {} if is_baseline else backend_options(planned.backend, request.threads)
        size = weights_mb(prepared.reference) if is_baseline else None
        if key in prepared.artifacts:
            size = sum(f.stat().st_size for f in Path(prepared.artifacts[key]).iterdir() if f.is_file()) / 1e6
        extra: dict[str, Any] = {"settings": {"threads": request.threads, **options}, "size_mb": size, "build_s": prepared.build_s.get(key)}
        reason = planned.skip or prepared.build_errors.get(key)
        if reason:
            for batch, seq in shapes:
                cell = Cell(planned.backend, planned.config, batch, seq, "skipped" if planned.skip else "failed",
                            reason=reason, device=planned.device, settings=extra["settings"], build_s=extra["build_s"])
                results.setdefault(index, []).append(cell)
                on_cell(cell)
            continue
        spec = {
            "backend": planned.backend, "config": planned.config, "device": planned.device, "options": options,
            "artifact": None if is_baseline else str(prepared.artifacts[key]), "inputs_artifact": str(prepared.fp32.path),
            "reference": prepared.reference, "task": prepared.task, "shapes": shapes, "warmup": request.warmup,
            "runs": request.runs, "duration_s": request.duration_s, "threads": request.threads, "new_tokens": request.new_tokens,
        }
        jobs.append(CellJob(index, planned, spec, extra))
    jobs = executor.expand(jobs)
    got: dict[int, dict[tuple[int, int], Cell]] = {id(job): {} for job in jobs}
    position = {id(job): i for i, job in enumerate(jobs)}
    if jobs:
        on_start(jobs[0].planned, shapes[0])

    def received(job: CellJob, event: dict[str, Any]) -> None:
        cell = _cell_from_event(job.planned, event, job.extra)
        got[id(job)][(cell.batch_size, cell.seq_len)] = cell
        on_cell(cell)
        following = shapes.index((cell.batch_size, cell.seq_len)) + 1
        if following < len(shapes):
            on_start(job.planned, shapes[following])

    def finished(job: CellJob, stopped: str | None, node: dict[str, Any]) -> None:
        cells_of_job = []
        for batch, seq in shapes:
            cell = got[id(job)].get((batch, seq))
            if cell is None:
                cell = Cell(job.planned.backend, job.planned.config, batch, seq, "failed", reason=stopped or "no result",
                            device=job.planned.device, settings=job.extra["settings"], size_mb=job.extra["size_mb"],
                            build_s=job.extra["build_s"])
                on_cell(cell)
            cells_of_job.append(replace(cell, **node) if node else cell)
        results.setdefault(job.index, []).extend(cells_of_job)
        following = position[id(job)] + 1
        if following < len(jobs):
            on_start(jobs[following].planned, shapes[0])

    executor.run(jobs, request.timeout_s, received, finished)
    return [cell for index in sorted(results) for cell in results[index]]


def run_bench(request: BenchRequest, workdir: Path, *, show_progress: bool = True, executor: Any = None) -> tuple[BenchRun, Prepared]:
    """Measure everything ``request`` asks for; artifacts are built under ``workdir`` (kept by the caller).

    ``executor`` decides where the measuring processes run (default: here, one after another);
    its ``statuses()`` say which backends can run at all (on a cluster: on any node).
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from .._version import __version__
    from ..console import err_console

    executor = executor or LocalExecutor()
    statuses = executor.statuses()
    check_config_names(request.configs)  # an unknown config is an error before anything is exported
    shapes = _shapes(request)
    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=err_console, disable=not show_progress, transient=True)
    with progress:
        bar = progress.add_task("preparing", total=None)
        report = lambda text: progress.update(bar, description=text)  # noqa: E731
        fp32, reference = source_artifact(request, workdir, report)
        cells = plan(request.backends, request.configs, statuses, task=fp32.metadata.task)  # decoder LMs add weight-only modes
        if not request.baseline_cell or all(c.skip for c in cells if c.backend != BASELINE):
            cells = [c for c in cells if c.backend != BASELINE]  # (no candidate runs: nothing to compare PyTorch with)
        progress.update(bar, total=len(cells) * len(shapes))
        image = _image_only_size(fp32)
        if fp32.metadata.task in SPEECH_TASKS:  # the encoder's input length is fixed: one shape per batch size
            request = replace(request, seq_lens=[speech_frames(fp32)[1]])
            progress.update(bar, total=len(cells) * len(_shapes(request)))
        elif image is not None:  # an image model has no sequence: one shape per batch size, at its image size
            request = replace(request, seq_lens=request.seq_lens[:1])
            progress.update(bar, total=len(cells) * len(_shapes(request)))
        elif "diffusion" in fp32.metadata.extra:  # one cell per batch size (prompts per call)
            from ..diffusion.bench import image_size

            request = replace(request, image_size=image_size(fp32, request.image_size))  # checked before any build
            progress.update(bar, total=len(cells) * len(request.batch_sizes))
        prepared = prepare(request, cells, workdir, fp32, reference, report)
        if "diffusion" in fp32.metadata.extra:  # a pipeline: whole images, all candidates in one process
            if not isinstance(executor, LocalExecutor):
                raise BenchError("--ray does not measure diffusion pipelines yet; run optibridge bench on one machine")
            from ..diffusion.bench import measure_pipelines

            progress.update(bar, description="measuring the pipelines (one process, interleaved)")
            measured = measure_pipelines(request, cells, prepared, on_cell=lambda cell: progress.advance(bar))
        else:
            measured = measure_all(
                request, cells, prepared,
                on_cell=lambda cell: progress.advance(bar),
                on_start=lambda p, shape: progress.update(bar, description=f"{p.backend}:{p.config} b{shape[0]} s{shape[1]}"),
                executor=executor,
            )
    run = BenchRun(
        model={"path": str(request.model), "task": prepared.task, "reference": reference,
               "generative": prepared.task in GENERATIVE_TASKS, **({"pipeline": True} if "diffusion" in fp32.metadata.extra else {}),
               **({"image_size": list(image)} if image is not None else {})},
        machine=describe_machine(request.threads, statuses), settings=request.settings(), cells=measured,
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), optibridge_version=__version__,
        nodes=executor.nodes(),
    )
    return run, prepared


__all__ = ["BASELINE_CONFIG", "BenchRequest", "CellJob", "LocalExecutor", "Prepared", "run_bench", "run_process"]
