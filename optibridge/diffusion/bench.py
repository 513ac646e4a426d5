"""``optibridge bench`` on a diffusion pipeline: seconds per image and per denoising step, PyTorch
vs every backend × config, peak memory, image accuracy.

The runner builds each config's artifact as for any model (:func:`optibridge.bench.runner.prepare`);
then ONE measuring process (``python -m optibridge.diffusion.bench SPEC RESULTS``) loads diffusers'
PyTorch pipeline and every candidate pipeline one after another, recording for each the rise of the
process's peak RSS while it loads and makes its first image (the peak is reset before each through
``/proc/self/clear_refs``), and that first image's difference to PyTorch's (same prompts, same
seed). Then all of them are timed in one interleaved round-robin (:func:`measure_interleaved`,
medians). A call is a whole image; the step time is measured inside it with hooks on the UNet
module (one denoiser call per step, the classifier-free-guidance batch included), so it leaves
out the text encoder, the VAE and the scheduler. No settle calls: an image takes seconds, against
the milliseconds PyTorch's spinning threads cost the next candidate.

Every candidate stays loaded for the interleaved run: memory must hold all of them at once.
The pipelines run text-to-image (an image-to-image or inpainting artifact holds those graphs too).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..bench.configs import PlannedCell, backend_options
from ..bench.schema import BASELINE, BenchError, Cell, ImageTiming, Latency
from ..staging import pid_prefix

GUIDANCE_SCALE = 7.5
SETUP_TIMEOUT_S = 300.0
"""Added to the per-candidate timeout for the process start and the PyTorch pipeline."""


def is_pipeline_input(model: str) -> bool:
    """A diffusers pipeline folder or a pipeline artifact (decides the bench defaults)."""
    from ..artifact import Artifact, is_artifact
    from .families import is_pipeline_folder

    if is_pipeline_folder(model):
        return True
    if is_artifact(model):
        try:
            return "diffusion" in Artifact.load(model).metadata.extra
        except Exception:  # an unreadable artifact is reported by the bench itself
            return False
    return False


def image_size(artifact: Any, requested: int | None) -> int:
    """The image side to bench: ``requested`` (checked) or the pipeline's native size (UNet sample size × VAE scale)."""
    from .record import diffusion_record
    from .samples import native_size

    multiple = diffusion_record(artifact).size_multiple
    if requested is None:
        return native_size(artifact)
    if requested < multiple or requested % multiple:
        raise BenchError(f"--image-size {requested} is not a multiple of {multiple} (this pipeline's VAE scale × UNet down-sampling, and diffusers' 8); "
                         f"use e.g. {max(multiple, requested // multiple * multiple)}")
    return requested


# -- the parent side (in the runner's process) ------------------------------------------------------

