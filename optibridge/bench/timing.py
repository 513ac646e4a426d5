"""Latency measurement for comparing runtimes fairly on shared, noisy machines.

Two choices make the numbers trustworthy without a quiet, dedicated box:

* **Interleaving.** Candidates run round-robin (A B C, B C A, C A B, ...) instead of all runs of
  A, then all runs of B. Slow drift on the machine -- another tenant's job, thermal throttling,
  a noisy neighbour on a shared VM, CPU frequency changes -- then hits every candidate alike,
  instead of landing on whichever one happened to run during the bad minute. The starting
  candidate rotates each round, so none is always the first call of a round.
* **Medians.** One latency spike (a page fault, a garbage collection, a context switch) moves the
  mean a lot and the median not at all. Compare medians; p90 and stdev show how noisy it was.

Interleaving has one trap: runtimes in one process disturb each other. PyTorch's OpenMP worker
threads keep spin-waiting for a few milliseconds after each op, so whatever runs right after a
PyTorch call finds the cores busy (measured: ONNX Runtime on MiniLM, batch 1, 2 cores: 13.7 ms
right after a PyTorch call, 10.7 ms right after another ORT call). Pass ``settle=1`` to precede
every timed call with an untimed call of the same candidate: it absorbs whatever the previous
candidate left behind (busy threads, its weights in the caches), so each timed call sees the
steady state of a loop that runs only that candidate. Sleeping between calls instead is worse:
too short a sleep leaves the spinning, too long a one (20 ms and up) lets threads and CPU clocks
go idle, and the timed call is slower either way.

Only numpy and the standard library are imported: nothing here knows about any runtime, so the
same helper times PyTorch, ONNX Runtime, or any other zero-argument callable.

    from optibridge.bench import measure_interleaved

    stats = measure_interleaved({"pytorch": run_torch, "onnxruntime": run_ort}, warmup=5, runs=30, settle=1)
    print(f"{stats['onnxruntime'].ratio_to(stats['pytorch']):.2f}x faster")
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np

__all__ = ["TimingStats", "measure_interleaved"]

Clock = Callable[[], float]


@dataclass(frozen=True)
class TimingStats:
    """The latencies of one candidate, in milliseconds, in the order they were measured."""

    samples: tuple[float, ...]

    def __post_init__(self) -> None:
        if not self.samples:
            raise ValueError("TimingStats needs at least one sample")
        # Accept any iterable of numbers (a list, a numpy array) but store an immutable tuple.
        object.__setattr__(self, "samples", tuple(float(s) for s in self.samples))

    @property
    def runs(self) -> int:
        """How many timed calls the statistics are over."""
        return len(self.samples)

    @property
    def median(self) -> float:
        """Median latency (ms): the number to compare."""
        return float(statistics.median(self.samples))

    @property
    def p90(self) -> float:
        """90th percentile latency (ms), linearly interpolated between samples."""
        return self.percentile(90)

    @property
    def p99(self) -> float:
        """99th percentile latency (ms); with few samples it is close to the slowest call."""
        return self.percentile(99)

    def percentile(self, q: float) -> float:
        """The ``q``-th percentile latency (ms), linearly interpolated between samples."""
        return float(np.percentile(np.asarray(self.samples, dtype=np.float64), q))

    @property
    def mean(self) -> float:
        """Mean latency (ms); pulled up by outliers, unlike the median."""
        return float(statistics.fmean(self.samples))

    @property
    def stdev(self) -> float:
        """Sample standard deviation (ms); 0.0 for a single sample."""
        return float(statistics.stdev(self.samples)) if len(self.samples) > 1 else 0.0

    @property
    def min(self) -> float:
        """Fastest call (ms)."""
        return float(min(self.samples))

    def ratio_to(self, other: "TimingStats") -> float:
        """Speed-up of this candidate over ``other``: ``other.median / self.median``.

        Above 1 means this one is faster (2.0 = twice as fast); below 1 means slower.
        """
        if self.median <= 0:
            return math.inf if other.median > 0 else math.nan
        return other.median / self.median

    def looks_noisy(self, factor: float = 1.5) -> bool:
        """Whether the samples spread so much that the median is suspect: the median is over
        ``factor`` times the fastest call, or p90 over ``factor`` times the median.

        The typical cause is another process competing for the cores; PyTorch's OpenMP thread
        pool, which spin-waits at barriers, can slow down many-fold then (measured on 2 cores with
        one busy process beside it: median x2.4, p90 x7). Re-run on a quieter machine.
        """
        return self.median > factor * self.min or self.p90 > factor * self.median

    def to_dict(self) -> dict[str, Any]:
        """The statistics and raw samples, ready for ``json.dump``."""
        return {
            "runs": self.runs,
            "median_ms": self.median,
            "p90_ms": self.p90,
            "mean_ms": self.mean,
            "stdev_ms": self.stdev,
            "min_ms": self.min,
            "looks_noisy": self.looks_noisy(),
            "samples_ms": list(self.samples),
        }

    def __str__(self) -> str:
        return f"median {self.median:.2f} ms (p90 {self.p90:.2f}, min {self.min:.2f}, n={self.runs})"


def measure_interleaved(
    candidates: Mapping[str, Callable[[], object]],
    *,
    warmup: int = 3,
    runs: int = 20,
    max_seconds: float | None = None,
    settle: int = 0,
    clock: Clock = time.perf_counter,
) -> dict[str, TimingStats]:
    """Time zero-argument callables against each other, interleaved; returns stats per name.

    Each candidate is first called ``warmup`` times, untimed (lazy initialisation, allocator and
    cache warm-up), in the same rotating round-robin order as the timed part. Then ``runs`` rounds
    are timed: round ``r`` calls every candidate once, starting at candidate ``r % n`` (A B C,
    B C A, C A B, ...), timing each call alone with ``clock`` (seconds; default
    ``time.perf_counter``).

    ``settle`` untimed calls of a candidate run right before each of its timed calls, so that
    what the previous candidate left behind (PyTorch's OpenMP threads still spinning, its own
    data in the caches) is absorbed by them and not timed; see the module docstring. Use
    ``settle=1`` whenever candidates are different runtimes in one process. It multiplies the
    number of calls by ``1 + settle``.

    ``max_seconds`` caps the timed part (settle calls included): once that much time has passed,
    the current round is finished (so every candidate keeps the same number of samples) and
    measuring stops, after at least one round. Warm-up does not count against it.

    ``clock`` is injectable so tests can run on a fake clock.

    The result keeps the order of ``candidates``. Return values of the callables are discarded;
    make sure each call does the complete work (no lazy results left unevaluated).
    """
    names = list(candidates)
    if not names:
        raise ValueError("measure_interleaved needs at least one candidate")
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, not {warmup}")
    if runs < 1:
        raise ValueError(f"runs must be >= 1, not {runs}")
    if max_seconds is not None and not max_seconds > 0:
        raise ValueError(f"max_seconds must be > 0 (or None for no limit), not {max_seconds}")
    if settle < 0:
        raise ValueError(f"settle must be >= 0, not {settle}")
    calls = [candidates[name] for name in names]
    count = len(calls)

    for round_index in range(warmup):
        for position in range(count):
            calls[(round_index + position) % count]()

    samples: list[list[float]] = [[] for _ in names]
    started = clock()
    for round_index in range(runs):
        for position in range(count):
            index = (round_index + position) % count
            call = calls[index]
            for _ in range(settle):
                call()
            before = clock()
            call()
            after = clock()
            samples[index].append((after - before) * 1000.0)
        if max_seconds is not None and clock() - started >= max_seconds:
            break
    return {name: TimingStats(tuple(values)) for name, values in zip(names, samples)}
