"""Swap a few modules' ``forward`` (or another method) for the duration of one export, then put back exactly
what was there.

Some layers compute their math in a form no ONNX exporter can capture (a custom op, a complex tensor, a
data-dependent Python loop). The exporter gives such modules, for the export only, a forward that computes
the same math traceably (:mod:`.moe`, :mod:`.complex_rotary`; :mod:`.padded_speech` swaps two mask/length
helpers the same way). The swap is an instance attribute, so the
class and every other instance are untouched, and it is never a lasting patch: once the block ends, even by
an exception, each module has the forward it had before, and validation runs against the untouched model.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterable, Iterator

import torch

_MISSING = object()


@contextlib.contextmanager
def swapped_attributes(name: str, swaps: Iterable[tuple[torch.nn.Module, Callable[..., Any]]]) -> Iterator[int]:
    """Set each ``setattr(module, name, replacement)`` (an instance attribute; bind it yourself if it takes ``self``)
    until the block ends; yields how many were set.

    On exit each module gets back what it had: no instance attribute (the class's own method) if it had none, or
    the instance attribute it already had. Swaps are undone in reverse order, so a module listed twice also ends
    up as it began."""
    saved: list[tuple[torch.nn.Module, Any]] = []
    try:
        # set inside the try: a lazy ``swaps`` that raises part-way still has its earlier swaps undone
        for module, replacement in swaps:
            saved.append((module, vars(module).get(name, _MISSING)))
            setattr(module, name, replacement)
        yield len(saved)
    finally:
        for module, previous in reversed(saved):
            if previous is _MISSING:
                delattr(module, name)
            else:
                setattr(module, name, previous)


def swapped_forwards(swaps: Iterable[tuple[torch.nn.Module, Callable[..., Any]]]) -> contextlib.AbstractContextManager[int]:
    """:func:`swapped_attributes` for ``forward``, the method most swaps replace."""
    return swapped_attributes("forward", swaps)
