"""Peer-compatible class names (Optimum's ``ORTModelFor*``, optimum-intel's ``OVModelFor*``)."""

from __future__ import annotations

from typing import TypeVar

from .base import OBModel

SurfaceT = TypeVar("SurfaceT", bound=OBModel)


def alias(name: str, surface: type[SurfaceT], base: type[OBModel], module: str, peer: str) -> type[SurfaceT]:
    """``name``: the task class ``base`` with a peer's ``from_pretrained`` surface mixed in first."""
    doc = f"{peer}-compatible name for :class:`optibridge.{base.__name__}`."
    return type(name, (surface, base), {"__doc__": doc, "__module__": module})
