"""`optibridge backends`."""

from __future__ import annotations

import json

import typer
from rich.markup import escape
from rich.table import Table

from ..console import console


def backends(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """List every backend plugin found, whether it runs here, on which devices, and why not."""
    from ..backends import get_registry

    statuses = get_registry().statuses()
    if as_json:
        console.print_json(json.dumps([
            {"name": s.name, "available": s.available, "devices": list(s.devices), "version": s.version,
             "features": list(s.features), "reason": s.reason}
            for s in statuses
        ]))
        return
    table = Table(title="optibridge backends")
    for column in ("backend", "usable", "devices", "version", "notes"):
        table.add_column(column)
    for s in statuses:
        table.add_row(
            s.name, "[green]yes[/]" if s.available else "[red]no[/]", ", ".join(s.devices) or "-",
            s.version or "-", escape(s.reason or ", ".join(s.features)),  # reasons hold `pip install x[extra]`
        )
    console.print(table)
