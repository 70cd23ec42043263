"""`cldet export`: the CLI face of cldet.export.pipeline (torch/onnx are imported inside, never at CLI load)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

__all__ = ["COMMANDS", "export"]


def export(
    run: Path = typer.Option(..., "--run", help="Run directory (model.pt + lineage.json) to export."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output folder (default RUN/export)."),
    int8: str = typer.Option("ptq", "--int8", help="ptq | qat | none."),
    target: str = typer.Option("cpu", "--target", help="cpu (U8 act / S8 weights, x86 VNNI) | tensorrt (S8 symmetric)."),
    calib_method: str = typer.Option("percentile", "--calib-method", help="minmax | percentile | entropy."),
    percentile: float = typer.Option(99.999, "--percentile", help="Percentile for --calib-method percentile."),
    keep_float: Optional[list[str]] = typer.Option(None, "--keep-float", help="Regex of ONNX node names to keep "
                                                   "float (repeatable), e.g. '^/model\\.0/'."),
    calib: Optional[Path] = typer.Option(None, "--calib", help="Extra folder of calibration images (TRAIN images; "
                                         "YOLO labels beside them in model class ids are optional)."),
    calib_images: int = typer.Option(128, "--calib-images", help="Cap on calibration images."),
    engine: bool = typer.Option(False, "--engine", help="Also build a TensorRT engine (needs tensorrt; on the board)."),
    fp16: bool = typer.Option(False, "--fp16", help="Also write an FP16 ONNX."),
    nms: bool = typer.Option(False, "--nms", help="Also write an FP32 ONNX with in-graph NMS (batch 1)."),
    data: Optional[Path] = typer.Option(None, "--data", help="Evaluation dataset yaml (default: the last increment's)."),
    split: str = typer.Option("val", "--split", help="Evaluation split of --data."),
    qat_epochs: int = typer.Option(3, "--qat-epochs", help="QAT fine-tuning epochs."),
    qat_images: int = typer.Option(256, "--qat-images", help="QAT images: calibration set + last increment's TRAIN "
                                   "sample, up to this many."),
    threads: Optional[int] = typer.Option(None, "--threads", help="ONNX Runtime threads for host evaluation."),
    force: bool = typer.Option(False, "--force", help="Overwrite existing artifacts in --out."),
) -> None:
    """Export a run to ONNX (FP32, optional FP16/NMS) and INT8 Q/DQ ONNX, score each on the host, write manifest.json."""
    import logging

    from .pipeline import ExportOptions, export_run

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    opts = ExportOptions(out=out, int8=int8, target=target, calib_method=calib_method, percentile=percentile,
                         keep_float=tuple(keep_float or ()),
                         calib=calib, calib_images=calib_images, engine=engine, fp16=fp16, nms=nms, data=data,
                         split=split, force=force, qat_epochs=qat_epochs, qat_images=qat_images,
                         threads=threads)
    manifest = export_run(run, opts)
    where = Path(out) if out else Path(run) / "export"
    groups = list(manifest["groups"])
    typer.echo(f"\n{'artifact':<24}" + "".join(f"{g:>12}" for g in groups) + "   (mAP50-95, ONNX Runtime CPU)")
    for key, a in manifest["artifacts"].items():
        m = a.get("metrics") or {}
        typer.echo(f"{a['file']:<24}" + "".join(f"{m[g]['map50_95']:>12.4f}" if g in m else f"{'-':>12}"
                                                for g in groups))
    if "fp32" in manifest["artifacts"] and "int8" in manifest["artifacts"]:
        f, q = manifest["artifacts"]["fp32"]["metrics"], manifest["artifacts"]["int8"]["metrics"]
        drift = {g: 100 * (f[g]["map50_95"] - q[g]["map50_95"]) for g in groups if g in f and g in q}
        typer.echo("INT8 drift (points): " + ", ".join(f"{g} {d:+.2f}" for g, d in drift.items()))
    cal = manifest.get("calibration", {})
    if cal.get("missing"):
        typer.secho(f"warning: calibration set has no image of: {', '.join(cal['missing'])}", fg=typer.colors.YELLOW)
    typer.echo(f"wrote {where / 'manifest.json'}")


COMMANDS = {"export": export}
