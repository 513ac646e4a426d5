"""Help text that lists what the installed plugins declare, read when ``--help`` is shown.

An option's help may hold ``{modes}`` (every quantization mode and who implements it),
``{backends}`` (the installed backends and their device syntax) or ``{configs}`` (the bench
configurations, including one per declared mode). They are filled from the registry
at help time, so a plugin installed — or registered at run time — shows in ``--help`` with no
change here; a registry that cannot be read leaves a pointer to ``optibridge backends`` instead.
"""

from __future__ import annotations

from typing import Any

from typer.core import TyperCommand


def registry_words() -> dict[str, str]:
    try:
        from ..backends import get_registry

        registry = get_registry()
        modes = " | ".join(f"{name} ({', '.join(owners)})" for name, owners in registry.modes().items())
        backends = " | ".join(
            f"{b.name} (device {b.device_syntax})" for b in sorted(registry.backends().values(), key=lambda b: (b.priority, b.name))
        )
        from ..bench.configs import all_configs

        configs = ", ".join(all_configs(registry.backends()))
    except Exception as exc:  # help must always print; the reason goes where the list would have been
        modes = backends = configs = f"see `optibridge backends` (the plugin registry could not be read: {exc})"
    return {"modes": modes or "none installed", "backends": backends or "none installed", "configs": configs}


class RegistryHelpCommand(TyperCommand):
    """A command whose option help may name ``{modes}``, ``{backends}`` and ``{configs}``."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        words = registry_words()
        originals: dict[Any, str] = {}
        for param in self.params:
            text = getattr(param, "help", None)
            if text and any("{" + key + "}" in text for key in words):
                originals[param] = text
                for key, value in words.items():
                    text = text.replace("{" + key + "}", value)
                setattr(param, "help", text)  # noqa: B010 (click's Parameter base class does not declare help)
        try:
            super().format_help(ctx, formatter)
        finally:
            for param, text in originals.items():
                setattr(param, "help", text)  # noqa: B010 (click's Parameter base class does not declare help)
