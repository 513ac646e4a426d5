"""Kept for imports written before :mod:`optibridge.modeling.peers` (which now makes the peer names)."""

from .peers import alias

__all__ = ["alias"]
