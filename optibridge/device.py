"""``Device``: one parser for the device strings users pass (``"cpu"``, ``"cuda:1"``, ``"GPU.1"``, ``0``).

Backends map a :class:`Device` to their own form (an ONNX Runtime ``device_id``, an OpenVINO device
name, a torch device); the parsing and its error live here once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .errors import BackendError

_FORM = re.compile(r"^(?P<kind>[a-z][a-z0-9_]*)(?:[:.](?P<index>\d+))?$")
FORMS = "'kind' or 'kind:N' (e.g. 'cpu', 'gpu:1'; 'GPU.1' too)"


@dataclass(frozen=True)
class Device:
    """A device kind (lower case) and an optional index: ``cuda:1`` → ``Device("cuda", 1)``."""

    kind: str
    index: int | None = None

    @classmethod
    def parse(cls, value: Any, *, int_kind: str | None = None) -> Device:
        """Parse a device string, a ``torch.device``, another ``Device``, or an int (as ``int_kind:N``
        when ``int_kind`` is given, as torch reads ``model.to(0)``). Case-insensitive; ``"GPU.1"`` is
        OpenVINO's spelling of ``gpu:1``. Anything else is a :class:`BackendError` naming the forms."""
        if isinstance(value, Device):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            if int_kind is None or value < 0:
                raise BackendError(f"device must be {FORMS}, not {value!r}")
            return cls(int_kind, value)
        if hasattr(value, "type") and hasattr(value, "index"):  # a torch.device, without importing torch
            return cls(str(value.type), value.index)
        match = _FORM.match(str(value).strip().lower()) if isinstance(value, str) else None
        if match is None:
            raise BackendError(f"device must be {FORMS}, not {value!r}")
        index = match.group("index")
        return cls(match.group("kind"), int(index) if index is not None else None)

    @staticmethod
    def kind_of(value: Any) -> str:
        """The kind of a device string without validating the rest (OpenVINO's ``HETERO:GPU,CPU``
        is a kind ``hetero`` with a runtime-specific tail)."""
        return re.split(r"[:.]", str(value).strip(), maxsplit=1)[0].lower()

    def __str__(self) -> str:
        return self.kind if self.index is None else f"{self.kind}:{self.index}"