def measure_pipelines(request: Any, cells: list[PlannedCell], prepared: Any, on_cell: Callable[[Cell], None]) -> list[Cell]:
    """Every planned cell of a pipeline run, measured in one process; skipped and failed ones included."""
    from ..bench.process import _exit_reason, _kill, child_env

    side = image_size(prepared.fp32, request.image_size)
    candidates, results = [], {}
    for planned in cells:
        key = (planned.backend, planned.config)
        reason = planned.skip or prepared.build_errors.get(key)
        if reason:
            continue
        artifact = None if planned.backend == BASELINE else str(prepared.artifacts[key])
        size = None if artifact is None else sum(f.stat().st_size for f in Path(artifact).rglob("*") if f.is_file()) / 1e6
        candidates.append({"name": f"{planned.backend}:{planned.config}", "backend": planned.backend, "config": planned.config,
                           "device": planned.device, "artifact": artifact, "size_mb": size,
                           "options": {} if artifact is None else backend_options(planned.backend, request.threads)})
    if not any(c["backend"] == BASELINE for c in candidates):  # PyTorch's images and times are what the others are held to
        candidates.insert(0, {"name": f"{BASELINE}:eager", "backend": BASELINE, "config": "eager", "device": "cpu", "artifact": None,
                              "size_mb": None, "options": {}})
    spec = {"reference": prepared.reference, "artifact": str(prepared.fp32.path), "candidates": candidates,
            "batch_sizes": list(request.batch_sizes), "steps": request.steps, "size": side, "threads": request.threads,
            "warmup": request.warmup, "runs": request.runs, "duration_s": request.duration_s}
    stopped = None
    if candidates:
        with tempfile.TemporaryDirectory(prefix=pid_prefix("optibridge-pipeline-bench-")) as tmp:
            spec_file, out, stderr = Path(tmp) / "spec.json", Path(tmp) / "results.jsonl", Path(tmp) / "stderr.txt"
            spec_file.write_text(json.dumps(spec))
            with stderr.open("wb") as err:
                process = subprocess.Popen([sys.executable, "-m", "optibridge.diffusion.bench", str(spec_file), str(out)],
                                           stdout=subprocess.DEVNULL, stderr=err, env=child_env(), start_new_session=True)
            budget = SETUP_TIMEOUT_S + request.timeout_s * len(candidates) * len(request.batch_sizes)
            try:
                process.wait(timeout=budget)
            except subprocess.TimeoutExpired:
                _kill(process)
                stopped = f"timed out: no result within {budget:g} s (process killed)"
            except BaseException:
                _kill(process)
                raise
            if stopped is None and process.returncode != 0:
                stopped = _exit_reason(process.returncode, stderr)
            lines = out.read_text().splitlines() if out.exists() else []
        for line in lines:
            event = json.loads(line)
            if event.get("event") == "fatal":
                stopped = str(event["reason"])
            else:
                results[(event["backend"], event["config"], event["batch_size"])] = event
    measured = []
    for planned in cells:
        key = (planned.backend, planned.config)
        settings = {"threads": request.threads, **({} if planned.backend == BASELINE else backend_options(planned.backend, request.threads))}
        for batch in request.batch_sizes:
            event = results.get((planned.backend, planned.config, batch))
            reason = planned.skip or prepared.build_errors.get(key)
            if event is not None:
                cell = Cell.from_dict({k: v for k, v in event.items() if k != "event"})
            else:
                cell = Cell(planned.backend, planned.config, batch, request.steps, "skipped" if planned.skip else "failed",
                            reason=reason or stopped or "no result", device=planned.device, settings=settings,
                            build_s=prepared.build_s.get(key))
            if cell.ok and prepared.build_s.get(key) is not None:
                cell.build_s = prepared.build_s[key]
            measured.append(cell)
            on_cell(cell)
    return measured


# -- the measuring process ----------------------------------------------------------------------------

