"""`export_run`: a run directory -> FP32/FP16/NMS/INT8 ONNX (+ TensorRT engine) and a verified manifest.

Everything is written into a staging folder and moved into place only when every artifact passed
`onnx.checker` and was scored on the host, so a failed export never leaves half a set of files, and nothing
that exists is overwritten without `force`.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from ..calib.reader import CalibrationSet, calibration_arrays, check_disjoint, from_dataset, from_folder, \
    from_reservoir, merge
from ..core.data import load_dataset, require_classes
from ..core.files import sha256_file
from ..core.manifest import read_manifest
from ..core.validate import check_split, image_problem
from ..detector.lineage import CHECKPOINT, read_lineage
from ..core.errors import CldetError, DataError, MissingRuntimeError, RunError
from .manifest_writer import artifact_entry, build_manifest, write_manifest
from .options import INT8_MODES, ExportOptions

if TYPE_CHECKING:  # the quantizer's modules load onnx; imported where they run
    from .quantize import QuantConfig
    from .ranges import RangeStats

__all__ = ["ExportOptions", "export_run", "artifact_names", "INT8_MODES"]

log = logging.getLogger("cldet")


def resolve_target(opts: ExportOptions) -> str:
    """The INT8 target: what --target says, tensorrt when only --engine says it; --engine with --target cpu is a
    usage error (TensorRT's explicit quantization takes symmetric S8 Q/DQ, not the CPU form's U8 activations)."""
    if opts.target is None:
        if opts.engine and opts.int8 != "none":
            log.info("--engine: the INT8 artifact is written in the TensorRT form (symmetric S8 Q/DQ, --target tensorrt)")
            return "tensorrt"
        return "cpu"
    if opts.target == "cpu" and opts.engine and opts.int8 != "none":
        raise CldetError("--engine with --target cpu: TensorRT builds INT8 engines only from symmetric S8 Q/DQ, and "
                         "--target cpu writes U8 activations for ONNX Runtime on x86. Use --target tensorrt (or leave "
                         "--target out: --engine selects it), and export the CPU artifact in a separate --out.")
    return opts.target


def check_options(opts: ExportOptions) -> None:
    """Ranges and forms the declarations cannot say, checked before anything is read or written."""
    import math
    import re

    if opts.int8 not in INT8_MODES:
        raise CldetError(f"--int8 must be one of {', '.join(INT8_MODES)} (got {opts.int8!r}).")
    for pattern in opts.keep_float:
        try:
            re.compile(pattern)
        except re.error as e:
            raise CldetError(f"--keep-float {pattern!r}: not a regular expression ({e}).") from None
    if not (isinstance(opts.percentile, (int, float)) and 0 < opts.percentile <= 100):
        raise CldetError(f"--percentile {opts.percentile}: must be in (0, 100].")
    if not (isinstance(opts.workspace_gb, (int, float)) and math.isfinite(opts.workspace_gb) and opts.workspace_gb > 0):
        raise CldetError(f"--workspace-gb {opts.workspace_gb}: must be a positive number of GiB.")
    if not math.isfinite(opts.drift_tolerance):
        raise CldetError(f"--drift-tolerance {opts.drift_tolerance}: must be a finite number of points.")
    out = Path(opts.out) if opts.out else None
    if out is not None and (out.is_file() or any(p.is_file() for p in out.parents)):
        raise RunError(f"--out {out}: a file is in the way; --out names a folder.")


def missing_dirs(path: Path) -> list[Path]:
    """The outermost folder of `path` (itself included) that does not exist yet, as a list of at most one: what to
    remove again when a step that would create `path` fails."""
    path = Path(path).absolute()
    missing = [p for p in [path, *path.parents] if not p.exists()]
    return missing[-1:]


def engine_precisions(opts: ExportOptions) -> list[str]:
    """The engines --engine builds: int8 from the INT8 Q/DQ ONNX, fp16 when --fp16."""
    if not opts.engine:
        return []
    precs = (["int8"] if opts.int8 != "none" else []) + (["fp16"] if opts.fp16 else [])
    if not precs:
        raise CldetError("--engine with --int8 none and no --fp16: nothing to build; add --fp16 or an --int8 mode.")
    return precs


def artifact_names(opts: ExportOptions) -> dict[str, str]:
    """Artifact key -> file name, for the options given (engines: see engine_precisions)."""
    names = {"fp32": "model.fp32.onnx"}
    if opts.fp16:
        names["fp16"] = "model.fp16.onnx"
    if opts.nms:
        names["fp32_nms"] = "model.fp32.nms.onnx"
    if opts.int8 != "none":
        names["int8"] = "model.int8.onnx"
    for prec in engine_precisions(opts):
        names[f"engine_{prec}"] = f"model.{prec}.engine"
    return names


def _calibration(run: Path, lin, names: list[str], opts: ExportOptions, eval_images: list[Path]) -> CalibrationSet:
    sets = [from_reservoir(run, names)]
    if opts.calib is not None:
        sets.append(from_folder(opts.calib, names))
    if not any(s.images for s in sets):
        train_yaml = lin.last.data.get("yaml")
        if not train_yaml or not Path(train_yaml).is_file():
            raise CldetError(f"{run} has no calibration reservoir ({run / 'calib'}) and its lineage names no readable "
                             "training data; pass --calib DIR with training images of every class.")
        log.warning("%s has no calibration reservoir; calibrating on a class-balanced sample of the TRAIN split of %s "
                    "(only the last increment's data: earlier classes are covered only if it shows them)",
                    run, train_yaml)
        sets.append(from_dataset(train_yaml, names, opts.calib_images, images=lin.last.data.get("images")))
    calib = merge(*sets, max_images=opts.calib_images)
    check_disjoint(calib, eval_images)
    bad = [(p, why) for p in calib.images if (why := image_problem(p))]
    if bad:
        raise DataError(f"{len(bad)} calibration image(s) do not decode: "
                        + "; ".join(f"{p}: {why}" for p, why in bad[:5]) + ". Remove or replace them.")
    calib.warn_missing()
    return calib


def export_run(run: str | Path, opts: ExportOptions | None = None) -> dict:
    """Export a run; returns the manifest written to OUT/manifest.json."""
    from ..core.evaluate import evaluate
    from ..detector.model import load_checkpoint
    from ..deploy.runtime import open_backend
    from .onnx_export import export_onnx, to_fp16

    opts = opts or ExportOptions()
    check_options(opts)
    opts = replace(opts, target=resolve_target(opts))
    run = Path(run)
    lin = read_lineage(run)
    model, meta = load_checkpoint(run / CHECKPOINT)
    names, imgsz = list(meta["names"]), int(meta["imgsz"])
    if names != lin.classes:
        raise RunError(f"{run}: checkpoint classes {names} differ from lineage.json's {lin.classes}.")
    out = Path(opts.out) if opts.out else run / "export"
    files = artifact_names(opts)
    existing = [f for f in [*files.values(), "manifest.json"] if (out / f).exists()]
    if existing and not opts.force:
        raise RunError(f"{out} already holds {', '.join(existing)}; pass --exist-ok (or --force) to overwrite, "
                       "or --out elsewhere.")
    recorded = lin.last.data.get("yaml")  # an imported run (cldet import) records none
    data_yaml = Path(opts.data) if opts.data else Path(recorded) if recorded else None
    if data_yaml is None or not data_yaml.is_file():
        raise CldetError(f"evaluation data {data_yaml or '(none in the lineage)'} not found; pass --data VAL.yaml.")
    ds = load_dataset(data_yaml, None if opts.data else lin.last.data.get("images"))  # a recorded COCO --images
    require_classes(names, ds, f"run {run}")
    check_split(ds, opts.split, limit=opts.eval_limit)  # every evaluation image decodes, every label parses
    eval_images = ds.images(opts.split)
    groups = lin.groups()
    calib = qat_set = None
    if "int8" in files:  # read-only: before anything is written
        calib = _calibration(run, lin, names, opts, eval_images)
        qat_set = _qat_images(lin, names, calib, opts, eval_images) if opts.int8 == "qat" else None

    # staged beside the output folder, which is created only when every artifact is ready
    new_dirs = missing_dirs(out)
    stage = out.parent / f".{out.name}.staging"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    calib_summary: dict = {"method": None, "images": 0}
    try:
        export_onnx(model, stage / files["fp32"], imgsz)
        if "fp16" in files:
            to_fp16(stage / files["fp32"], stage / files["fp16"])
        if "fp32_nms" in files:
            export_onnx(model, stage / files["fp32_nms"], imgsz, nms=True, dynamic_batch=False)
        if "int8" in files:
            calib_summary, calibrated = _quantize(model, calib, stage / files["fp32"], stage / files["int8"], imgsz,
                                                  opts, ds, qat_set)
        def score(path: Path) -> dict:
            res = evaluate(open_backend(path, provider="cpu", threads=opts.threads), ds, opts.split, names, imgsz, groups=groups,
                           limit=opts.eval_limit, progress=opts.progress)
            log.info("%s: %s", path.name, ", ".join(f"{g} {m.map50_95:.4f}" for g, m in res.groups.items()))
            return res.scores()

        metrics = {key: score(stage / f) for key, f in files.items()
                   if not key.startswith("engine") and key != "fp32_nms"}  # NMS layout, engines: scored on the board
        if opts.int8 == "auto":
            calib_summary["auto"] = _auto_qat(model, calib, stage, files, imgsz, opts, ds, metrics, score,
                                              lambda: _qat_images(lin, names, calib, opts, eval_images), calib_summary,
                                              calibrated)
        out.mkdir(parents=True, exist_ok=True)
        arts = {}
        for key, f in files.items():
            if key.startswith("engine"):
                continue
            shutil.move(str(stage / f), str(out / f))
            arts[key] = artifact_entry(out / f, key, opts.target if key == "int8" else None, metrics.get(key))
    except BaseException:
        for d in new_dirs:  # folders this export created for --out: gone again, as if it never ran
            shutil.rmtree(d, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    manifest = build_manifest(run, lin, names, imgsz, groups, calib_summary, data_yaml, opts.split, ds,
                              len(eval_images[: opts.eval_limit]), arts, model_sha256=sha256_file(run / CHECKPOINT))
    write_manifest(out / "manifest.json", manifest)
    if engine_precisions(opts):
        _build_engines(out, manifest, opts)
    return manifest


def _build_engines(out: Path, manifest: dict, opts: ExportOptions) -> None:
    """Build every requested engine with TensorRT's Python builder; each plan (source ONNX, flags, shapes, the
    equivalent trtexec command) goes into the manifest first, so a host without TensorRT still says what to run."""
    from .tensorrt import engine_plan, tensorrt_available

    major = 10  # JetPack 6 ships TensorRT 10; the installed version wins where there is one
    if tensorrt_available():
        import tensorrt as trt

        major = int(trt.__version__.split(".")[0])
    written = read_manifest(out / "manifest.json")
    src = {k: written.file_of(k) for k in written.artifacts}
    plans = [engine_plan(p, out, src.get("int8"), src.get("fp32"), src.get("fp16"), major=major,
                         workspace_gb=opts.workspace_gb) for p in engine_precisions(opts)]
    manifest["engine_builds"] = {p.engine.name: {**p.as_dict(), "source": "int8" if p.precision == "int8" else
                                                 "fp16"} for p in plans}
    write_manifest(out / "manifest.json", manifest)
    if not tensorrt_available():
        cmds = "\n".join(f"  {p.trtexec()}" for p in plans)
        raise MissingRuntimeError(
            f"ONNX artifacts and manifest are written to {out}, but no engine: TensorRT (python package `tensorrt`) is "
            f"not installed here. On the board run `cldet export --engine` or (TensorRT {major}):\n{cmds}\n"
            "(TensorRT 11: --stronglyTyped instead of the precision flags; the fp16 engine then from model.fp16.onnx)")
    from .tensorrt import build_engine

    for p in plans:
        log.info("building %s with TensorRT's Python builder; equivalent: %s", p.engine.name, p.trtexec())
        build_engine(p, log_path=out / f"{p.engine.stem}.build.log")
        entry = artifact_entry(p.engine, "engine", opts.target if p.precision == "int8" else None, None)
        entry.update(precision=p.precision, source=manifest["engine_builds"][p.engine.name]["source"])
        manifest["artifacts"][f"engine_{p.precision}"] = entry
        write_manifest(out / "manifest.json", manifest)


def _group_losses(fp32: dict, int8: dict) -> list[float]:
    """FP32 - INT8 mAP50-95 in points per class group both score (NaN: a group without objects in the split)."""
    import math

    d = [100 * (fp32[g]["map50_95"] - int8[g]["map50_95"]) for g in fp32 if g in int8]
    return [x for x in d if not math.isnan(x)]


def worst_drift(fp32: dict, int8: dict) -> float:
    """Largest |FP32 - INT8| mAP50-95 over the class groups, in points (0 where no group has objects)."""
    return max((abs(x) for x in _group_losses(fp32, int8)), default=0.0)


def worst_loss(fp32: dict, int8: dict) -> float:
    """Largest FP32 - INT8 mAP50-95 over the class groups, in points: what INT8 lost on its worst group (negative
    when INT8 scores higher on every group; 0 where no group has objects)."""
    return max(_group_losses(fp32, int8), default=0.0)


SENSITIVITY_IMAGES = 8  # calibration images the per-conv ranking compares outputs on (2 min for 68 convs, 2 cores)
SENSITIVE_STEPS = (2, 4, 8)  # convs kept float, tried in turn until the loss is within the tolerance


def _auto_qat(model, calib, stage: Path, files: dict, imgsz: int, opts: ExportOptions, ds, metrics: dict, score,
              qat_set, summary: dict, calibrated: "_Calibrated") -> dict:
    """`--int8 auto`: keep the PTQ artifact when it loses at most `drift_tolerance` points on every class group of
    the evaluation split. Otherwise, in turn: keep the 2, 4, 8 most INT8-sensitive convs float (ranked on
    calibration images, cldet.export.sensitivity) until the loss is within the tolerance; if none is, fine-tune with
    QAT distilled from the FP32 model. The candidate that loses least on its worst group is kept. A group where
    INT8 scores above FP32 has lost nothing, so the decision counts losses, not |drift| (QAT often ends above FP32:
    it is a short distillation on TRAIN images). The evaluation split decides (it is what `cldet check` gates on);
    the manifest records every try, the losses and the |drift|, and which convs stayed float and why. The PTQ
    export's calibration (`calibrated`: images, pre-processed graph, range statistics) serves every try."""
    import re

    from .quantize import float_layers, quantize_ptq
    from .sensitivity import SENSITIVE_WHY, rank_convs

    ptq = worst_loss(metrics["fp32"], metrics["int8"])
    record = {"tolerance": opts.drift_tolerance, "ptq_worst_loss": round(ptq, 3),
              "ptq_worst_drift": round(worst_drift(metrics["fp32"], metrics["int8"]), 3),
              "decided_on": f"{opts.split} split", "chosen": "ptq"}
    if ptq <= opts.drift_tolerance:
        return record
    log.warning("PTQ loses %.2f points (> %.2f) of mAP50-95 on a class group; ranking the convs by INT8 sensitivity",
                ptq, opts.drift_tolerance)
    fp32, int8 = stage / files["fp32"], stage / files["int8"]
    cfg, arrays, proto, stats = calibrated.cfg, calibrated.arrays, calibrated.proto, calibrated.stats
    ranking = rank_convs(fp32, arrays[:SENSITIVITY_IMAGES], cfg, stats, stage, threads=opts.threads,
                         progress=opts.progress)
    record["sensitivity"] = [{"node": n, "output_error": round(e, 5)} for n, e in ranking[:max(SENSITIVE_STEPS)]]
    record["tries"] = []
    best = ptq
    for k in SENSITIVE_STEPS:
        names = [n for n, _ in ranking[:k]]
        if not names or (record["tries"] and len(names) == record["tries"][-1]["float_convs"]):
            break  # nothing (more) to keep float
        cfg_k = replace(cfg, float_nodes=(*cfg.float_nodes, "^(" + "|".join(re.escape(n) for n in names) + ")$"),
                        float_why=(*[None] * len(cfg.float_nodes), f"{SENSITIVE_WHY} ({len(names)} of {len(ranking)})"))
        path = quantize_ptq(fp32, stage / ".model.int8.sensitive.onnx", lambda: iter(arrays), cfg_k, stats=stats,
                            threads=opts.threads, proto=proto)
        m = score(path)
        loss = worst_loss(metrics["fp32"], m)
        record["tries"].append({"float_convs": len(names), "worst_loss": round(loss, 3),
                                "worst_drift": round(worst_drift(metrics["fp32"], m), 3)})
        log.warning("auto INT8: %d most sensitive convs float -> worst-group loss %.2f points", len(names), loss)
        if loss < best:
            path.replace(int8)
            metrics["int8"], best, record["chosen"], record["float_convs"] = m, loss, "ptq-float", len(names)
            summary.update(float_nodes=list(cfg_k.float_nodes), float_layers=float_layers(proto, cfg_k))
        path.unlink(missing_ok=True)
        if loss <= opts.drift_tolerance:
            break
    if best > opts.drift_tolerance:
        log.warning("still %.2f points (> %.2f); running QAT distilled from the FP32 model", best, opts.drift_tolerance)
        from .qat import export_qat

        qat_path = stage / ".model.int8.qat.onnx"
        record["qat"] = export_qat(model, calib, ds, qat_path, imgsz, _qat_config(opts), progress=opts.progress,
                                   train_set=qat_set(), arrays=arrays, fp32=fp32, ranges=stats, proto=proto)
        m = score(qat_path)
        qat = worst_loss(metrics["fp32"], m)
        record["qat_worst_loss"] = round(qat, 3)
        record["qat_worst_drift"] = round(worst_drift(metrics["fp32"], m), 3)
        if qat < best:
            qat_path.replace(int8)
            metrics["int8"], best, record["chosen"] = m, qat, "qat"
            summary.update(float_nodes=list(cfg.float_nodes), float_layers=float_layers(proto, cfg),
                           weight_rounding="nearest")  # QAT's export rounds to nearest (cldet.export.qat)
    record["worst_loss"] = round(best, 3)
    log.warning("auto INT8: PTQ lost %.2f points on its worst group; kept %s (%.2f)", ptq, record["chosen"].upper(),
                best)
    return record


