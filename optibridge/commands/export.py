"""`optibridge export`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from ..console import console


def export(
    output_dir: Path = typer.Argument(..., help="Artifact folder to write (created; replaced only if it is an artifact)."),
    model: str = typer.Option(..., "--model", "-m", help="Local transformers model folder, diffusers pipeline folder, or Hugging Face Hub id."),
    task: Optional[str] = typer.Option(None, "--task", "-t", help="Task to export; inferred from config.architectures when omitted. optimum-cli names work too (text-generation-with-past = text-generation: the KV cache is the default)."),
    opset: Optional[int] = typer.Option(None, "--opset", help="ONNX opset (default: the exporter's own, 17-20)."),
    atol: float = typer.Option(1e-4, "--atol", help="Largest absolute difference to PyTorch allowed on any output."),
    exporter: str = typer.Option("auto", "--exporter", help="auto | torchscript | dynamo. auto = torchscript while torch ships it."),
    validate: bool = typer.Option(True, "--validate/--no-validate", help="Compare against PyTorch on fresh inputs of other shapes."),
    use_cache: bool = typer.Option(
        True, "--cache/--no-cache",
        help="Decoder LMs: export with KV cache (past in, present out). --no-cache recomputes the sequence each step.",
    ),
    external_data: Optional[bool] = typer.Option(
        None, "--external-data/--no-external-data",
        help="Weights in model.onnx.data beside the graph. Default: for models with more than 256 MiB of weights "
             "(ONNX Runtime maps that file, so loading takes ~25-40 % less memory); --no-external-data keeps one file.",
    ),
    trust_remote_code: bool = typer.Option(
        False, "--trust-remote-code", help="Allow running Python code shipped with the model (custom architectures). Never prompted.",
    ),
    allow_new_weights: bool = typer.Option(
        False, "--allow-new-weights", help="Export even when the checkpoint lacks weights for the task (a new, random head).",
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace an existing artifact even when it holds files it does not own (they are deleted).",
    ),
) -> None:
    """Export a transformers model to an ONNX artifact folder, checked against PyTorch.

    Examples:

        optibridge export --model ./my-bert OUT

        optibridge export --model distilbert-base-uncased --task text-classification --opset 18 OUT

        optibridge export --model ./my-llama --task text-generation OUT     # decoder with KV cache

        optibridge export --model ./my-t5 OUT                               # encoder + decoder graphs

        optibridge export --model ./my-llava OUT                            # image-text-to-text: vision graph + decoder taking its rows

        optibridge export --model ./my-sd-pipeline OUT                      # diffusers: a graph per component

    The folder holds model.onnx, the config and tokenizer/processor files, and optibridge.json
    (source, task, opset, inputs/outputs with dynamic axes, versions, file hashes, validation).
    """
    from ..diffusion.families import is_pipeline_folder, normalize_task
    from ..exporter import export as run_export
    from ..errors import ConfigError
    from ..tasks import WITH_PAST, get_task

    from ..exporter.core import check_opset

    if task is not None:  # fail on a typo before loading anything
        normalize_task(task) if is_pipeline_folder(model) else get_task(task)
        if task.endswith(WITH_PAST) and not use_cache:
            raise ConfigError(f"--task {task} asks for the KV cache and --no-cache for none: drop one of them")
    check_opset(opset)
    with console.status("starting") as status:
        result = run_export(
            model, output_dir, task=task, opset=opset, atol=atol, exporter=exporter, validate=validate,
            external_data=external_data, use_cache=use_cache, on_step=lambda message: status.update(message),
            allow_new_weights=allow_new_weights, overwrite=overwrite, trust_remote_code=trust_remote_code,
        )
    meta = result.artifact.metadata
    if result.task_inferred:
        where = "model_index.json" if "diffusion" in meta.extra else "config.architectures"
        console.print(f"task: [bold]{result.task}[/] (inferred from {where}={meta.source.get('architectures')}; pass --task to override)")
    else:
        console.print(f"task: [bold]{result.task}[/]")
    console.print(f"exporter: {meta.exporter}, opset {meta.opset}")
    if result.validation is not None:
        table = Table(title=f"validation vs PyTorch on {result.validation.backend} (inputs {_shapes(result.validation.input_shapes)})")
        for column in ("output", "shape", "max abs diff", f"≤ atol {atol:g}"):
            table.add_column(column)
        for check in result.validation.outputs:
            table.add_row(check.name, str(check.shape), f"{check.max_abs_diff:.2e}", "ok" if check.passed else "FAIL")
        console.print(table)
    if result.note:
        console.print(result.note, markup=False)
    size = result.artifact.size_bytes() / 1e6
    console.print(f"[green]wrote[/] {result.artifact.path} ({size:.1f} MB)")


def _shapes(shapes: dict[str, tuple[int, ...]]) -> str:
    return ", ".join(f"{k} {tuple(v)}" for k, v in shapes.items())
