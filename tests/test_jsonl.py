"""One JSON Lines row reader under batch inputs and training data; each caller keeps its own errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from optibridge.errors import InputError
from optibridge.jsonl import object_rows
from optibridge.training import TrainingConfigError
from optibridge.training.data import read_jsonl


def _refuse(line: int, problem: object) -> Exception:
    return AssertionError(f"line {line} refused: {problem}")


def test_rows_skip_blank_lines_and_keep_file_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text('{"text": "a"}\n\n   \n{"text": "b", "n": [1, 2]}\n', encoding="utf-8")
    assert list(object_rows(path, _refuse, _refuse)) == [(1, {"text": "a"}), (4, {"text": "b", "n": [1, 2]})]


def test_the_first_bad_line_raises_the_callers_error(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text('{"text": "a"}\n[1]\nnot json\n', encoding="utf-8")
    rows = object_rows(path, lambda line, exc: ValueError(f"json {line}"), lambda line, value: KeyError(f"{line} {value!r}"))
    assert next(rows) == (1, {"text": "a"})
    with pytest.raises(KeyError, match=re.escape("2 [1]")):
        next(rows)


def _read_batch(path: Path) -> object:
    pytest.importorskip("pyarrow")
    from optibridge.batch.files import read_input

    return read_input(path, "text", "id")


def _read_training(path: Path) -> object:
    return read_jsonl(path)


@pytest.mark.parametrize(
    ("reader", "error", "not_json", "not_object"),
    [
        (_read_batch, InputError, "FILE line 2 is not JSON (Expecting value); each line must be one JSON object",
         "FILE line 2 is a JSON list, not an object like {\"text\": \"...\"}"),
        (_read_training, TrainingConfigError, "FILE:2 is not valid JSON (Expecting value); write one JSON object per line",
         "FILE:2 is a list, not a JSON object with 'text' and 'label'"),
    ],
    ids=["batch", "training"],
)
def test_each_reader_keeps_its_error_type_and_wording(reader, error, not_json, not_object, tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_text('{"text": "fine", "label": 0}\nnot json\n', encoding="utf-8")
    with pytest.raises(error, match=re.escape(not_json.replace("FILE", str(path)))):
        reader(path)
    path.write_text('{"text": "fine", "label": 0}\n[1, 2]\n', encoding="utf-8")
    with pytest.raises(error, match=re.escape(not_object.replace("FILE", str(path)))):
        reader(path)