def _qat_config(opts: ExportOptions):
    """The QAT settings of `--int8 qat` and of auto's fallback: the export's target, calibration and float layers."""
    from .qat import QATConfig

    return QATConfig(epochs=opts.qat_epochs, images=opts.qat_images, target=opts.target, method=opts.calib_method,
                     percentile=opts.percentile, float_nodes=tuple(opts.keep_float))


def _qat_images(lin, names: list[str], calib: CalibrationSet, opts: ExportOptions,
                eval_images: list[Path]) -> CalibrationSet:
    """QAT fine-tuning images: the calibration set plus a class-balanced sample of the last increment's TRAIN split
    (still at hand right after `learn`), up to `qat_images`. Measured on chess13 2-step: 256 images brought the
    worst-group drift from 0.69 (64 reservoir images) to 0.17 points. Never evaluation images."""
    sets = [calib]
    train_yaml = lin.last.data.get("yaml")
    if train_yaml and Path(train_yaml).is_file() and len(calib.images) < opts.qat_images:
        try:
            sets.append(from_dataset(train_yaml, names, opts.qat_images - len(calib.images),
                                     images=lin.last.data.get("images")))
        except CldetError as e:
            log.warning("QAT uses the calibration set only: %s", e)
    qat = merge(*sets, max_images=opts.qat_images)
    check_disjoint(qat, eval_images)
    return qat


