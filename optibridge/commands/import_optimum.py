"""`optibridge import-optimum`: a folder Optimum wrote → an optibridge artifact."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..console import console


def import_optimum(
    source: Path = typer.Argument(..., help="A folder written by optimum-cli export onnx / ORTModel.save_pretrained / OVModel.save_pretrained."),
    output_dir: Path = typer.Argument(..., help="The artifact folder to write."),
    task: Optional[str] = typer.Option(None, "--task", help="The task, when config.json's architectures do not say it."),
    file_name: Optional[str] = typer.Option(None, "--file-name", help="Which graph of a folder holding several (model_quantized.onnx)."),
    backend: str = typer.Option("auto", "--backend", help="Backend that loads the result as a check (auto: the first available)."),
) -> None:
    """Convert a folder Optimum or optimum-intel wrote into an optibridge artifact, checking its graphs."""
    from ..modeling.tasks import task_class
    from ..optimum_folders import import_optimum_folder

    artifact = import_optimum_folder(source, output_dir, task=task, file_name=file_name)
    meta = artifact.metadata
    for name, graph in meta.graphs.items():
        console.print(f"graph {name}: {graph.file} ({graph.format}), {len(graph.inputs)} inputs, {len(graph.outputs)} outputs", markup=False)
    # "auto" picks a backend that reads the graph's format (an OpenVINO IR needs a backend declaring it)
    model = task_class(meta.task).from_pretrained(artifact.path, backend=backend)
    console.print(f"task {meta.task}: loads as {type(model).__name__} on backend {model.backend!r}", markup=False)
    console.print(f"wrote {artifact.path}. Not validated against PyTorch (no PyTorch weights in an Optimum folder): "
                  "`optibridge export --model MODEL` does that", markup=False)
