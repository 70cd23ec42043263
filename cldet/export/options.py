"""Options of `cldet export` / cldet.api.export, declared once (cldet.core.options builds the CLI and the API)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..core.options import ProgressOption, option

__all__ = ["ExportJob", "ExportOptions", "CALIB_METHODS", "TARGETS", "INT8_MODES", "WEIGHT_ROUNDINGS"]

CALIB_METHODS = ("minmax", "percentile", "entropy")
TARGETS = ("cpu", "tensorrt")
INT8_MODES = ("auto", "ptq", "qat", "none")
WEIGHT_ROUNDINGS = ("gptq", "nearest")


@dataclass
class ExportJob:
    run: Path = field(metadata=option("run directory (model.pt + lineage.json) to export"))


@dataclass
class ExportOptions(ProgressOption):
    """How a run is exported; every field is an option of `cldet export` and a keyword of cldet.api.export."""

    out: Path | None = field(default=None, metadata=option("output folder (default RUN/export)"))
    int8: str = field(default="auto", metadata=option(
        "INT8 artifact: auto (PTQ; when PTQ loses more than --drift-tolerance on a class group of the evaluation "
        "split, the 2, 4, then 8 most INT8-sensitive convs kept float, then QAT distilled from the FP32 model; the "
        "one that loses least is kept), ptq, qat, or none", choices=INT8_MODES))
    # None: tensorrt when --engine is given (TensorRT takes only symmetric S8 Q/DQ), else cpu
    target: str | None = field(default=None, metadata=option(
        "runtime the INT8 graph is laid out for: cpu (U8 act / S8 weights, ONNX Runtime x86) or tensorrt (S8 "
        "symmetric, for engines); default tensorrt with --engine, else cpu; --engine with --target cpu is refused",
        choices=TARGETS))
    # default chosen by measured drift (docs/export.md): min-max had the smallest worst-group |drift| once the stem
    # conv stayed float (0.28 / 0.38 points on two chess models; percentile 0.78 / 0.19; entropy 2.35)
    calib_method: str = field(default="minmax", metadata=option("activation range calibration",
                                                                    choices=CALIB_METHODS))
    # default chosen on the output change vs FP32 (docs/export.md): GPTQ 0.80-0.86x of nearest rounding
    weight_rounding: str = field(default="gptq", metadata=option(
        "INT8 weight values: gptq (each conv's rounding minimizes its output error on the calibration images; same "
        "scales, same graph and speed) or nearest", choices=WEIGHT_ROUNDINGS))
    percentile: float = field(default=99.999, metadata=option("percentile for --calib-method percentile", unit="%"))
    keep_float: tuple[str, ...] = field(default=(), metadata=option(
        "regex of ONNX node names to keep float (repeatable), e.g. '^/model\\.0/' (default: none beyond the built-in "
        "float stem and decode)"))
    calib: Path | None = field(default=None, metadata=option(
        "extra folder of calibration images (TRAIN images; YOLO labels beside them in model class ids are optional) "
        "(default: none: the run's calibration reservoir, else its last TRAIN split)"))
    calib_images: int = field(default=128, metadata=option("cap on calibration images", unit="images", min=1))
    engine: bool = field(default=False, metadata=option(
        "also build TensorRT engines with TensorRT's Python builder (on the board): model.int8.engine, and "
        "model.fp16.engine with --fp16; the equivalent trtexec commands are printed and kept in the manifest"))
    fp16: bool = field(default=False, metadata=option("also write an FP16 ONNX"))
    nms: bool = field(default=False, metadata=option("also write an FP32 ONNX with in-graph NMS (batch 1)"))
    data: Path | None = field(default=None, metadata=option(
        "evaluation dataset yaml (default: the last increment's)"))
    split: str = field(default="val", metadata=option("evaluation split of --data"))
    force: bool = field(default=False, metadata=option(
        "overwrite artifacts and manifest already in --out (else refused, exit 4); --exist-ok is the same flag, "
        "spelled as in predict and bench", aliases=("--exist-ok",)))
    qat_epochs: int = field(default=3, metadata=option("QAT fine-tuning epochs", unit="epochs", min=1))
    qat_images: int = field(default=256, metadata=option(
        "QAT images: calibration set + last increment's TRAIN sample, up to this many", unit="images", min=1))
    drift_tolerance: float = field(default=0.5, metadata=option(
        "auto: largest FP32 - INT8 mAP50-95 loss on a class group PTQ may have before QAT runs (a group where INT8 "
        "scores higher loses nothing)", unit="mAP50-95 points",
        min=0))
    eval_limit: int | None = field(default=None, metadata=option(
        "score on the first N evaluation images only (quick checks; default: all)", unit="images", min=1))
    threads: int | None = field(default=None, metadata=option(
        "ONNX Runtime threads for host evaluation (default: the runtime's choice)", unit="threads", min=1))
    workspace_gb: float = field(default=2.0, metadata=option("TensorRT builder workspace", unit="GiB"))
