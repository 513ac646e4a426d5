"""Input files in, a parquet file out: reading rows, writing finished shards, resuming.

A run writes its results shard by shard (``shard_size`` rows each, by row id) into a staging
folder next to the output (``OUT.parquet.parts/``): each shard file is written to a temporary
name and renamed, so a shard file is either whole or absent. ``manifest.json`` records what the
shards were computed from (input file size and time, artifact metadata digest, task options);
a re-run whose manifest matches skips the shards already there. When every shard is there, they
are joined into the output (again through a temporary file and a rename) and the staging folder
is removed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, Iterator

from ..errors import InputError, OptibridgeError
from ..jsonl import object_rows

INPUT_FORMATS = {".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet", ".txt": "text"}
MANIFEST = "manifest.json"
PARTS_SUFFIX = ".parts"


def require_pyarrow() -> Any:
    try:
        import pyarrow
    except ImportError:
        raise OptibridgeError("`optibridge run` reads and writes files with pyarrow: pip install 'optibridge[batch]'") from None
    return pyarrow


def read_input(path: Path, column: str, id_column: str) -> Any:
    """The rows of a .jsonl/.parquet/.txt file as a pyarrow table, with ``id_column`` (0, 1, ...) first.

    The text column is a string column; a value that is null or not a string becomes null, and
    the run reports that row (by id) instead of failing on the whole file.
    """
    pa = require_pyarrow()
    kind = INPUT_FORMATS.get(path.suffix.lower())
    if kind is None:
        raise InputError(f"{path}: cannot read {path.suffix or 'files without a suffix'}; give a .jsonl, .parquet or .txt file")
    if not path.is_file():
        raise InputError(f"{path} does not exist or is not a file")
    if kind == "parquet":
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except (pa.ArrowInvalid, OSError) as exc:
            raise InputError(f"{path} is not a readable parquet file: {exc}") from None
    elif kind == "text":
        lines = path.read_text(encoding="utf-8").split("\n")
        if lines and lines[-1] == "":
            lines.pop()  # the file's final newline ends the last row, it does not start another
        table = pa.table({column: pa.array(lines, pa.string())}) if column == "text" else None
        if table is None:
            raise InputError(f"{path} is a text file: its rows are in the column 'text'; drop --column {column}")
    else:
        table = _read_jsonl(path, column)
    if column not in table.column_names:
        raise InputError(f"{path} has no column {column!r} (it has: {', '.join(table.column_names) or 'none'}); pass --column NAME")
    if id_column in table.column_names:
        raise InputError(f"{path} already has a column {id_column!r}; pass --id-column with another name for the row ids")
    text = table.column(column)
    if not (pa.types.is_string(text.type) or pa.types.is_large_string(text.type)):
        values = [v if isinstance(v, str) else None for v in text.to_pylist()]
        table = table.set_column(table.column_names.index(column), column, pa.array(values, pa.string()))
    return table.add_column(0, id_column, pa.array(range(table.num_rows), pa.int64()))


def _read_jsonl(path: Path, column: str) -> Any:
    pa = require_pyarrow()
    rows = [row for _, row in object_rows(
        path,
        not_json=lambda line, exc: InputError(f"{path} line {line} is not JSON ({exc.msg}); each line must be one JSON object"),
        not_object=lambda line, value: InputError(f"{path} line {line} is a JSON {type(value).__name__}, not an object like {{\"text\": \"...\"}}"),
    )]
    names = list(dict.fromkeys(name for row in rows for name in row))
    columns = {}
    for name in names:
        values = [row.get(name) for row in rows]
        if name == column:  # text or nothing: a number is not silently turned into the text "42"
            columns[name] = pa.array([v if isinstance(v, str) else None for v in values], pa.string())
            continue
        try:
            columns[name] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError):  # mixed types: keep them, as JSON text
            columns[name] = pa.array([None if v is None else v if isinstance(v, str) else json.dumps(v) for v in values], pa.string())
    return pa.table(columns) if columns else pa.table({})


def parts_folder(output: Path) -> Path:
    return output.with_name(output.name + PARTS_SUFFIX)


def run_key(input_path: Path, artifact: Path, settings: dict[str, Any]) -> dict[str, Any]:
    """What the shards depend on: a resumed run with another key starts over."""
    stat = input_path.stat()
    meta = (artifact / "optibridge.json").read_bytes()
    return {"input": str(input_path.resolve()), "input_bytes": stat.st_size, "input_mtime_ns": stat.st_mtime_ns,
            "artifact": str(artifact.resolve()), "artifact_metadata_sha256": hashlib.sha256(meta).hexdigest(), **settings}


class Shards:
    """The staging folder of one output: which shards are done, writing one, joining them all."""

    def __init__(self, output: Path, key: dict[str, Any], total_rows: int, shard_size: int) -> None:
        self.output = output
        self.folder = parts_folder(output)
        self.shard_size = shard_size
        self.count = max(1, -(-total_rows // shard_size))
        self.total_rows = total_rows
        self.note: str | None = None
        manifest = self.folder / MANIFEST
        if self.folder.exists():
            try:
                found = json.loads(manifest.read_text())
            except (OSError, ValueError):
                found = None
            if found != key:
                self.note = f"{self.folder} held shards of another run (input, artifact or options changed): started over"
                shutil.rmtree(self.folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        _atomic_write_text(manifest, json.dumps(key, indent=2) + "\n")

    def path(self, index: int) -> Path:
        return self.folder / f"shard-{index:06d}.parquet"

    def rows(self, index: int) -> range:
        return range(index * self.shard_size, min((index + 1) * self.shard_size, self.total_rows))

    def done(self) -> list[int]:
        return [i for i in range(self.count) if self.path(i).is_file()]

    def write(self, index: int, table: Any) -> None:
        import pyarrow.parquet as pq

        path = self.path(index)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        pq.write_table(table, tmp)
        os.replace(tmp, path)

    def join(self) -> None:
        """Every shard, in id order, into the output file (atomically); then the staging folder goes."""
        import pyarrow.parquet as pq

        missing = [i for i in range(self.count) if not self.path(i).is_file()]
        if missing:
            raise OptibridgeError(f"shards {missing[:5]} of {self.output} are missing; re-run the same command to finish them")
        tmp = self.output.with_name(f".{self.output.name}.tmp-{os.getpid()}")
        writer = None
        try:
            for table in self._tables():
                if writer is None:
                    writer = pq.ParquetWriter(tmp, table.schema)
                writer.write_table(table)
        finally:
            if writer is not None:
                writer.close()
        os.replace(tmp, self.output)
        shutil.rmtree(self.folder)

    def _tables(self) -> Iterator[Any]:
        import pyarrow.parquet as pq

        for i in range(self.count):
            yield pq.read_table(self.path(i))


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)
