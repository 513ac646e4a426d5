"""Paths read from ``optibridge.json`` are untrusted: each must name a file inside the artifact folder.

An artifact folder may come from anywhere (a download, a colleague's share). A manifest that
names ``../other/model.onnx``, an absolute path, or a file that is a symlink pointing out of the
folder could make a load read a foreign graph and an ``optimize`` overwrite a file elsewhere.
Every path the manifest names goes through :func:`inside`, which every load does first.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath, PureWindowsPath

from .errors import ArtifactError


def inside(folder: Path, relative: object, field: str) -> Path:
    """``folder / relative`` once checked: a plain relative path without ``..`` that, with symlinks
    resolved, stays inside ``folder``. Anything else is an :class:`ArtifactError` naming ``field``."""
    fix = "re-export the model, or edit optibridge.json so that it names a file inside the artifact folder"
    if not isinstance(relative, str) or not relative or "\x00" in relative:
        raise ArtifactError(f"optibridge.json field {field} is {relative!r}, not a file name; {fix}")
    posix, windows = PurePosixPath(relative), PureWindowsPath(relative)
    if posix.is_absolute() or windows.is_absolute() or windows.drive or relative.startswith(("/", "\\", "~")):
        raise ArtifactError(f"optibridge.json field {field} is the absolute path {relative!r}; artifact files must be "
                            f"relative to the folder; {fix}")
    if ".." in posix.parts or ".." in windows.parts:
        raise ArtifactError(f"optibridge.json field {field} ({relative!r}) climbs out of the artifact folder with '..'; {fix}")
    root = os.path.realpath(folder)
    target = os.path.realpath(os.path.join(root, relative))
    if os.path.commonpath([root, target]) != root:
        raise ArtifactError(f"optibridge.json field {field} ({relative!r}) resolves to {target}, outside the artifact "
                            f"folder {root} (a symlink points out of it); {fix}")
    return folder / relative
