"""Batch inference: an artifact's task over every row of a file (``optibridge run``).

* :func:`run_file` -- .jsonl/.parquet/.txt in, .parquet out, in this process or on Ray
  (``ray=RayOptions(...)``), resumable, written atomically;
* :class:`Predictor` -- loads an artifact once and runs its task on a pyarrow table of rows
  (what each Ray actor holds; see :func:`optibridge.integrations.ray.map_artifact`).

Importing this package imports no runtime and no pyarrow.
"""

from __future__ import annotations

from .predict import TASK_OUTPUTS, Predictor, RowError, TaskOptions
from .run import RayOptions, RunResult, run_file

__all__ = ["TASK_OUTPUTS", "Predictor", "RayOptions", "RowError", "RunResult", "TaskOptions", "run_file"]
