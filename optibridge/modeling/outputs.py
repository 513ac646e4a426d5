"""Wrap a session's numpy outputs in the ``ModelOutput`` class the PyTorch model returns."""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np


def resolve_output_class(qualified_name: str, fallback: str) -> type:
    """The class recorded at export time, or the task's default if this transformers lacks it."""
    module_name, _, class_name = qualified_name.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError):
        from transformers import modeling_outputs

        return getattr(modeling_outputs, fallback)


def wrap_outputs(output_class: type, outputs: dict[str, np.ndarray], as_torch: bool) -> Any:
    if as_torch:
        import torch

        values: dict[str, Any] = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in outputs.items()}
    else:
        values = dict(outputs)
    return output_class(**values)
