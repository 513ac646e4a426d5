"""Wrap a session's numpy outputs in the ``ModelOutput`` class the PyTorch model returns."""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
from typing import Any

import numpy as np

from ..errors import ArtifactError

# optibridge.json is untrusted: its ``output_class`` is looked up by name among transformers' own
# output modules (and optibridge's), never imported as an arbitrary dotted path, since importing a
# module named by a manifest would run whatever code a folder or sys.path ships under that name.
_TRANSFORMERS_MODEL_MODULE = re.compile(r"^transformers\.models\.([a-z0-9_]+)\.modeling_([a-z0-9_]+)$")
OWN_OUTPUT_MODULES: tuple[str, ...] = ("transformers.modeling_outputs", "optibridge.modeling.outputs", "optibridge.modeling.sentence_output")
"""Modules whose ``ModelOutput`` subclasses an artifact may name directly (plugins may extend this)."""


def _allowed_module(module_name: str) -> Any | None:
    """The module, when it is one of transformers' output/modeling modules or optibridge's; else None."""
    if module_name in OWN_OUTPUT_MODULES:
        return importlib.import_module(module_name)
    match = _TRANSFORMERS_MODEL_MODULE.match(module_name)
    if match is None:
        return None
    if module_name in sys.modules:
        return sys.modules[module_name]
    import transformers.models

    try:  # found through transformers' own package path, so a same-named file elsewhere is never picked
        found = importlib.util.find_spec(module_name)
    except (ImportError, ValueError):
        return None
    if found is None or found.origin is None or not any(found.origin.startswith(p) for p in transformers.models.__path__):
        return None
    return importlib.import_module(module_name)


def resolve_output_class(qualified_name: str, fallback: str) -> type:
    """The ``ModelOutput`` class recorded at export time, looked up in an allow-list.

    A name in transformers' (or optibridge's) output modules that this transformers lacks gives the
    task's default class; any other name is an :class:`ArtifactError` and imports nothing.
    """
    from transformers import modeling_outputs
    from transformers.utils.generic import ModelOutput

    module_name, _, class_name = str(qualified_name).rpartition(".")
    refuse = ArtifactError(
        f"optibridge.json names output_class {qualified_name!r}, which is not a transformers or optibridge output "
        "class; loading never imports other code. Re-export the model, or set output_class to e.g. "
        f"'transformers.modeling_outputs.{fallback}'"
    )
    if not class_name.isidentifier():
        raise refuse
    module = _allowed_module(module_name)
    if module is None:
        raise refuse
    found = getattr(module, class_name, None)
    if found is None:  # renamed or removed in this transformers version
        default: type = getattr(modeling_outputs, fallback)
        return default
    if not (isinstance(found, type) and issubclass(found, ModelOutput)):
        raise refuse
    return found


def wrap_outputs(output_class: type, outputs: dict[str, np.ndarray], as_torch: bool) -> Any:
    if as_torch:
        import torch

        values: dict[str, Any] = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in outputs.items()}
    else:
        values = dict(outputs)
    return output_class(**values)
