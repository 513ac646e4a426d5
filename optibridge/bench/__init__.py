"""Benchmarks: the timing core shared by ``examples/demo.py`` and ``benchmarks/``, and ``optibridge bench`` / ``tune``.

Importing this package imports only numpy and the standard library (no runtime, no matplotlib):
the modules below load what they need inside their functions.

* :mod:`.timing`   -- interleaved timing with settle calls; :class:`TimingStats`
* :mod:`.schema`   -- :class:`BenchRun` / :class:`Cell`, the versioned JSON form (:func:`load_run`, :func:`save_run`)
* :mod:`.configs`  -- the named configurations and which run on which backend here
* :mod:`.runner`   -- builds artifacts once, measures each backend × config in its own process
* :mod:`.measure`  -- the measuring process itself
* :mod:`.machine`  -- CPU, memory, GPU, versions; the machine fingerprint
* :mod:`.report`   -- terminal table, Markdown, PNG chart
* :mod:`.compare`, :mod:`.matrix`, :mod:`.tune` -- ``--compare``, ``--update-matrix``, ``optibridge tune``
"""

from __future__ import annotations

from .schema import SCHEMA_VERSION, BenchRun, Cell, load_run, save_run
from .timing import TimingStats, measure_interleaved

__all__ = ["SCHEMA_VERSION", "BenchRun", "Cell", "TimingStats", "load_run", "measure_interleaved", "save_run"]
