"""Batch inference on Ray Data: an actor pool whose actors each load the artifact once.

Ray Data does the scheduling, the batching, the back-pressure and the retries: Ray Data creates
pool actors with ``max_restarts=-1`` and ``max_task_retries=-1`` unless told otherwise (passing
them again is deprecated in Ray 2.60), so when an actor's process dies, Ray restarts it and runs
its unfinished batches again. A batch's output is produced only by the attempt that finished, so
no row is lost or duplicated; ``optibridge run`` checks the ids anyway (tests/test_ray.py kills
an actor mid-run).
"""

from __future__ import annotations

import math
from typing import Any, Iterator

from .cluster import RayError, connect, unwrap, worker_error

class ArtifactPredictor:
    """The Ray Data UDF: a callable class, so each actor of the pool builds one :class:`Predictor`."""

    def __init__(self, predictor_args: dict[str, Any]) -> None:
        from ...batch.predict import Predictor

        self.predictor = Predictor(**predictor_args)

    def __call__(self, batch: Any) -> Any:
        return self.predictor(batch)


def map_artifact(
    dataset: Any,
    artifact: str,
    *,
    column: str = "text",
    replicas: int = 1,
    batch_size: int = 32,
    on_error: str = "skip",
    max_new_tokens: int = 32,
    max_length: int | None = None,
    labels: tuple[str, ...] = (),
    template: str = "This is a photo of {}.",
    backend: str = "auto",
    device: str = "cpu",
    session_options: dict[str, Any] | None = None,
    cpus_per_replica: float = 1.0,
    id_column: str | None = None,
    **map_batches_args: Any,
) -> Any:
    """``dataset`` with the artifact's results added to every row (lazy, like every Ray Data step).

    ``artifact`` must be a path every node can read (a shared file system, or the same path on
    each node). The result columns are those of :data:`optibridge.batch.TASK_OUTPUTS` plus
    ``error`` (null where the row ran); with ``on_error="fail"`` a rejected row fails the whole
    job instead, named by ``id_column`` where the rows have one. Other keyword arguments go to
    ``Dataset.map_batches`` (e.g. ``num_gpus=1``, ``resources={"HPU": 1}``)::

        import ray
        from optibridge.integrations.ray import map_artifact

        docs = ray.data.read_json("s3://bucket/docs/", lines=True)
        map_artifact(docs, "/shared/minilm-onnx", replicas=8).write_parquet("s3://bucket/embeddings/")
    """
    from ...batch.predict import TaskOptions

    options = TaskOptions(column=column, max_new_tokens=max_new_tokens, max_length=max_length, on_error=on_error,
                          labels=tuple(labels), template=template)  # image/audio rows: absolute paths every node can read
    predictor_args = dict(artifact=str(artifact), options=options, backend=backend, device=device,
                          session_options=dict(session_options or {}), id_column=id_column)
    return _map(dataset, predictor_args, batch_size, replicas, cpus_per_replica, **map_batches_args)


def _map(dataset: Any, predictor_args: dict[str, Any], batch_size: int, replicas: int, cpus: float, **extra: Any) -> Any:
    from ray.data import ActorPoolStrategy

    return dataset.map_batches(
        ArtifactPredictor, fn_constructor_args=(predictor_args,), batch_size=batch_size, batch_format="pyarrow",
        compute=ActorPoolStrategy(size=replicas), num_cpus=cpus, **extra,
    )


def run_pending(pending: Any, predictor_args: dict[str, Any], batch_size: int, options: Any) -> Iterator[Any]:
    """The rows of ``pending`` (a pyarrow table with the id and text columns) through an actor pool;
    yields result tables as they come back (in any order)."""
    connect(options.address)
    import ray.data

    import logging

    logging.getLogger("ray.data").setLevel(logging.ERROR)  # not lines per dataset execution on the CLI
    ray.data.DataContext.get_current().enable_progress_bars = False  # `optibridge run` draws its own
    needed = pending.select([predictor_args["id_column"], predictor_args["options"].column])
    # Enough blocks for every actor to get work, each a whole number of batches.
    per_block = batch_size * max(1, math.ceil(needed.num_rows / (batch_size * options.replicas * 4)))
    blocks = [needed.slice(start, per_block) for start in range(0, needed.num_rows, per_block)]
    dataset = _map(ray.data.from_arrow(blocks), predictor_args, batch_size, options.replicas, options.cpus_per_replica)
    try:
        yield from dataset.iter_batches(batch_format="pyarrow", batch_size=None)
    except Exception as exc:
        inner = unwrap(exc)
        if inner is not exc:
            raise inner from None
        raise RayError(f"the Ray Data job failed: {worker_error(exc)}") from exc
