"""CLI commands of the deploy stage: `cldet check` (drift gate) and `cldet bench` (latency).

These run on the board, which has only the deploy set: nothing here (or in what it imports) may
import torch or ultralytics. Heavy modules are imported inside the commands.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from ..errors import CldetError, DriftError

__all__ = ["COMMANDS", "check", "bench"]

_PROVIDER_HELP = "ONNX Runtime execution provider: auto (best installed), cpu, cuda or tensorrt. Engines (.engine/.plan) always run on TensorRT."


def check(
    artifact: Path = typer.Option(..., "--artifact", help="model.int8.onnx, model.fp32.onnx or a TensorRT .engine/.plan"),
    manifest: Path = typer.Option(..., "--manifest", help="manifest.json written by `cldet export` with this artifact"),
    data: Path = typer.Option(..., "--data", help="evaluation dataset yaml (YOLO format); its names must include the model's classes"),
    split: str = typer.Option("val", "--split", help="split of --data to evaluate"),
    tolerance: float = typer.Option(1.0, "--tolerance", help="allowed |reference - measured| mAP50-95 per class group, in points"),
    report: Optional[Path] = typer.Option(None, "--report", help="JSON report path (default: check-<artifact>.json in the current folder)"),
    provider: str = typer.Option("auto", "--provider", help=_PROVIDER_HELP),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads for ONNX Runtime (default: runtime's choice)"),
    reference: Optional[str] = typer.Option(None, "--reference", help="manifest artifact key whose host metrics to compare with "
                                            "(default: the artifact's own entry; for a device-built engine, the INT8 ONNX)"),
    batch: int = typer.Option(8, "--batch", min=1, help="images per inference call"),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="evaluate only the first N images (smoke test; drift then means little)"),
    quiet: bool = typer.Option(False, "--quiet", help="no progress bar"),
) -> None:
    """Verify an artifact on this device: sha256, classes and input size against the manifest, then mAP per
    increment's class group vs the host references. Exit code 1 when any group drifts past --tolerance."""
    from ..detector.lineage import write_json_atomic
    from .check import check as run_check
    from .check import format_table

    rep = run_check(artifact, manifest, data, split=split, tolerance=tolerance, provider=provider, threads=threads,
                    reference=reference, batch=batch, limit=limit, progress=not quiet)
    for w in rep.warnings:
        typer.secho(f"warning: {w}", fg=typer.colors.YELLOW, err=True)
    typer.echo(f"{Path(rep.artifact).name} on {rep.backend} vs host reference '{rep.reference_key}' "
               f"({rep.images} images of {rep.data} [{rep.split}], {rep.seconds:.1f} s)")
    typer.echo(format_table(rep))
    out = report or Path(f"check-{Path(artifact).stem}.json")
    write_json_atomic(out, rep.as_dict())
    typer.echo(f"report: {out}")
    if not rep.passed:
        raise DriftError(
            f"accuracy drift past {tolerance:g} mAP50-95 points in {', '.join(rep.failed_groups)}; do not deploy this "
            "artifact: rebuild it from the same export, check the runtime/provider, or re-export (see the report)."
        )


def _batches(text: str) -> tuple[int, ...]:
    try:
        out = tuple(int(b) for b in text.split(",") if b.strip())
    except ValueError:
        out = ()
    if not out or min(out) < 1:
        raise CldetError(f"--batch {text!r}: expected a comma list of positive integers such as 1,4,8.")
    return out


def bench(
    artifact: Path = typer.Option(..., "--artifact", help="artifact to time (.onnx or TensorRT .engine/.plan)"),
    vs: Optional[Path] = typer.Option(None, "--vs", help="second artifact, alternated with the first in the same run; "
                                      "the ratio artifact/vs is reported"),
    iters: int = typer.Option(100, "--iters", min=1, help="timed iterations per batch size"),
    warmup: int = typer.Option(10, "--warmup", min=0, help="untimed iterations first (allocation, kernel selection)"),
    batch: str = typer.Option("1,4,8", "--batch", help="comma list of batch sizes"),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads for ONNX Runtime (default: runtime's choice)"),
    provider: str = typer.Option("auto", "--provider", help=_PROVIDER_HELP),
    data: Optional[Path] = typer.Option(None, "--data", help="dataset yaml: end-to-end timing on its images (default: synthetic 640x480)"),
    split: str = typer.Option("val", "--split", help="split of --data"),
    out: Path = typer.Option(Path("bench-out"), "--out", help="folder for bench.json and bench.png"),
    quiet: bool = typer.Option(False, "--quiet", help="no progress bar"),
) -> None:
    """Latency of an artifact on this device: p50/p90/p99/mean per batch size, throughput, inference-only and
    end-to-end (letterbox + infer + NMS), peak memory, device state (Jetson power mode, clocks, L4T, TensorRT)."""
    from .bench import bench as run_bench
    from .bench import format_bench, write_bench

    res = run_bench(artifact, vs=vs, iters=iters, warmup=warmup, batches=_batches(batch), threads=threads,
                    provider=provider, data=data, split=split, progress=not quiet)
    typer.echo(format_bench(res))
    j, png = write_bench(res, out)
    jet = res["device"]["jetson"]
    if jet["is_jetson"]:
        typer.echo(f"Jetson: L4T {jet['l4t']}, JetPack {jet['jetpack']}, nvpmodel {json.dumps(jet['nvpmodel'])}, "
                   f"TensorRT {res['device']['tensorrt']}")
    typer.echo(f"results: {j}  plot: {png}")


COMMANDS = {"check": check, "bench": bench}