def _status_kb(field: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return float(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _reset_peak() -> bool:
    """Reset the process's peak RSS (VmHWM) to its current RSS: Linux ≥ 4.0, /proc/self/clear_refs."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


class _StepTimer:
    """Hooks on a pipeline's denoiser module (UNet or transformer): the duration of every call of the current image."""

    def __init__(self, denoiser: Any) -> None:
        self.calls: list[float] = []
        self._started = 0.0
        denoiser.register_forward_pre_hook(self._pre)
        denoiser.register_forward_hook(self._post)

    def _pre(self, *_: Any) -> None:
        self._started = time.perf_counter()

    def _post(self, *_: Any) -> None:
        self.calls.append((time.perf_counter() - self._started) * 1000.0)


def _load_family(spec: dict[str, Any]) -> Any:
    from ..artifact import Artifact
    from .record import diffusion_record

    return diffusion_record(Artifact.load(spec["artifact"])).family


def _load(candidate: dict[str, Any], spec: dict[str, Any]) -> Any:
    family = _load_family(spec)
    if candidate["artifact"] is None:
        import diffusers

        pipe = getattr(diffusers, family.tasks["text-to-image"]).from_pretrained(spec["reference"], **family.pipeline_kwargs)
        pipe.set_progress_bar_config(disable=True)
        return pipe
    from .pipelines import pipeline_class

    return pipeline_class(family.name).from_pretrained(candidate["artifact"], backend=candidate["backend"], device=candidate["device"], **candidate["options"])


def _generate(pipe: Any, batch: int, spec: dict[str, Any]) -> np.ndarray:
    import torch

    from .samples import PROMPTS

    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(batch)]
    with torch.inference_mode():
        return np.asarray(pipe(prompts, num_inference_steps=spec["steps"], guidance_scale=GUIDANCE_SCALE, height=spec["size"],
                               width=spec["size"], generator=torch.Generator().manual_seed(0), output_type="np").images)


def _emit(out: Path, event: dict[str, Any]) -> None:
    with out.open("a") as handle:
        handle.write(json.dumps(event) + "\n")


def run(spec: dict[str, Any], out: Path) -> None:
    import torch

    from ..bench.timing import measure_interleaved
    from ..errors import first_line
    from .accuracy import psnr

    torch.set_num_threads(int(spec["threads"]))
    # Imported before any memory is read, so that their libraries are not counted to the first candidate
    # (a backend's runtime library still counts to that backend's first candidate).
    import diffusers  # noqa: F401

    from . import pipelines  # noqa: F401

    loaded: dict[str, dict[str, Any]] = {}
    for candidate in spec["candidates"]:
        name = candidate["name"]
        base = {"backend": candidate["backend"], "config": candidate["config"], "device": candidate["device"],
                "settings": {"threads": spec["threads"], **candidate["options"]}, "size_mb": candidate["size_mb"]}
        exact = _reset_peak()
        before = _status_kb("VmRSS") or 0.0
        try:
            started = time.perf_counter()
            pipe = _load(candidate, spec)
            load_s = time.perf_counter() - started
            timer = _StepTimer(getattr(pipe, _load_family(spec).denoiser))
            first = {batch: _generate(pipe, batch, spec) for batch in spec["batch_sizes"]}
        except Exception as exc:
            for batch in spec["batch_sizes"]:
                _emit(out, {"event": "cell", **base, "batch_size": batch, "seq_len": spec["steps"], "status": "failed",
                            "reason": f"{type(exc).__name__}: {first_line(exc)}"})
            if candidate["backend"] == BASELINE:
                _emit(out, {"event": "fatal", "reason": f"the PyTorch pipeline failed: {first_line(exc)}"})
                return
            continue
        peak = _status_kb("VmHWM" if exact else "VmRSS") or 0.0
        if candidate["backend"] != BASELINE:
            base["settings"]["inference_precision"] = str(getattr(pipe, "inference_precision", None) or "f32")
        loaded[name] = {"pipe": pipe, "timer": timer, "first": first, "base": base, "load_s": load_s,
                        "delta_mb": (peak - before) * 1024 / 1e6, "peak_mb": (_status_kb("VmHWM") or 0.0) * 1024 / 1e6}
    reference = loaded.get(f"{BASELINE}:eager")
    for batch in spec["batch_sizes"]:
        steps_per_call: dict[str, list[float]] = {name: [] for name in loaded}

        def call(name: str, batch: int = batch) -> Callable[[], object]:
            entry = loaded[name]

            def once() -> None:
                entry["timer"].calls.clear()
                _generate(entry["pipe"], batch, spec)
                steps_per_call[name].append(float(np.mean(entry["timer"].calls)))
            return once

        stats = measure_interleaved({name: call(name) for name in loaded}, warmup=spec["warmup"], runs=spec["runs"],
                                    max_seconds=spec["duration_s"], settle=0)
        step_ms = {name: float(np.median(steps_per_call[name][-stats[name].runs:])) for name in loaded}
        baseline = stats.get(f"{BASELINE}:eager")
        for name, entry in loaded.items():
            accuracy: dict[str, Any] = {}
            if reference is not None and entry is not reference:
                want, got = reference["first"][batch].astype(np.float64), entry["first"][batch].astype(np.float64)
                diff = np.abs(want - got)
                value = psnr(want, got)
                accuracy = {"mean_abs_pixel_diff": float(diff.mean()), "max_abs_pixel_diff": float(diff.max()),
                            "psnr_db": None if math.isinf(value) else value}
            is_base = entry is reference
            images = ImageTiming(spec["steps"], spec["size"], spec["size"], step_ms[name], entry["delta_mb"],
                                 None if baseline is None or is_base else step_ms[f"{BASELINE}:eager"], **accuracy)
            latency = Latency.from_stats(stats[name])
            _emit(out, {"event": "cell", **entry["base"], "batch_size": batch, "seq_len": spec["steps"], "status": "ok",
                        "latency": latency.__dict__, "baseline": None if baseline is None or is_base else Latency.from_stats(baseline).__dict__,
                        "speedup": 1.0 if baseline is None or is_base else stats[name].ratio_to(baseline),
                        "throughput_samples_s": batch / (stats[name].median / 1000.0), "load_s": entry["load_s"],
                        "peak_rss_mb": entry["peak_mb"], "images": images.__dict__})


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    spec, out = json.loads(Path(args[0]).read_text()), Path(args[1])
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    try:
        run(spec, out)
    except BaseException as exc:  # say it in the results, then fail
        _emit(out, {"event": "fatal", "reason": f"{type(exc).__name__}: {exc}".splitlines()[0]})
        traceback.print_exc()
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
