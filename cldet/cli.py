"""The `cldet` command line, generated from the Python API (cldet.api.COMMANDS) and its option declarations.

Each command's flags come from the dataclass fields that declare its options (cldet.core.options): name,
type, default and help are written once. The command calls the API function and renders its result here.
Nothing heavy is imported at start-up, so `cldet check` / `cldet bench` run on a board that has only the
deploy set. Errors derived from CldetError print one actionable line and exit with that error's code.
"""

from __future__ import annotations

import inspect
import json
import logging
import math
import sys
from pathlib import Path
from typing import Any, Callable, Optional

import typer

from .api import COMMANDS, Command
from .core.errors import CldetError, DriftError
from .core.options import Spec, specs

__all__ = ["app", "main", "format_metrics"]

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


def format_metrics(metrics: dict, title: str = "") -> str:
    """Group -> mAP table for the terminal."""
    def f(v):
        return "   -" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"

    rows = [title, f"{'group':<10} {'mAP50-95':>9} {'mAP50':>7}"]
    rows += [f"{g:<10} {f(m.get('map50_95')):>9} {f(m.get('map50')):>7}" for g, m in metrics.items()]
    return "\n".join(r for r in rows if r)


# --- how each command's result is shown (and, for CLI-only options, stored) -------------------------------------

def _show_train(lin, kw: dict) -> None:
    typer.echo(format_metrics(lin.last.metrics, f"\n{kw['out']}: increment 0, {len(lin.classes)} classes, "
                                                f"{lin.last.seconds:.0f} s"))


def _show_learn(lin, kw: dict) -> None:
    typer.echo(format_metrics(lin.last.metrics, f"\n{kw['out']}: increment {lin.last.index} ({kw['method']}), "
                                                f"+{len(lin.last.classes_added)} classes, {lin.last.seconds:.0f} s"))


def _show_eval(res: dict, kw: dict) -> None:
    from .core.files import write_json_atomic

    run, split = Path(kw["run"]), kw["split"]
    typer.echo(format_metrics(res["metrics"], f"\n{run} on {kw['data']} [{split}]"))
    if res["forgetting"]:
        typer.echo("forgetting (mAP50-95 points since learned): "
                   + ", ".join(f"{g} {100 * v:+.1f}" for g, v in res["forgetting"].items()))
    if "ratio_to_joint" in res:
        typer.echo("ratio to joint: " + ", ".join(f"{g} {v:.2f}" for g, v in res["ratio_to_joint"].items()
                                                  if v is not None))
    path, k = kw["out"] or run / f"eval-{split}.json", 1
    while path.exists() and kw["out"] is None:  # never overwritten
        path, k = run / f"eval-{split}-{k}.json", k + 1
    write_json_atomic(path, json.loads(json.dumps(res, default=float)))
    typer.echo(f"wrote {path}")


def _show_demo(res: dict, kw: dict) -> None:
    files = res["files"]
    typer.echo("\n" + files["md"].read_text())
    typer.echo(f"table: {files['md']}\nplot:  {files['png']}\nruns:  {files['runs']}")


def _show_export(manifest: dict, kw: dict) -> None:
    where = Path(kw["out"]) if kw["out"] else Path(kw["run"]) / "export"
    groups = list(manifest["groups"])
    typer.echo(f"\n{'artifact':<24}" + "".join(f"{g:>12}" for g in groups) + "   (mAP50-95, ONNX Runtime CPU)")
    for a in manifest["artifacts"].values():
        m = a.get("metrics") or {}
        typer.echo(f"{a['file']:<24}" + "".join(f"{m[g]['map50_95']:>12.4f}" if g in m else f"{'-':>12}"
                                                for g in groups))
    if "fp32" in manifest["artifacts"] and "int8" in manifest["artifacts"]:
        f, q = manifest["artifacts"]["fp32"]["metrics"], manifest["artifacts"]["int8"]["metrics"]
        drift = {g: 100 * (f[g]["map50_95"] - q[g]["map50_95"]) for g in groups if g in f and g in q}
        typer.echo("INT8 drift (points): " + ", ".join(f"{g} {d:+.2f}" for g, d in drift.items()))
    missing = manifest.get("calibration", {}).get("missing")
    if missing:
        typer.secho(f"warning: calibration set has no image of: {', '.join(missing)}", fg=typer.colors.YELLOW)
    typer.echo(f"wrote {where / 'manifest.json'}")


def _show_check(rep, kw: dict) -> None:
    from .core.files import write_json_atomic
    from .deploy.check import format_table

    for w in rep.warnings:
        typer.secho(f"warning: {w}", fg=typer.colors.YELLOW, err=True)
    typer.echo(f"{Path(rep.artifact).name} on {rep.backend} vs host reference '{rep.reference_key}' "
               f"({rep.images} images of {rep.data} [{rep.split}], {rep.seconds:.1f} s)")
    typer.echo(format_table(rep))
    out = kw["report"] or Path(f"check-{Path(kw['artifact']).stem}.json")
    write_json_atomic(out, rep.as_dict())
    typer.echo(f"report: {out}")
    if not rep.passed:
        raise DriftError(
            f"accuracy drift past {rep.tolerance:g} mAP50-95 points in {', '.join(rep.failed_groups)}; do not deploy "
            "this artifact: rebuild it from the same export, check the runtime/provider, or re-export (see the report)."
        )


