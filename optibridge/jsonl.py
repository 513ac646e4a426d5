"""JSON Lines files read row by row: one JSON object per line, blank lines skipped.

Shared by the readers of batch inputs and of training data. Each caller keeps its own error type
and wording (its users are told a different fix), so the problems come back through the caller's
own functions of the line number.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Iterator


def object_rows(
    path: Path,
    not_json: Callable[[int, json.JSONDecodeError], Exception],
    not_object: Callable[[int, Any], Exception],
) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` for every non-blank line of ``path`` (numbered from 1). A line that is
    not JSON raises ``not_json(number, error)``; JSON that is not an object, ``not_object(number, value)``."""
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise not_json(number, exc) from None
            if not isinstance(row, dict):
                raise not_object(number, row)
            yield number, row
