"""Compare two benchmark runs cell by cell (another machine, another version) and flag regressions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .schema import BenchRun, Cell

DEFAULT_THRESHOLD = 1.1
"""B slower than A by more than this factor (p50) is a regression: 1.1 = 10 % slower."""


@dataclass(frozen=True)
class CellComparison:
    key: tuple[str, str, int, int]
    a: Cell | None
    b: Cell | None
    ratio: float | None
    """B p50 / A p50: above 1 means B is slower."""
    regression: bool
    note: str

    @property
    def name(self) -> str:
        backend, config, batch, seq = self.key
        return f"{backend}:{config} {batch}×{seq}"


def compare_runs(a: BenchRun, b: BenchRun, threshold: float = DEFAULT_THRESHOLD) -> list[CellComparison]:
    """One entry per cell key found in either run, in A's order then B's new ones."""
    from .schema import BenchError

    if threshold < 1.0:
        raise BenchError(f"--threshold is a slow-down factor >= 1 (1.1 = 10 % slower), not {threshold}")
    a_cells = {c.key: c for c in a.cells}
    b_cells = {c.key: c for c in b.cells}
    found = []
    for key in list(a_cells) + [k for k in b_cells if k not in a_cells]:
        old, new = a_cells.get(key), b_cells.get(key)
        if old is None or new is None:
            found.append(CellComparison(key, old, new, None, False, "only in A" if new is None else "only in B"))
        elif old.ok and not new.ok:
            found.append(CellComparison(key, old, new, None, True, f"{new.status} in B: {new.reason}"))
        elif not (old.ok and new.ok) or old.latency is None or new.latency is None:
            found.append(CellComparison(key, old, new, None, False, f"A {old.status}, B {new.status}"))
        else:
            ratio = new.latency.p50_ms / old.latency.p50_ms if old.latency.p50_ms > 0 else float("inf")
            regression = ratio > threshold
            found.append(CellComparison(key, old, new, ratio, regression, "REGRESSION" if regression else ""))
    return found


def print_comparison(a: BenchRun, b: BenchRun, comparisons: list[CellComparison], threshold: float, console: Any) -> int:
    """Print the table; returns how many regressions were flagged."""
    from rich.table import Table

    table = Table(title=f"B vs A: p50 ratio (above {threshold:g} = regression)",
                  caption=f"A: {a.machine.get('title')} {a.created} (optibridge {a.optibridge_version}); "
                          f"B: {b.machine.get('title')} {b.created} (optibridge {b.optibridge_version})")
    for column in ("cell", "A p50 ms", "B p50 ms", "B / A", "A vs PyTorch", "B vs PyTorch", "note"):
        table.add_column(column, justify="left" if column in ("cell", "note") else "right")

    def p50(cell: Cell | None) -> str:
        return f"{cell.latency.p50_ms:.2f}" if cell is not None and cell.ok and cell.latency else "-"

    def speed(cell: Cell | None) -> str:
        return f"{cell.speedup:.2f}×" if cell is not None and cell.ok and cell.speedup is not None else "-"

    for item in comparisons:
        ratio = "-" if item.ratio is None else f"{item.ratio:.2f}"
        note = f"[bold red]{item.note}[/]" if item.regression else item.note
        table.add_row(item.name, p50(item.a), p50(item.b), f"[bold red]{ratio}[/]" if item.regression else ratio,
                      speed(item.a), speed(item.b), note)
    from .report import wide_console

    wide_console(console, table).print(table)
    regressions = sum(1 for c in comparisons if c.regression)
    if regressions:
        console.print(f"[bold red]{regressions} regression(s)[/] beyond {threshold:g}×")
    else:
        console.print(f"[green]no regression[/] beyond {threshold:g}×")
    return regressions
