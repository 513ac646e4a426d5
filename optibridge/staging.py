"""Folders written safely: pid-tagged temporary names, stale leftovers of killed runs removed, the
new folder swapped in with one atomic exchange where the OS has one, data fsynced first.

Every temporary folder optibridge makes carries the pid of the process that made it
(``.OUT.partial-<pid>-xxxx`` beside an output, ``optibridge-<what>-<pid>-xxxx`` in the temp
directory). A run killed with SIGKILL cannot clean up after itself; the next run that writes a
folder removes leftovers whose process is gone (:func:`clean_stale`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import re
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

_PID = re.compile(r"-(\d+)-[A-Za-z0-9_]+$")
_TEMP_ROOT_PREFIX = "optibridge-"
_swept_temp = threading.Event()


def pid_prefix(prefix: str) -> str:
    """``prefix`` with this process's pid appended, for ``tempfile.mkdtemp``/``TemporaryDirectory``."""
    sweep_temp_dir()
    return f"{prefix}{os.getpid()}-"


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _stale(name: str) -> bool:
    match = _PID.search(name)
    return match is not None and not pid_alive(int(match.group(1)))


def clean_stale(parent: Path, dest_name: str | None = None) -> list[str]:
    """Remove ``.NAME.partial-<pid>-*`` / ``.NAME.old-<pid>-*`` folders in ``parent`` whose process is gone
    (only those of ``dest_name`` when given). Returns the names removed."""
    removed: list[str] = []
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return removed
    for entry in entries:
        name = entry.name
        if not name.startswith(".") or not (".partial-" in name or ".old-" in name):
            continue
        if dest_name is not None and not name.startswith(f".{dest_name}."):
            continue
        if _stale(name) and entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(name)
    return removed


def sweep_temp_dir() -> None:
    """Once per process: remove ``optibridge-*-<pid>-*`` folders of dead processes from the temp directory."""
    if _swept_temp.is_set():
        return
    _swept_temp.set()
    root = tempfile.gettempdir()
    try:
        entries = list(os.scandir(root))
    except OSError:
        return
    for entry in entries:
        if entry.name.startswith(_TEMP_ROOT_PREFIX) and _stale(entry.name) and entry.is_dir(follow_symlinks=False):
            try:
                if entry.stat(follow_symlinks=False).st_uid != os.getuid():
                    continue  # never another user's
            except OSError:
                continue
            shutil.rmtree(entry.path, ignore_errors=True)


def fsync_tree(folder: Path) -> None:
    """Flush every file and folder under ``folder`` to disk, so a crash after the rename cannot leave
    an artifact whose names exist but whose bytes do not."""
    for root, _dirs, files in os.walk(folder):
        for name in files:
            fd = os.open(os.path.join(root, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(root))


def fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems cannot fsync a directory
        pass
    finally:
        os.close(fd)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _renameat2() -> Any:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        function = libc.renameat2
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


_renameat2_fn = _renameat2() if os.name == "posix" else None


def exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux ``renameat2(RENAME_EXCHANGE)``); False where unsupported
    (other OS, old kernel or libc, a filesystem without it), and the caller falls back."""
    if _renameat2_fn is None:
        return False
    if _renameat2_fn(_AT_FDCWD, os.fsencode(str(a)), _AT_FDCWD, os.fsencode(str(b)), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(b))
