"""The whole contract between optibridge and a backend plugin.

A plugin is a module (or object) with functions marked ``@hookimpl``, registered through the
``optibridge.backends`` entry-point group::

    # pyproject.toml of a third-party plugin
    [project.entry-points."optibridge.backends"]
    mybackend = "mypackage.optibridge_plugin"

    # mypackage/optibridge_plugin.py
    from optibridge.hookspecs import hookimpl

    @hookimpl
    def optibridge_backends():
        return [MyBackend()]

The first-party backends under ``plugins/`` are registered exactly this way.

Why one hook returning objects rather than one hook per operation: every operation (load,
optimize, quantize) is addressed to one backend the user named, so per-operation hooks would make
each plugin open every hook with "is this call for me?". The hook finds plugins; the
:class:`~optibridge.backend.Backend` object carries the operations, typed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import pluggy

if TYPE_CHECKING:
    from .backend import Backend
    from .capabilities import ModeSpec

PROJECT = "optibridge"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def optibridge_backends() -> Sequence["Backend"]:
    """Return the backends this plugin provides (usually one).

    Called every time the registry is built; must be cheap and must not import the runtime at
    module import time — probe for it in :meth:`Backend.status`. Every plugin's result is
    collected; two backends with the same ``name`` are an error that names both plugins.
    """
    raise NotImplementedError


@hookspec
def optibridge_modes() -> Sequence["ModeSpec"]:
    """Return quantization modes this plugin provides that are not tied to one backend.

    For steps that work on the PyTorch model before a backend runs (each such
    :class:`~optibridge.capabilities.ModeSpec` has ``prepare`` and ``then``: the backend's own mode
    that finishes the job). A backend's own modes are declared on the backend (``Backend.modes``),
    not here. Optional: a plugin without such modes does not implement this hook.
    """
    raise NotImplementedError
