"""JSONL classification data for ``optibridge train``: read and checked completely before training.

One JSON object per line with a ``text`` field (and optionally ``text_pair``) and a ``label``
(a class name or an integer id). A file with a missing field, an empty line set, or labels the
model does not know is an error that names the line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..jsonl import object_rows
from .config import TrainingConfigError


@dataclass(frozen=True)
class Example:
    text: str
    label: Any
    text_pair: str | None = None


def read_jsonl(path: str | Path, *, text_field: str = "text", label_field: str = "label") -> list[Example]:
    """Every row of a JSONL file, with a clear error on the first row that lacks a needed field."""
    file = Path(path)
    if not file.is_file():
        raise TrainingConfigError(f"data file {file} does not exist; pass a JSONL file with '{text_field}' and '{label_field}' fields")
    rows = []
    for number, row in object_rows(
        file,
        not_json=lambda line, exc: TrainingConfigError(f"{file}:{line} is not valid JSON ({exc.msg}); write one JSON object per line"),
        not_object=lambda line, value: TrainingConfigError(
            f"{file}:{line} is a {type(value).__name__}, not a JSON object with '{text_field}' and '{label_field}'"),
    ):
        missing = [f for f in (text_field, label_field) if f not in row]
        if missing:
            raise TrainingConfigError(
                f"{file}:{number} has no {' and no '.join(repr(m) for m in missing)} field (it has: {', '.join(map(repr, row)) or 'nothing'}); "
                f"every line needs '{text_field}' (a string) and '{label_field}' (a class name or id)"
            )
        if not isinstance(row[text_field], str) or not row[text_field].strip():
            raise TrainingConfigError(f"{file}:{number}: '{text_field}' must be a non-empty string, not {row[text_field]!r}")
        rows.append(Example(row[text_field], row[label_field], row.get("text_pair")))
    if not rows:
        raise TrainingConfigError(f"{file} holds no examples; write one JSON object per line")
    return rows


def label_names(*datasets: list[Example]) -> list[str]:
    """The label set, in a stable order: sorted ids when every label is an integer, else sorted names."""
    labels = {example.label for rows in datasets for example in rows}
    if all(isinstance(label, int) and not isinstance(label, bool) for label in labels):
        return [str(i) for i in range(max(labels) + 1)]
    return sorted(str(label) for label in labels)


def encode(rows: list[Example], tokenizer: Any, label2id: dict[str, int], max_length: int, where: str) -> list[dict[str, Any]]:
    """Tokenized examples with integer labels; an unknown label is an error naming it."""
    encoded = []
    for index, example in enumerate(rows, 1):
        key = str(example.label)
        if key not in label2id:
            raise TrainingConfigError(f"{where}: example {index} has label {example.label!r}, which the model does not have "
                                      f"(it has: {', '.join(label2id)})")
        features = tokenizer(example.text, example.text_pair, truncation=True, max_length=max_length)
        encoded.append({**features, "labels": label2id[key]})
    return encoded
