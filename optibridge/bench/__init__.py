"""Benchmark helpers shared by ``examples/demo.py``, ``benchmarks/`` and the ``optibridge bench`` command.

Imports only numpy and the standard library (no runtime), so it is cheap to import anywhere.
"""

from __future__ import annotations

from .timing import TimingStats, measure_interleaved

__all__ = ["TimingStats", "measure_interleaved"]
