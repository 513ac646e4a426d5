"""The ``optibridge`` command line.

Errors print one line and exit non-zero; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import sys
import traceback
from typing import IO, Protocol, TypeGuard

import typer
from rich.markup import escape

from ._version import __version__
from .commands import backends, bench, export, import_optimum, info, optimize, quantize, run, train, tune
from .commands._registry_help import RegistryHelpCommand
from .console import console, err_console
from .errors import OptibridgeError

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


# One module per command under optibridge/commands/; register new commands here.
app.command("export")(export.export)
app.command("backends")(backends.backends)
app.command("info")(info.info)
app.command("optimize", cls=RegistryHelpCommand)(optimize.optimize)
app.command("quantize", cls=RegistryHelpCommand)(quantize.quantize)
app.command("bench", cls=RegistryHelpCommand)(bench.bench)
app.command("tune")(tune.tune)
app.command("run")(run.run)
app.command("train")(train.train)
app.command("import-optimum")(import_optimum.import_optimum)


# Options whose value may be left out (click has no such option through typer): `--ray` alone
# means `--ray=local` (start a local cluster), `--ray ADDRESS` joins one.
OPTIONAL_VALUES = {"--ray": run.LOCAL}


def _fill_optional_values(args: list[str]) -> list[str]:
    filled = []
    for i, arg in enumerate(args):
        following = args[i + 1] if i + 1 < len(args) else None
        if arg in OPTIONAL_VALUES and (following is None or following.startswith("-")):
            arg = f"{arg}={OPTIONAL_VALUES[arg]}"
        filled.append(arg)
    return filled


def main(argv: list[str] | None = None) -> int:
    """Entry point: runs the app and turns exceptions into one readable line and an exit code."""
    args = _fill_optional_values(list(sys.argv[1:] if argv is None else argv))
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
        # escaped: messages quote pip commands ("pip install 'optibridge[cuda]'") that rich would read as markup
        err_console.print(f"[red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        return 1
    except Exception as exc:
        if _is_usage_error(exc):
            if type(exc).__name__ != "NoArgsIsHelpError":  # that one has already printed the help
                exc.show(file=sys.stderr)
            return int(exc.exit_code)
        if debug:
            traceback.print_exc()
        err_console.print(f"[red]error:[/] {type(exc).__name__}: {escape(str(exc))} (run with --debug for the traceback)",
                          highlight=False, soft_wrap=True)
        return 1
    return result if isinstance(result, int) else 0


class _UsageError(Protocol):
    """What a click usage error offers (the shape :func:`_is_usage_error` checks)."""

    exit_code: int

    def show(self, file: IO[str] | None = None) -> None: ...


def _is_usage_error(exc: Exception) -> TypeGuard[_UsageError]:
    # Typer may vendor its own copy of click, so its usage errors are matched by shape, not class.
    return hasattr(exc, "show") and hasattr(exc, "exit_code") and "click" in type(exc).__module__


if __name__ == "__main__":
    sys.exit(main())
