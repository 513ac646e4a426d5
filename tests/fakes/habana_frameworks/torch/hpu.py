"""Fake ``habana_frameworks.torch.hpu``: ``wrap_in_hpu_graph`` records the module and returns it unchanged."""

from __future__ import annotations

from typing import Any

from habana_frameworks import CALLS


def wrap_in_hpu_graph(module: Any, *args: Any, **kwargs: Any) -> Any:
    CALLS.append(("wrap_in_hpu_graph", type(module).__name__))
    return module
