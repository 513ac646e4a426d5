"""Ray: batch inference with Ray Data actor pools, and benchmark cells as Ray tasks.

``pip install 'optibridge[ray]'``. Nothing here imports ray until a function is called, so
``import optibridge.integrations.ray`` is cheap and works without Ray installed.

* :func:`map_artifact` -- add an artifact's results to a Ray Data ``Dataset`` (your own pipeline:
  ``ray.data.read_parquet(...)`` in, ``write_parquet(...)`` out);
* :class:`ArtifactPredictor` -- the callable class each actor of the pool holds;
* :func:`connect` -- ``ray.init`` with one-line errors (used by ``optibridge run --ray`` and
  ``optibridge bench --ray``).
"""

from __future__ import annotations

from .cluster import connect, require_ray
from .data import ArtifactPredictor, map_artifact

__all__ = ["ArtifactPredictor", "connect", "map_artifact", "require_ray"]
