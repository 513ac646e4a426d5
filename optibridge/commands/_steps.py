"""Printing shared by `optibridge optimize` and `optibridge quantize`: what changed, and how accurate it stayed."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.markup import escape
from rich.table import Table

from ..console import console

if TYPE_CHECKING:
    from ..artifact import Artifact
    from ..steps import StepResult


def print_operator_counts(result: "StepResult", key: str, title: str) -> None:
    """One row per graph: the operators the step added (fused or quantized); its notes below, a line
    each, since sentences wrapped into a table column are hard to read at 80 columns."""
    table = Table(title=title)
    for column in ("graph", "operators"):
        table.add_column(column)
    graphs = result.report.get("graphs", {})
    for graph, entry in graphs.items():
        ops = entry.get("quantized", {}) if key == "quantized" else entry.get("fused", {})
        table.add_row(graph, ", ".join(f"{op} ×{n}" for op, n in sorted(ops.items())) or "none")
    console.print(table)
    for graph, entry in graphs.items():
        prefix = f"{graph}: " if len(graphs) > 1 else ""
        for note in entry.get("notes", []):
            if note.startswith("WARNING"):
                console.print(f"[bold red]{escape(note)}[/] (graph {graph})", highlight=False)
            else:
                console.print(f"- {escape(prefix + note)}", highlight=False)


def print_accuracy(result: "StepResult") -> None:
    for graph, report in result.accuracy.items():
        shapes = ", ".join(f"{k} {tuple(v)}" for k, v in report.input_shapes.items())
        table = Table(title=f"accuracy vs the float32 graph '{graph}' ({report.inputs}; {shapes})")
        for column in ("output", "max abs diff", "cosine mean", "cosine min", "top-1 agreement"):
            table.add_column(column, justify="right")
        for out in report.outputs:
            top1 = "-" if out.top1_agreement is None else f"{out.top1_agreement:.1%}"
            table.add_row(out.name, f"{out.max_abs_diff:.2e}", f"{out.cosine_mean:.5f}", f"{out.cosine_min:.5f}", top1)
        console.print(table)
    images = result.step.get("image_accuracy")
    if images:  # diffusion pipelines: the same prompts and seeds through both pipelines
        console.print(f"images vs the float pipeline: {images['images']} image(s) {images['size'][0]}×{images['size'][1]}, "
                      f"{images['num_inference_steps']} steps: mean abs pixel diff {images['mean_abs_pixel_diff']:.2e}, "
                      f"max {images['max_abs_pixel_diff']:.2e}, PSNR {images['psnr_db']:.1f} dB", highlight=False)
    budget = result.step.get("accuracy_budget")
    if budget:
        from ..accuracy import AccuracyBudget

        console.print(f"accuracy budget {AccuracyBudget.from_dict(budget).describe()}: [green]met[/]")


def print_written(artifact: "Artifact", source: "Artifact") -> None:
    size, before = artifact.size_bytes() / 1e6, source.size_bytes() / 1e6
    console.print(f"[green]wrote[/] {artifact.path} ({size:.1f} MB; input {before:.1f} MB)")
