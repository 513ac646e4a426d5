"""``run_file``: an artifact's task over every row of a file, in this process or on Ray.

The caller's process reads the input, decides which shards are still to do, and assembles the
results that come back (from its own :class:`Predictor`, or from a Ray Data actor pool) into
shards by row id. A shard is written once all its rows are in; a row id that comes back twice is
an error, never a duplicate row in the output.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from ..errors import InputError, OptibridgeError
from ..image_placeholders import DEFAULT_IMAGE_PROMPT
from .files import Shards, read_input, require_pyarrow, run_key
from .predict import ERROR_COLUMN, Predictor, RowError, TaskOptions, output_schema

ProgressCallback = Callable[[int, int], None]
"""Called with (rows done, rows in the file) as results come in."""


@dataclass(frozen=True)
class RayOptions:
    """Run on Ray Data: ``address`` as ``ray.init`` takes it (None: start a local cluster)."""

    address: str | None = None
    replicas: int = 1
    """Actors in the pool; each loads the artifact once."""
    cpus_per_replica: float = 1.0

    def __post_init__(self) -> None:
        if self.replicas < 1 or self.cpus_per_replica <= 0:
            raise InputError(f"need --replicas >= 1 and CPUs per replica > 0, not {self.replicas} and {self.cpus_per_replica}")


@dataclass
class RunResult:
    """What a run did: rows written, rows that failed (``on_error="skip"``), time, shards resumed."""

    output: Path
    task: str
    rows: int
    rows_run: int
    """Rows computed by this call (the others came from shards of an earlier, interrupted run)."""
    seconds: float
    failed_rows: list[tuple[int, str]] = field(default_factory=list)
    shards: int = 0
    shards_resumed: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def rows_per_s(self) -> float:
        return self.rows_run / self.seconds if self.seconds > 0 else 0.0


def run_file(
    artifact: str | os.PathLike[str],
    input_path: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    column: str = "text",
    batch_size: int = 32,
    on_error: str = "fail",
    max_new_tokens: int = 32,
    max_length: int | None = None,
    labels: Sequence[str] = (),
    template: str = "This is a photo of {}.",
    threshold: float = 0.5,
    prompt: str = DEFAULT_IMAGE_PROMPT,
    backend: str = "auto",
    device: str = "cpu",
    session_options: dict[str, Any] | None = None,
    shard_size: int = 1000,
    id_column: str = "id",
    ray: RayOptions | None = None,
    on_progress: ProgressCallback | None = None,
) -> RunResult:
    """Run the artifact's task over every row of ``input_path`` (.jsonl/.parquet/.txt) into ``output`` (.parquet).

    The output has ``id_column`` (the row's position in the input, 0-based), the input's columns,
    the task's result columns (see :mod:`optibridge.batch.predict`) and ``error``; rows are in
    input order. It is written atomically; an interrupted run leaves finished shards in
    ``OUTPUT.parts/`` and the same call resumes from them. With ``ray`` the rows go through a Ray
    Data actor pool (``pip install 'optibridge[ray]'``); the result is the same.
    """
    artifact, input_path, output = Path(artifact), Path(input_path), Path(output)
    if output.suffix.lower() != ".parquet":
        raise InputError(f"the output must be a .parquet file, not {output.name}")
    if batch_size < 1 or shard_size < 1:
        raise InputError(f"need --batch-size >= 1 and a shard size >= 1, not {batch_size} and {shard_size}")
    options = TaskOptions(column=column, max_new_tokens=max_new_tokens, max_length=max_length, on_error=on_error,
                          base_dir=str(input_path.parent.resolve()), labels=tuple(labels), template=template,
                          threshold=threshold, prompt=prompt)
    require_pyarrow()
    from ..artifact import Artifact
    from .predict import check_task

    meta = Artifact.load(artifact).metadata  # a bad artifact fails before the input is read
    check_task(meta.task, artifact)
    table = read_input(input_path, column, id_column)
    if table.num_rows == 0:
        raise InputError(f"{input_path} has no rows")
    clash = [f.name for f in output_schema(meta.task) if f.name in table.column_names]
    if clash:
        raise InputError(f"{input_path} already has column(s) {', '.join(clash)}, which the {meta.task} results are written to; rename them")
    output.parent.mkdir(parents=True, exist_ok=True)
    settings = {"column": column, "id_column": id_column, "on_error": on_error, "max_new_tokens": max_new_tokens,
                "max_length": max_length, "shard_size": shard_size, "labels": list(options.labels), "template": template}
    shards = Shards(output, run_key(input_path, artifact, settings), table.num_rows, shard_size)
    done = set(shards.done())
    todo = [i for i in range(shards.count) if i not in done]
    pending = _rows_of(table, shards, todo)
    started = time.perf_counter()
    progress = on_progress or (lambda done_rows, total: None)
    resumed_rows = table.num_rows - pending.num_rows
    progress(resumed_rows, table.num_rows)
    # Workers record a rejected row in its error column; this process stops the run on it
    # (on_error="fail"), so the row is named the same way wherever it ran.
    worker_options = dataclasses.replace(options, on_error="skip")
    predictor_args: dict[str, Any] = dict(artifact=str(artifact.resolve()), options=worker_options, backend=backend, device=device,
                          session_options=dict(session_options or {}), id_column=id_column)
    if pending.num_rows:
        if ray is None:
            results = _in_process(Predictor(**predictor_args), pending, batch_size)
        else:
            from ..integrations.ray.data import run_pending

            results = run_pending(pending, predictor_args, batch_size, ray)
        assembler = _Assembler(table, shards, todo, id_column)
        for result in results:
            if on_error == "fail":
                _stop_on_error(result, id_column)
            assembler.add(result)
            progress(resumed_rows + assembler.rows_in, table.num_rows)
        assembler.finish()
    seconds = time.perf_counter() - started
    failed = _failed_rows(shards, id_column)
    shards.join()
    notes = [shards.note] if shards.note else []
    return RunResult(output, meta.task, table.num_rows, pending.num_rows, seconds, failed, shards.count, len(done), notes)


def _stop_on_error(result: Any, id_column: str) -> None:
    import pyarrow.compute as pc

    failed = result.filter(pc.is_valid(result.column(ERROR_COLUMN)))
    if failed.num_rows:
        first = pc.sort_indices(failed, [(id_column, "ascending")])[0].as_py()
        raise RowError(failed.column(id_column)[first].as_py(), failed.column(ERROR_COLUMN)[first].as_py())


def _rows_of(table: Any, shards: Shards, indices: list[int]) -> Any:
    import pyarrow as pa

    parts = [table.slice(shards.rows(i).start, len(shards.rows(i))) for i in indices]
    return pa.concat_tables(parts) if parts else table.slice(0, 0)


def _in_process(predictor: Predictor, pending: Any, batch_size: int) -> Iterator[Any]:
    needed = pending.select([predictor.id_column, predictor.options.column])
    for start in range(0, needed.num_rows, batch_size):
        yield predictor(needed.slice(start, batch_size))


class _Assembler:
    """Collects result rows by shard; writes a shard (input columns + results, id order) when complete."""

    def __init__(self, table: Any, shards: Shards, todo: list[int], id_column: str) -> None:
        self.table, self.shards, self.id_column = table, shards, id_column
        self.waiting: dict[int, list[Any]] = {i: [] for i in todo}
        self.seen: dict[int, set[int]] = {i: set() for i in todo}
        self.rows_in = 0

    def add(self, result: Any) -> None:
        ids = result.column(self.id_column).to_pylist()
        by_shard: dict[int, list[int]] = {}
        for position, row in enumerate(ids):
            by_shard.setdefault(row // self.shards.shard_size, []).append(position)
        for index, positions in by_shard.items():
            if index not in self.waiting:
                raise OptibridgeError(f"row {ids[positions[0]]} came back although its shard was finished: a duplicate result")
            rows = {ids[p] for p in positions}
            if len(rows) != len(positions) or rows & self.seen[index]:
                raise OptibridgeError(f"a row of shard {index} came back twice; nothing of that shard was written")
            self.seen[index] |= rows
            self.waiting[index].append(result.take(positions))
            self.rows_in += len(positions)
            if len(self.seen[index]) == len(self.shards.rows(index)):
                self._write(index)

    def _write(self, index: int) -> None:
        import pyarrow as pa
        import pyarrow.compute as pc

        results = pa.concat_tables(self.waiting.pop(index))
        results = results.take(pc.sort_indices(results, [(self.id_column, "ascending")]))
        span = self.shards.rows(index)
        shard = self.table.slice(span.start, len(span))
        for name in results.column_names:
            if name not in shard.column_names:  # the results; the input's columns come from the input itself
                shard = shard.append_column(results.schema.field(name), results.column(name))
        self.shards.write(index, shard)

    def finish(self) -> None:
        if self.waiting:
            missing = sorted(self.waiting)[:5]
            raise OptibridgeError(f"shards {missing} got no complete results; re-run the same command to finish them")


def _failed_rows(shards: Shards, id_column: str) -> list[tuple[int, str]]:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    failed: list[tuple[int, str]] = []
    for i in range(shards.count):
        table = pq.read_table(shards.path(i), columns=[id_column, ERROR_COLUMN])
        bad = table.filter(pc.is_valid(table.column(ERROR_COLUMN)))
        failed.extend(zip(bad.column(id_column).to_pylist(), bad.column(ERROR_COLUMN).to_pylist()))
    return failed


def describe(result: RunResult) -> Iterable[str]:
    """Lines for people: rows, speed, resumed shards, failed rows (the first few)."""
    yield (f"{result.rows} rows ({result.task}) -> {result.output}: {result.rows_run} run in {result.seconds:.1f} s "
           f"({result.rows_per_s:.1f} rows/s)")
    if result.shards_resumed:
        yield f"resumed: {result.shards_resumed} of {result.shards} shards were already done"
    if result.failed_rows:
        shown = "; ".join(f"row {row}: {reason}" for row, reason in result.failed_rows[:3])
        yield f"{len(result.failed_rows)} rows failed and have an error instead of a result ({shown})"
    yield from result.notes
