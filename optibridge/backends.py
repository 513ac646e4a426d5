"""Backend discovery: a pluggy ``PluginManager`` fed from the ``optibridge.backends`` entry points."""

from __future__ import annotations

import importlib
import importlib.metadata
import os
from dataclasses import dataclass
from typing import Any, Sequence, cast

import pluggy

from . import hookspecs
from .backend import Backend, BackendStatus
from .capabilities import ModeSpec
from .device import Device
from .errors import BackendError, ConfigError

ENTRY_POINT_GROUP = "optibridge.backends"
PLUGINS_ENV = "OPTIBRIDGE_PLUGINS"
"""Comma-separated module names registered as plugins besides the entry points (tests, local plugins)."""


@dataclass(frozen=True)
class BrokenPlugin:
    """An entry point that failed to import; listed so the user sees why a backend is missing."""

    name: str
    target: str
    error: str

    def status(self) -> BackendStatus:
        return BackendStatus(self.name, False, reason=f"plugin {self.target} failed to import: {self.error}")


class BackendRegistry:
    """All backends found on this machine, by name."""

    def __init__(self, *, load_entry_points: bool = True) -> None:
        self.plugin_manager = pluggy.PluginManager(hookspecs.PROJECT)
        self.plugin_manager.add_hookspecs(hookspecs)
        self.broken: list[BrokenPlugin] = []
        self._backends: dict[str, Backend] | None = None
        if load_entry_points:
            self._load_entry_points()
            self._load_env_plugins()

    def _load_entry_points(self) -> None:
        # Loaded one by one (not pm.load_setuptools_entrypoints) so that one broken plugin is
        # reported instead of taking every backend down with it.
        seen: set[str] = set()
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            if ep.name in seen or self.plugin_manager.has_plugin(ep.name):
                continue
            seen.add(ep.name)
            try:
                plugin = ep.load()
            except Exception as exc:  # an ImportError, or anything the plugin raises on import
                self.broken.append(BrokenPlugin(ep.name, ep.value, f"{type(exc).__name__}: {exc}"))
                continue
            self.plugin_manager.register(plugin, name=ep.name)

    def _load_env_plugins(self) -> None:
        # OPTIBRIDGE_PLUGINS=pkg.mod,other.mod: extra plugin modules, imported by name. Child
        # processes inherit it (bench cells), which a register() call in the parent cannot reach.
        for module_name in filter(None, (m.strip() for m in os.environ.get(PLUGINS_ENV, "").split(","))):
            if self.plugin_manager.has_plugin(module_name):
                continue
            try:
                module = importlib.import_module(module_name)
            except Exception as exc:
                self.broken.append(BrokenPlugin(module_name, f"{PLUGINS_ENV}={module_name}", f"{type(exc).__name__}: {exc}"))
                continue
            self.plugin_manager.register(module, name=module_name)

    def register(self, plugin: Any, name: str | None = None) -> None:
        """Register a plugin object at run time (tests, notebooks, applications embedding optibridge)."""
        self.plugin_manager.register(plugin, name=name)
        self._backends = None

    def backends(self) -> dict[str, Backend]:
        if self._backends is None:
            self._backends = self._collect()
        return dict(self._backends)

    def _collect(self) -> dict[str, Backend]:
        found: dict[str, Backend] = {}
        owners: dict[str, str] = {}
        # Each implementation is called on its own so that a clash can name both plugins.
        for impl in self.plugin_manager.hook.optibridge_backends.get_hookimpls():
            provided = cast("Sequence[Backend]", impl.function())  # pluggy types hook results as object
            for backend in provided:
                if backend.name in found:
                    raise BackendError(
                        f"two plugins provide a backend named {backend.name!r}: "
                        f"{owners[backend.name]} and {impl.plugin_name}; uninstall one of them"
                    )
                found[backend.name] = backend
                owners[backend.name] = impl.plugin_name
        return found

    def plugin_modes(self) -> dict[str, ModeSpec]:
        """Modes not tied to a backend (``optibridge_modes`` hook), by name; a name clash is an error."""
        found: dict[str, ModeSpec] = {}
        for impl in self.plugin_manager.hook.optibridge_modes.get_hookimpls():
            declared = cast("Sequence[ModeSpec]", impl.function())
            for spec in declared:
                if spec.name in found or any(b.mode(spec.name) for b in self.backends().values()):
                    raise BackendError(f"plugin {impl.plugin_name} declares mode {spec.name!r}, which another plugin declares too")
                found[spec.name] = spec
        return found

    def modes(self) -> dict[str, list[str]]:
        """Every quantization mode registered here → who implements it (backend names, or ``then`` for pre-export modes)."""
        result: dict[str, list[str]] = {}
        for backend in sorted(self.backends().values(), key=lambda b: (b.priority, b.name)):
            for spec in backend.modes:
                result.setdefault(spec.name, []).append(backend.name)
        for spec in self.plugin_modes().values():
            doers = result.get(spec.then or "", [])
            result[spec.name] = [f"then {spec.then} on {', '.join(doers) or 'no installed backend'}"]
        return result

    def mode(self, name: str, backend: Backend | None = None) -> ModeSpec:
        """The spec of mode ``name`` (``backend``'s own, else a plugin's); an error listing the registered modes."""
        spec = backend.mode(name) if backend is not None else None
        spec = spec or self.plugin_modes().get(name)
        if spec is None and backend is None:
            spec = next((b.mode(name) for b in self.backends().values() if b.mode(name)), None)
        if spec is not None:
            return spec
        modes = self.modes()
        if name in modes and backend is not None:
            raise BackendError(
                f"backend {backend.name!r} has no quantization mode {name!r}; it is done by --backend "
                f"{' or '.join(modes[name])} (backend {backend.name!r} does: {', '.join(m.name for m in backend.modes) or 'none'})"
            )
        raise ConfigError(f"unknown quantization mode {name!r}; valid: {', '.join(modes) or 'none (no backend installed)'}")

    def format_description(self, fmt: str) -> str:
        """The words for a graph format, from the backend that declares it (the format name if none does)."""
        for backend in self.backends().values():
            if fmt in backend.format_descriptions:
                return backend.format_descriptions[fmt]
        return fmt

    def readers(self, fmt: str) -> list[str]:
        """Backends that read graphs of format ``fmt``."""
        return sorted(b.name for b in self.backends().values() if fmt in b.graph_formats)

    def statuses(self) -> list[BackendStatus]:
        """Status of every backend, plus broken plugins, sorted by name."""
        result = []
        for backend in self.backends().values():
            try:
                result.append(backend.status())
            except Exception as exc:  # a probe must never take the listing down
                result.append(BackendStatus(backend.name, False, reason=f"status probe failed: {exc}"))
        result.extend(b.status() for b in self.broken)
        return sorted(result, key=lambda s: s.name)

    def get(self, name: str, *, device: str | None = None, feature: str = "run", mode: str | None = None) -> Backend:
        """The backend called ``name``; ``"auto"`` picks the first available one by priority that
        has ``feature`` (and serves ``device`` / declares ``mode``, when given)."""
        backends = self.backends()
        if name == "auto":
            return self._auto(backends, device, feature, mode)
        if name in backends:
            return backends[name]
        broken = next((b for b in self.broken if b.name == name), None)
        if broken is not None:
            raise BackendError(f"backend {name!r} is installed but its plugin failed to import: {broken.error}")
        raise BackendError(
            f"unknown backend {name!r}; installed backends: {', '.join(sorted(backends)) or 'none'} "
            "(`optibridge backends` shows which run here)"
        )

    def _auto(self, backends: dict[str, Backend], device: str | None, feature: str, mode: str | None) -> Backend:
        why_not = []
        for backend in sorted(backends.values(), key=lambda b: (b.priority, b.name)):
            if mode is not None and backend.mode(mode) is None:
                continue
            status = backend.status()
            if status.available and feature in status.features and (device is None or _serves(status, device)):
                return backend
            if not status.available:
                why_not.append(f"{backend.name}: {status.reason}")
            elif feature not in status.features:
                why_not.append(f"{backend.name}: cannot {feature}")
            else:
                why_not.append(f"{backend.name}: devices {', '.join(status.devices)}")
        wanted = "".join((f" that can {feature}", f" on {device!r}" if device else "", f" in mode {mode!r}" if mode else ""))
        raise BackendError(
            f"no usable backend{wanted} found ({'; '.join(why_not) or 'none installed'}); "
            "`optibridge backends` lists what is installed and what installs the others"
        )

    def require_available(self, name: str, device: str | None) -> Backend:
        """The backend ``name``, checked to be usable here (for ``device``, unless None); else an error saying why."""
        backend = self.get(name, device=device)
        status = backend.status()
        if not status.available:
            raise BackendError(f"backend {backend.name!r} is not usable here: {status.reason}")
        if device is None:
            return backend
        if not _serves(status, device):
            raise BackendError(
                f"backend {backend.name!r} has no device {device!r} here; its devices: {', '.join(status.devices)}"
            )
        return backend


def _serves(status: BackendStatus, device: str) -> bool:
    return not status.devices or Device.kind_of(device) in {Device.kind_of(d) for d in status.devices}


_registry: BackendRegistry | None = None


def get_registry() -> BackendRegistry:
    """The process-wide registry, built on first use from the installed entry points."""
    global _registry
    if _registry is None:
        _registry = BackendRegistry()
    return _registry


def reset_registry() -> None:
    """Forget the cached registry (tests; after installing a plugin in a running process)."""
    global _registry
    _registry = None
