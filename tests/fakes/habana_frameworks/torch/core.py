"""Fake ``habana_frameworks.torch.core``: lazy-mode ``mark_step``."""

from __future__ import annotations

from habana_frameworks import CALLS


def mark_step() -> None:
    CALLS.append(("mark_step",))
