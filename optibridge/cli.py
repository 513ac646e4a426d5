"""The ``optibridge`` command line.

Errors print one line and exit non-zero; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from . import __version__
from .errors import OptibridgeError

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)

app = typer.Typer(
    name="optibridge",
    help=(
        "Export Hugging Face transformers models to ONNX and run them faster on the hardware you have.\n\n"
        "Typical flow: `optibridge export --model MODEL OUT`, then load OUT with "
        "`optibridge.OBModelFor<Task>.from_pretrained(OUT)` in place of the transformers class."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)


def _version(value: bool) -> None:
    if value:
        console.print(f"optibridge {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks and library logs on errors."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    if not debug:
        _quiet_libraries()


def _quiet_libraries() -> None:
    """transformers' weight-loading bars and torch.onnx's chatter are noise on a CLI run."""
    import logging
    import os

    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)


@app.command()
def export(
    output_dir: Path = typer.Argument(..., help="Artifact folder to write (created; replaced only if it is an artifact)."),
    model: str = typer.Option(..., "--model", "-m", help="Local transformers model folder or Hugging Face Hub id."),
    task: Optional[str] = typer.Option(None, "--task", "-t", help="Task to export; inferred from config.architectures when omitted."),
    opset: Optional[int] = typer.Option(None, "--opset", help="ONNX opset (default: the exporter's own, 17-20)."),
    atol: float = typer.Option(1e-4, "--atol", help="Largest absolute difference to PyTorch allowed on any output."),
    exporter: str = typer.Option("auto", "--exporter", help="auto | torchscript | dynamo. auto = torchscript while torch ships it."),
    validate: bool = typer.Option(True, "--validate/--no-validate", help="Compare against PyTorch on fresh inputs of other shapes."),
    external_data: Optional[bool] = typer.Option(
        None, "--external-data/--no-external-data",
        help="Weights in model.onnx.data. Default: only for models past the 2 GiB protobuf limit.",
    ),
) -> None:
    """Export a transformers model to an ONNX artifact folder, checked against PyTorch.

    Examples:

        optibridge export --model ./my-bert OUT

        optibridge export --model distilbert-base-uncased --task text-classification --opset 18 OUT

    The folder holds model.onnx, the config and tokenizer/processor files, and optibridge.json
    (source, task, opset, inputs/outputs with dynamic axes, versions, file hashes, validation).
    """
    from .exporter import export as run_export
    from .tasks import get_task

    if task is not None:
        get_task(task)  # fail on a typo before loading anything
    with console.status("starting") as status:
        result = run_export(
            model, output_dir, task=task, opset=opset, atol=atol, exporter=exporter, validate=validate,
            external_data=external_data, on_step=lambda message: status.update(message),
        )
    meta = result.artifact.metadata
    if result.task_inferred:
        console.print(f"task: [bold]{result.task}[/] (inferred from config.architectures={meta.source.get('architectures')}; pass --task to override)")
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
    size = result.artifact.size_bytes() / 1e6
    console.print(f"[green]wrote[/] {result.artifact.path} ({size:.1f} MB)")


def _shapes(shapes: dict[str, tuple[int, ...]]) -> str:
    return ", ".join(f"{k} {tuple(v)}" for k, v in shapes.items())


@app.command()
def backends(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """List every backend plugin found, whether it runs here, on which devices, and why not."""
    from .backends import get_registry

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
            s.version or "-", s.reason or ", ".join(s.features),
        )
    console.print(table)


@app.command()
def info(artifact_dir: Path = typer.Argument(..., help="An artifact folder."),
         verify: bool = typer.Option(False, "--verify", help="Re-hash every file against optibridge.json.")) -> None:
    """Show what an artifact folder holds: source, task, inputs/outputs, validation, steps."""
    from .artifact import Artifact

    artifact = Artifact.load(artifact_dir, verify_hashes=verify)
    meta = artifact.metadata
    console.print(f"[bold]{artifact.path}[/]  task={meta.task}  model_type={meta.model_type}  source={meta.source.get('model')}")
    console.print(f"exporter={meta.exporter} opset={meta.opset} size={artifact.size_bytes() / 1e6:.1f} MB")
    for kind, specs in (("input", meta.inputs), ("output", meta.outputs)):
        for spec in specs:
            console.print(f"  {kind:6} {spec.describe()}", markup=False)
    if meta.validation:
        console.print(f"validation: passed={meta.validation['passed']} atol={meta.validation['atol']} on {meta.validation['backend']}")
    console.print("steps: " + " → ".join(s["step"] for s in meta.steps))
    if verify:
        console.print("[green]graph files match their recorded SHA-256[/]")
        for name in artifact.modified_files():
            console.print(f"[yellow]note:[/] {name} changed since export (config/preprocessor files may be re-saved)")


def main(argv: list[str] | None = None) -> int:
    """Entry point: runs the app and turns exceptions into one readable line and an exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    try:
        result = app(args=args, prog_name="optibridge", standalone_mode=False)
    except typer.Exit as exc:
        return exc.exit_code
    except (KeyboardInterrupt, typer.Abort):
        err_console.print("interrupted: nothing was written")
        return 130
    except OptibridgeError as exc:
        if debug:
            traceback.print_exc()
        err_console.print(f"[red]error:[/] {exc}", highlight=False, soft_wrap=True)
        return 1
    except Exception as exc:
        if _is_usage_error(exc):
            if type(exc).__name__ != "NoArgsIsHelpError":  # that one has already printed the help
                exc.show(file=sys.stderr)
            return int(exc.exit_code)
        if debug:
            traceback.print_exc()
        err_console.print(f"[red]error:[/] {type(exc).__name__}: {exc} (run with --debug for the traceback)", highlight=False, soft_wrap=True)
        return 1
    return result if isinstance(result, int) else 0


def _is_usage_error(exc: Exception) -> bool:
    # Typer may vendor its own copy of click, so its usage errors are matched by shape, not class.
    return hasattr(exc, "show") and hasattr(exc, "exit_code") and "click" in type(exc).__module__


if __name__ == "__main__":
    sys.exit(main())
