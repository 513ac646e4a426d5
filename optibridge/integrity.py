"""SHA-256 of artifact files, checked on load and cached so a second load of the same files is free.

The cache key is what changes whenever a file's bytes can have changed: its resolved path, size,
inode, device, ``mtime_ns`` and ``ctime_ns`` (``ctime`` cannot be set back by ``touch -d``, so a
same-size rewrite with a restored mtime still misses the cache). See docs/safety.md for the cost.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path
from typing import Any

_BLOCK = 1 << 20
_cache: dict[tuple[Any, ...], str] = {}
_lock = threading.Lock()


def _key(path: Path) -> tuple[Any, ...]:
    st = os.stat(path)
    return (os.path.realpath(path), st.st_size, st.st_ino, st.st_dev, st.st_mtime_ns, st.st_ctime_ns)


def sha256_of(path: Path, *, use_cache: bool = True) -> str:
    """Hex SHA-256 of ``path``, streamed; served from the cache while the file is unchanged."""
    key = _key(path)
    if use_cache:
        with _lock:
            known = _cache.get(key)
        if known is not None:
            return known
    sha = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_BLOCK), b""):
            sha.update(block)
    digest = sha.hexdigest()
    if _key(path) == key:  # not rewritten while we read it
        with _lock:
            _cache[key] = digest
    return digest


def clear_cache() -> None:
    with _lock:
        _cache.clear()
