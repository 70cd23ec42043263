"""The `cldet` command line: a thin typer layer over the Python API.

Every command imports its stage lazily, so `cldet check` / `cldet bench` run on a board that has only
the deploy set (no torch, no ultralytics). Errors derived from CldetError print one actionable line
and exit with that error's code (see `cldet --help` epilog).
"""

from __future__ import annotations

import functools
import sys
from typing import Callable

import typer

from .errors import CldetError

EXIT_CODES = """Exit codes: 0 ok; 1 accuracy drift past tolerance (check); 2 usage or generic error;
3 bad dataset; 4 bad run directory or refused overwrite; 5 artifact/manifest mismatch or corrupt artifact;
6 missing runtime (TensorRT, CUDA provider, training extra)."""

app = typer.Typer(
    name="cldet",
    help="Class-incremental YOLO detection for edge devices: learn new classes without the old data "
    "(pseudo-label + feature distillation), export INT8 ONNX / TensorRT, check accuracy drift and latency "
    "on the board.",
    epilog=EXIT_CODES,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def friendly(fn: Callable) -> Callable:
    """Turn CldetError into a one-line message and its exit code instead of a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except CldetError as e:
            typer.secho(f"cldet: error: {e}", fg=typer.colors.RED, err=True)
            raise typer.Exit(e.exit_code) from None

    return wrapper


def _register() -> None:
    """Add each stage's commands; a stage left out of a build is skipped, any other import error raises."""
    import importlib

    for stage in ("detector", "export", "deploy"):
        module = f"{__package__}.{stage}.commands"
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name != module:
                raise
            continue
        for name, fn in mod.COMMANDS.items():
            app.command(name, epilog=EXIT_CODES)(friendly(fn))


_register()


def main() -> None:  # pragma: no cover - console entry
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
