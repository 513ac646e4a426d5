"""Tests for ``optibridge.bench.timing``, made deterministic with a fake clock."""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
import time

import numpy as np
import pytest

from optibridge.bench import TimingStats, measure_interleaved


class FakeClock:
    """A clock (in seconds) that only moves when a fake workload says so."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def advance_ms(self, ms: float) -> None:
        self.now += ms / 1000.0


def fake_workload(clock: FakeClock, log: list[str], name: str, durations_ms: list[float]):
    """A callable that logs its name and 'takes' the next of ``durations_ms`` (the last one repeats)."""
    calls = iter(durations_ms)
    last = [durations_ms[-1]]

    def run() -> str:
        log.append(name)
        last[0] = next(calls, last[0])
        clock.advance_ms(last[0])
        return name

    return run


# -- interleaving ----------------------------------------------------------------------------

def test_rounds_rotate_the_starting_candidate():
    clock, log = FakeClock(), []
    candidates = {n: fake_workload(clock, log, n, [1.0]) for n in "ABC"}
    measure_interleaved(candidates, warmup=0, runs=4, clock=clock)
    assert log == list("ABC" "BCA" "CAB" "ABC")


def test_warmup_is_interleaved_untimed_and_precedes_timed_calls():
    clock, log = FakeClock(), []
    # Warm-up calls are slow (first-call costs); timed calls are fast. None of the slow ones may
    # leak into the samples.
    a = fake_workload(clock, log, "A", [500.0, 500.0, 2.0])
    b = fake_workload(clock, log, "B", [700.0, 700.0, 4.0])
    stats = measure_interleaved({"A": a, "B": b}, warmup=2, runs=3, clock=clock)
    assert log == list("AB" "BA") + list("AB" "BA" "AB")
    assert stats["A"].samples == pytest.approx((2.0, 2.0, 2.0))
    assert stats["B"].samples == pytest.approx((4.0, 4.0, 4.0))


def test_each_sample_times_only_its_own_call():
    clock, log = FakeClock(), []
    a = fake_workload(clock, log, "A", [1.0, 3.0, 5.0])
    b = fake_workload(clock, log, "B", [10.0, 30.0, 50.0])
    stats = measure_interleaved({"A": a, "B": b}, warmup=0, runs=3, clock=clock)
    # Samples stay in call order per candidate, in milliseconds.
    assert stats["A"].samples == pytest.approx((1.0, 3.0, 5.0))
    assert stats["B"].samples == pytest.approx((10.0, 30.0, 50.0))


def test_result_keeps_candidate_order_and_single_candidate_works():
    clock, log = FakeClock(), []
    stats = measure_interleaved(
        {"z": fake_workload(clock, log, "z", [1.0]), "a": fake_workload(clock, log, "a", [1.0])},
        warmup=0, runs=1, clock=clock,
    )
    assert list(stats) == ["z", "a"]
    solo = measure_interleaved({"only": fake_workload(clock, [], "only", [2.5])}, warmup=1, runs=5, clock=clock)
    assert solo["only"].samples == pytest.approx((2.5,) * 5)


def test_max_seconds_finishes_the_round_and_keeps_counts_equal():
    clock, log = FakeClock(), []
    a = fake_workload(clock, log, "A", [100.0])
    b = fake_workload(clock, log, "B", [300.0])
    # Each round takes 0.4 s: after round 3 the timed part has used 1.2 s >= 1.0 s.
    stats = measure_interleaved({"A": a, "B": b}, warmup=1, runs=50, max_seconds=1.0, clock=clock)
    assert stats["A"].runs == stats["B"].runs == 3
    assert log == list("AB") + list("AB" "BA" "AB")  # warm-up round, then 3 timed rounds


def test_max_seconds_still_measures_one_round():
    clock, log = FakeClock(), []
    stats = measure_interleaved(
        {"A": fake_workload(clock, log, "A", [5000.0])}, warmup=0, runs=10, max_seconds=0.001, clock=clock,
    )
    assert stats["A"].samples == pytest.approx((5000.0,))


def test_settle_calls_precede_each_timed_call_untimed():
    clock, log = FakeClock(), []
    # Each candidate's first call after another candidate is slow (300 ms, "disturbed"); a call
    # right after its own call is fast. settle=1 must time only the fast, steady-state calls.
    last = [None]

    def workload(name: str, fast_ms: float):
        def run() -> None:
            log.append(name)
            clock.advance_ms(fast_ms if last[0] == name else 300.0)
            last[0] = name
        return run

    candidates = {"A": workload("A", 3.0), "B": workload("B", 6.0)}
    stats = measure_interleaved(candidates, warmup=1, runs=2, settle=1, clock=clock)
    # warm-up round (no settle calls), then per timed call: settle call + timed call
    assert log == ["A", "B"] + ["A", "A", "B", "B"] + ["B", "B", "A", "A"]
    assert stats["A"].samples == pytest.approx((3.0, 3.0))
    assert stats["B"].samples == pytest.approx((6.0, 6.0))
    # without settle calls every timed call is a disturbed one
    last[0] = None
    unsettled = measure_interleaved(candidates, warmup=0, runs=2, clock=clock)
    assert unsettled["A"].samples == pytest.approx((300.0, 300.0))


def test_settle_calls_count_against_max_seconds():
    clock = FakeClock()
    stats = measure_interleaved(
        {"A": fake_workload(clock, [], "A", [100.0]), "B": fake_workload(clock, [], "B", [100.0])},
        warmup=0, runs=100, max_seconds=1.0, settle=2, clock=clock,
    )
    # A round is 2 candidates x 3 calls x 100 ms = 0.6 s: the budget is used up after 2 rounds.
    assert stats["A"].runs == stats["B"].runs == 2


@pytest.mark.parametrize(
    "kwargs",
    [dict(runs=0), dict(warmup=-1), dict(max_seconds=0), dict(max_seconds=-1.0), dict(settle=-1)],
)
def test_bad_arguments_are_rejected(kwargs):
    with pytest.raises(ValueError):
        measure_interleaved({"A": lambda: None}, **kwargs)


def test_no_candidates_is_an_error():
    with pytest.raises(ValueError, match="at least one candidate"):
        measure_interleaved({})


def test_real_clock_orders_coarsely_different_sleeps():
    # The only real-time check: 20 ms vs 1 ms sleeps differ far beyond any scheduler noise.
    stats = measure_interleaved(
        {"slow": lambda: time.sleep(0.020), "fast": lambda: time.sleep(0.001)}, warmup=1, runs=3,
    )
    assert stats["slow"].median > stats["fast"].median
    assert stats["slow"].min >= 19.0
    assert stats["fast"].ratio_to(stats["slow"]) > 1.0


# -- statistics --------------------------------------------------------------------------------

def test_statistics_of_known_samples():
    stats = TimingStats((4.0, 1.0, 3.0, 2.0, 100.0))
    assert stats.runs == 5
    assert stats.median == 3.0  # the 100 ms outlier does not move it...
    assert stats.mean == 22.0  # ...but drags the mean far up
    assert stats.min == 1.0
    assert stats.stdev == pytest.approx(statistics.stdev([4.0, 1.0, 3.0, 2.0, 100.0]))
    # by hand: deviations from 22 are -18, -21, -19, -20, 78; (324+441+361+400+6084) / 4 = 1902.5
    assert stats.stdev == pytest.approx(math.sqrt(1902.5))
    # Linear interpolation: sorted (1, 2, 3, 4, 100), rank 0.9 * 4 = 3.6 -> 4 + 0.6 * 96
    assert stats.p90 == pytest.approx(61.6)
    assert stats.p90 == pytest.approx(float(np.percentile([1, 2, 3, 4, 100], 90)))


def test_even_count_median_and_single_sample():
    assert TimingStats((1.0, 2.0, 3.0, 10.0)).median == 2.5
    one = TimingStats((7.0,))
    assert (one.median, one.p90, one.mean, one.min, one.stdev) == (7.0, 7.0, 7.0, 7.0, 0.0)


def test_samples_are_stored_as_a_float_tuple_and_empty_is_rejected():
    stats = TimingStats([1, 2, 3])  # type: ignore[arg-type]
    assert stats.samples == (1.0, 2.0, 3.0) and all(isinstance(s, float) for s in stats.samples)
    with pytest.raises(ValueError):
        TimingStats(())


def test_ratio_is_the_speed_up_over_the_other():
    slow = TimingStats((30.0, 30.0, 30.0))
    fast = TimingStats((10.0, 12.0, 500.0))  # median 12: the outlier does not count
    assert fast.ratio_to(slow) == pytest.approx(2.5)
    assert slow.ratio_to(fast) == pytest.approx(0.4)
    assert slow.ratio_to(slow) == 1.0
    assert TimingStats((0.0,)).ratio_to(slow) == math.inf


def test_ratio_from_measured_fake_workloads():
    clock, log = FakeClock(), []
    stats = measure_interleaved(
        {"torch": fake_workload(clock, log, "torch", [40.0, 44.0, 42.0, 400.0]),
         "ort": fake_workload(clock, log, "ort", [20.0, 21.0, 19.0, 20.0])},
        warmup=0, runs=4, clock=clock,
    )
    assert stats["torch"].median == pytest.approx(43.0)
    assert stats["ort"].median == pytest.approx(20.0)
    assert stats["ort"].ratio_to(stats["torch"]) == pytest.approx(43.0 / 20.0)


def test_looks_noisy_flags_a_slow_median_or_a_long_tail():
    assert not TimingStats((10.0, 10.5, 11.0, 10.2, 10.8)).looks_noisy()
    # one huge outlier alone leaves median and p90 (of 20 samples) in place: not noisy
    assert not TimingStats((10.0,) * 19 + (500.0,)).looks_noisy()
    # most calls slowed down (median 3x the fastest): a competing process
    assert TimingStats((10.0, 30.0, 31.0, 29.0, 30.0)).looks_noisy()
    # a long tail: p90 far above the median
    assert TimingStats((10.0,) * 8 + (40.0, 40.0)).looks_noisy()
    assert not TimingStats((10.0,) * 8 + (40.0, 40.0)).looks_noisy(factor=5.0)


def test_to_dict_is_json_serialisable():
    data = TimingStats((1.0, 2.0, 3.0)).to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["median_ms"] == 2.0 and data["runs"] == 3 and data["samples_ms"] == [1.0, 2.0, 3.0]


def test_importing_the_bench_package_loads_no_runtime():
    code = (
        "import sys, optibridge.bench; "
        "bad = [m for m in ('torch', 'onnxruntime', 'transformers', 'onnx') if m in sys.modules]; "
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