@dataclass
class _Calibrated:
    """What the PTQ export measured, kept for `--int8 auto`'s further tries (no image is calibrated twice)."""
    cfg: QuantConfig
    arrays: list  # letterboxed calibration images
    proto: object  # the FP32 graph after ONNX Runtime's quantization pre-processing
    stats: RangeStats


def _quantize(model, calib: CalibrationSet, fp32: Path, int8: Path, imgsz: int, opts: ExportOptions, ds,
              qat_set: CalibrationSet | None = None) -> tuple[dict, _Calibrated | None]:
    """The INT8 artifact of `--int8 ptq|qat|auto` and its manifest summary; for auto, also its calibration."""
    from .quantize import QuantConfig, calibrate, float_layers, prepare, quantize_ptq

    cfg = QuantConfig(target=opts.target, method=opts.calib_method, percentile=opts.percentile,
                      float_nodes=tuple(opts.keep_float),
                      # QAT's weights were fine-tuned through nearest rounding (fake quant): it keeps it
                      weight_rounding="nearest" if opts.int8 == "qat" else opts.weight_rounding)
    summary = {"mode": opts.int8, **cfg.as_dict(), **calib.summary(),
               "eval_overlap": 0}  # check_disjoint passed: no calibration image is an evaluation image
    proto = prepare(fp32, fp32.parent)
    summary["float_layers"] = float_layers(proto, cfg)
    arrays = list(calibration_arrays(calib, imgsz, opts.progress))  # read twice (ranges, then the quantizer)
    if opts.int8 == "qat":
        from .qat import export_qat

        # the fine-tuning fake quantizes the Q/DQ graph of these ranges, and the export keeps them
        summary["qat"] = export_qat(model, calib, ds, int8, imgsz, _qat_config(opts), progress=opts.progress,
                                    train_set=qat_set, arrays=arrays, fp32=fp32, proto=proto,
                                    ranges=calibrate(proto, lambda: iter(arrays), cfg, threads=opts.threads))
        return summary, None
    calibrated = _Calibrated(cfg, arrays, proto, calibrate(proto, lambda: iter(arrays), cfg, threads=opts.threads))
    quantize_ptq(fp32, int8, lambda: iter(arrays), cfg, stats=calibrated.stats, threads=opts.threads, proto=proto)
    # auto's sensitivity ranking, float-conv tries and QAT reuse the images, the graph and the ranges
    return summary, calibrated if opts.int8 == "auto" else None
