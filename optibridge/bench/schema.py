"""The result of a benchmark run as typed values, and its versioned JSON form.

``results.json`` (written by ``optibridge bench --out DIR``) is :meth:`BenchRun.to_dict`;
:func:`load_run` reads it back, checking ``schema_version``, so ``load_run(save_run(run)) == run``.
Bump :data:`SCHEMA_VERSION` when a field is added, removed or changes meaning: readers refuse
unknown fields and other versions, so an older optibridge says so instead of dropping data.

Every time is in milliseconds (``*_ms``) or seconds (``*_s``), sizes in MB (10^6 bytes).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from ..accuracy import AccuracyReport
from ..errors import OptibridgeError

if TYPE_CHECKING:
    from .timing import TimingStats

SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)
"""Version 2 added :attr:`Cell.images` (diffusion pipelines); a version-1 file reads unchanged."""
STATUSES = ("ok", "failed", "skipped")
BASELINE = "pytorch"
"""The backend name of the PyTorch eager baseline, always measured."""


class BenchError(OptibridgeError):
    """A benchmark request or results file is wrong (unknown config, unreadable JSON, newer schema)."""


@dataclass(frozen=True)
class Latency:
    """Latency statistics of one candidate in one cell, in milliseconds."""

    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    stdev_ms: float
    min_ms: float
    runs: int
    noisy: bool = False
    """The spread says another process was busy (see ``TimingStats.looks_noisy``)."""

    @classmethod
    def from_stats(cls, stats: "TimingStats") -> "Latency":
        return cls(stats.median, stats.p90, stats.p99, stats.mean, stats.stdev, stats.min, stats.runs, stats.looks_noisy())


@dataclass(frozen=True)
class Generation:
    """Decoder LMs: greedy generation of ``new_tokens`` tokens after a prompt of ``seq_len`` tokens."""

    new_tokens: int
    prefill_ms: float
    """Median latency of the forward pass over the prompt (the first token)."""
    decode_ms_per_token: float
    """(generate - prefill) / (new_tokens - 1), from the medians."""
    tokens_per_s: float
    """batch_size * new_tokens / median generate latency."""


@dataclass(frozen=True)
class ImageTiming:
    """Diffusion pipelines: one call makes ``batch_size`` images of ``height``×``width`` in ``steps``
    denoising steps (the cell's ``seq_len`` is ``steps``; ``latency`` is per call, i.e. per image at batch 1)."""

    steps: int
    height: int
    width: int
    step_ms: float
    """Median over the timed calls of the mean denoiser (UNet) call: one denoising step, CFG batch included."""
    peak_rss_delta_mb: float
    """Rise of the process's peak resident memory while loading the pipeline and making its first image."""
    baseline_step_ms: float | None = None
    """PyTorch's ``step_ms`` in the same interleaved run."""
    mean_abs_pixel_diff: float | None = None
    """Against PyTorch's images (pixels in [0, 1]), same prompts and seeds; None for PyTorch itself."""
    max_abs_pixel_diff: float | None = None
    psnr_db: float | None = None


def _sub(kind: type, value: Any) -> Any:
    return None if value is None else kind(**value)


@dataclass
class Cell:
    """One backend × config × batch size × sequence length, measured in its own process."""

    backend: str
    config: str
    batch_size: int
    seq_len: int
    status: str
    """"ok", "failed" (crashed, hung, raised: see ``reason``) or "skipped" (not runnable here: see ``reason``)."""
    reason: str | None = None
    device: str = "cpu"
    latency: Latency | None = None
    """The candidate (for generative models: the whole generate call)."""
    baseline: Latency | None = None
    """PyTorch eager, measured interleaved with the candidate in the same process."""
    speedup: float | None = None
    """baseline p50 / candidate p50: above 1 means faster than PyTorch eager."""
    throughput_samples_s: float | None = None
    generation: Generation | None = None
    baseline_generation: Generation | None = None
    load_s: float | None = None
    """Loading (and compiling) the model in the cell process."""
    build_s: float | None = None
    """Building the config's artifact (optimize/quantize step), once per backend and config."""
    size_mb: float | None = None
    peak_rss_mb: float | None = None
    """High-water mark of the cell process's resident memory after loading and running the
    candidate, before the PyTorch reference is loaded (interpreter and libraries included)."""
    accuracy: AccuracyReport | None = None
    """Against PyTorch eager on the same inputs."""
    settings: dict[str, Any] = field(default_factory=dict)
    """Backend options the candidate ran with (threads, precision hints)."""
    machine: str | None = None
    """Fingerprint of the machine that measured the cell (``optibridge bench --ray``; see
    ``BenchRun.nodes``); None: the run's own machine."""
    ray_node: str | None = None
    """The Ray node id the cell ran on (``--ray`` only)."""
    images: ImageTiming | None = None
    """Diffusion pipelines only: per-step time, memory and image accuracy (see :class:`ImageTiming`)."""

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise BenchError(f"cell status {self.status!r} is not one of {', '.join(STATUSES)}")

    @property
    def name(self) -> str:
        return f"{self.backend}:{self.config}"

    @property
    def label(self) -> str:
        """The name, with the measuring machine's fingerprint when that is not the run's own machine."""
        return f"{self.name} @{self.machine}" if self.machine else self.name

    @property
    def key(self) -> tuple[str, str, int, int]:
        return (self.backend, self.config, self.batch_size, self.seq_len)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        for name in ("latency", "baseline", "generation", "baseline_generation", "images"):
            data[name] = None if data[name] is None else asdict(data[name])
        data["accuracy"] = None if self.accuracy is None else self.accuracy.to_dict()
        data["settings"] = dict(self.settings)
        for name in ("machine", "ray_node", "images"):  # only cluster runs / pipelines have them: local results stay as they were
            if data[name] is None:
                del data[name]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Cell":
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise BenchError(f"unknown cell field(s) {', '.join(unknown)}: written by a newer optibridge?")
        values = dict(data)
        values["latency"] = _sub(Latency, values.get("latency"))
        values["baseline"] = _sub(Latency, values.get("baseline"))
        values["generation"] = _sub(Generation, values.get("generation"))
        values["baseline_generation"] = _sub(Generation, values.get("baseline_generation"))
        values["images"] = _sub(ImageTiming, values.get("images"))
        if values.get("accuracy") is not None:
            values["accuracy"] = AccuracyReport.from_dict(values["accuracy"])
        return cls(**values)


@dataclass
class BenchRun:
    """A whole run: what was measured, where, how, and every cell (failed and skipped ones too)."""

    model: dict[str, Any]
    """path, task, reference (the PyTorch model compared against), generative."""
    machine: dict[str, Any]
    """See :func:`optibridge.bench.machine.describe_machine`; ``fingerprint`` keys the hardware matrix."""
    settings: dict[str, Any]
    """backends, configs, batch_sizes, seq_lens, warmup, runs, duration_s, threads, timeout_s, new_tokens."""
    cells: list[Cell] = field(default_factory=list)
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    """``--ray`` runs: the machine record of every fingerprint a cell names (``Cell.machine``)."""
    created: str = ""
    optibridge_version: str = ""
    schema_version: int = SCHEMA_VERSION

    def cell(self, backend: str, config: str, batch_size: int, seq_len: int) -> Cell | None:
        return next((c for c in self.cells if c.key == (backend, config, batch_size, seq_len)), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "optibridge_version": self.optibridge_version,
            "created": self.created,
            "model": dict(self.model),
            "machine": dict(self.machine),
            "settings": dict(self.settings),
            "cells": [c.to_dict() for c in self.cells],
            **({"nodes": {k: dict(v) for k, v in self.nodes.items()}} if self.nodes else {}),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "BenchRun":
        version = data.get("schema_version")
        if version not in READABLE_VERSIONS:
            newer = isinstance(version, int) and version > SCHEMA_VERSION
            raise BenchError(
                f"benchmark results have schema_version {version!r}; this optibridge reads version {SCHEMA_VERSION}"
                + (": upgrade optibridge" if newer else ": not an optibridge bench results.json?")
            )
        missing = [k for k in ("model", "machine", "settings", "cells") if k not in data]
        if missing:
            raise BenchError(f"benchmark results lack {', '.join(missing)}")
        return cls(
            model=dict(data["model"]), machine=dict(data["machine"]), settings=dict(data["settings"]),
            cells=[Cell.from_dict(c) for c in data["cells"]], nodes=dict(data.get("nodes") or {}), created=str(data.get("created", "")),
            optibridge_version=str(data.get("optibridge_version", "")), schema_version=version,
        )


def save_run(run: BenchRun, path: str | os.PathLike[str]) -> Path:
    """Write ``run`` as JSON (atomically: a temp file renamed into place)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(run.to_dict(), indent=2) + "\n")
    os.replace(tmp, path)
    return path


def load_run(path: str | os.PathLike[str]) -> BenchRun:
    """Read and check a results file written by :func:`save_run`."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise BenchError(f"cannot read benchmark results {path}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise BenchError(f"{path} is not JSON ({exc.msg} at line {exc.lineno}); pass a results.json written by `optibridge bench --out`") from None
    if not isinstance(data, dict):
        raise BenchError(f"{path} is not a benchmark results object")
    return BenchRun.from_dict(data)