def _show_bench(res: dict, kw: dict) -> None:
    from .deploy.bench import format_bench, write_bench

    typer.echo(format_bench(res))
    j, png = write_bench(res, kw["out"])
    jet = res["device"]["jetson"]
    if jet["is_jetson"]:
        typer.echo(f"Jetson: L4T {jet['l4t']}, JetPack {jet['jetpack']}, nvpmodel {json.dumps(jet['nvpmodel'])}, "
                   f"TensorRT {res['device']['tensorrt']}")
    typer.echo(f"results: {j}  plot: {png}")


def _show_predict(res, kw: dict) -> None:
    frames = len(res.predictions)
    typer.echo(f"{res.model}: {res.detections} detections on {frames} image(s)/frame(s) in {res.seconds:.1f} s")
    typer.echo(f"results: {res.out}  (drawn files, labels/*.txt, predictions.json)")


def _show_import(lin, kw: dict) -> None:
    src = lin.last.hyper["source"]
    typer.echo(f"{kw['out']}: increment 0 from {src['file']} (sha256 {src['sha256'][:12]}...), {lin.arch}, "
               f"{len(lin.classes)} classes, {lin.imgsz} px")


SHOW: dict[str, Callable[[Any, dict], None]] = {
    "train": _show_train, "learn": _show_learn, "eval": _show_eval, "demo": _show_demo,
    "export": _show_export, "check": _show_check, "bench": _show_bench, "predict": _show_predict,
    "import": _show_import,
}


def _writable_file(flag: str, path: Path | None) -> None:
    """A report path the command will write at its end: its folder exists and it is not a folder itself."""
    if path is not None and (Path(path).is_dir() or not Path(path).absolute().parent.is_dir()):
        raise CldetError(f"{flag} {path}: " + ("is a folder; give a file path." if Path(path).is_dir() else
                                               f"folder {Path(path).absolute().parent} does not exist."))


def _precheck_eval(kw: dict) -> None:
    from .core.errors import RunError

    out = kw.get("out")
    if out is not None and (Path(out).exists() or Path(out).is_symlink()):
        raise RunError(f"--out {out} already exists; eval never overwrites a report. Choose another path.")
    _writable_file("--out", out)


def _precheck_bench(kw: dict) -> None:
    from .core.errors import RunError

    out = Path(kw["out"])
    if out.exists() and not out.is_dir():
        raise CldetError(f"--out {out} is a file; bench writes bench.json and bench.png into a folder.")
    held = [f for f in ("bench.json", "bench.png") if (out / f).exists()]
    if held and not kw.get("exist_ok"):
        raise RunError(f"--out {out} already holds {', '.join(held)}; bench never overwrites results. Choose another "
                       "--out, or pass --exist-ok to replace them.")


# checks of CLI-only options (where results are stored), before the command works
PRECHECK: dict[str, Callable[[dict], None]] = {
    "eval": _precheck_eval,
    "check": lambda kw: _writable_file("--report", kw.get("report")),
    "bench": _precheck_bench,
}


def _explicit(ctx: typer.Context, kw: dict) -> set[str]:
    """Parameters given on the command line (not left at their default)."""
    return {k for k in kw if getattr(ctx.get_parameter_source(k), "name", "") not in ("DEFAULT", "DEFAULT_MAP")}


# --- generating typer commands from the option declarations ------------------------------------------------------

def _cli_type(s: Spec) -> Any:
    """The annotation typer parses the flag with: tuples are a comma string (sep) or a repeated flag."""
    if s.item is not None:
        return str if s.meta.sep else Optional[list[s.item]]  # type: ignore[name-defined]
    return Optional[s.base] if s.optional else s.base


def _cli_default(s: Spec) -> Any:
    if s.required:
        return ...
    if s.item is not None:
        return s.meta.sep.join(map(str, s.default)) if s.meta.sep else None
    return s.default


def _parameter(s: Spec) -> inspect.Parameter:
    if s.meta.argument:
        opt = typer.Argument(_cli_default(s), help=s.describe(), metavar=s.name.upper(), show_default=False)
    else:
        opt = typer.Option(_cli_default(s), s.flag, *s.meta.aliases, help=s.describe())
    return inspect.Parameter(s.name, inspect.Parameter.KEYWORD_ONLY, default=opt, annotation=_cli_type(s))


def _typer_command(cmd: Command) -> Callable[..., None]:
    cli_specs = [s for s in specs(*cmd.options) if s.meta.cli]
    api_names = {s.name for s in cli_specs if s.meta.api}
    keep_default = {s.name for s in cli_specs if s.default is not None and s.item is not None and not s.meta.sep}

    def command(ctx: typer.Context, **kw: Any) -> None:
        logging.basicConfig(level=logging.INFO, format="%(message)s")
        explicit = _explicit(ctx, kw)
        try:
            PRECHECK.get(cmd.name, lambda kw: None)(kw)
            # only what the user typed: the API fills in the defaults and knows what was given (core.options.given)
            args = {k: v for k, v in kw.items() if k in api_names and k in explicit
                    and not (v is None and k in keep_default)}
            SHOW[cmd.name](cmd.fn(**args), kw)
        except CldetError as e:
            typer.secho(f"cldet: error: {e}", fg=typer.colors.RED, err=True)
            raise typer.Exit(e.exit_code) from None

    command.__name__ = cmd.fn.__name__
    command.__doc__ = " ".join((cmd.fn.__doc__ or "").split("\n\nKeyword arguments:")[0].split())
    ctx = inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context)
    command.__signature__ = inspect.Signature([ctx, *(_parameter(s) for s in cli_specs)])  # type: ignore[attr-defined]
    return command


for _name, _cmd in COMMANDS.items():
    app.command(_name, epilog=EXIT_CODES)(_typer_command(_cmd))


def main() -> None:  # pragma: no cover - console entry
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
