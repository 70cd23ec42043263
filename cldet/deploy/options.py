"""Options of `cldet check` and `cldet bench` (and cldet.api.check / bench), declared once.

cldet.core.options builds the CLI flags and the API keywords from these fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..core.options import ProgressOption, option

__all__ = ["RuntimeOptions", "CheckOptions", "BenchOptions", "PredictOptions", "DEFAULT_TOLERANCE"]

DEFAULT_TOLERANCE = 1.0  # mAP50-95 points; PTQ INT8 vs FP32 noise on chess13 is well under this


@dataclass(kw_only=True)
class RuntimeOptions(ProgressOption):
    """How an artifact is run (shared by check and bench)."""

    provider: str = field(default="auto", metadata=option(
        "ONNX Runtime execution provider: auto (best installed), cpu, cuda or tensorrt. Engines (.engine/.plan) "
        "always run on TensorRT", choices=("auto", "cpu", "cuda", "tensorrt")))
    threads: int | None = field(default=None, metadata=option(
        "CPU threads for ONNX Runtime (default: the runtime's choice)", unit="threads", min=1))


@dataclass(kw_only=True)
class CheckOptions(RuntimeOptions):
    """The drift gate: an artifact on this device against the host references in its manifest."""

    artifact: Path = field(metadata=option("model.int8.onnx, model.fp32.onnx or a TensorRT .engine/.plan"))
    manifest: Path = field(metadata=option("manifest.json written by `cldet export` with this artifact"))
    data: Path = field(metadata=option(
        "evaluation dataset yaml (YOLO format); its names must include the model's classes"))
    split: str = field(default="val", metadata=option("split of --data to evaluate"))
    tolerance: float = field(default=DEFAULT_TOLERANCE, metadata=option(
        "allowed |reference - measured| mAP50-95 per class group", unit="mAP50-95 points", min=0))
    reference: str | None = field(default=None, metadata=option(
        "manifest artifact key whose host metrics to compare with (default: the artifact's own entry; for a "
        "device-built engine, the INT8 ONNX)"))
    batch: int = field(default=8, metadata=option("images per inference call", unit="images", min=1))
    limit: int | None = field(default=None, metadata=option(
        "evaluate only the first N images (smoke test; drift then means little; default: all)", unit="images", min=1))
    report: Path | None = field(default=None, metadata=option(
        "JSON report path (default: check-<artifact>.json in the current folder)", api=False))


@dataclass(kw_only=True)
class BenchOptions(RuntimeOptions):
    """Latency of one artifact, or two alternated."""

    artifact: Path = field(metadata=option("artifact to time (.onnx or TensorRT .engine/.plan)"))
    vs: Path | None = field(default=None, metadata=option(
        "second artifact, alternated with the first in the same run; the ratio artifact/vs is reported (default: "
        "none, one artifact timed)"))
    iters: int = field(default=100, metadata=option("timed iterations per batch size", unit="iterations",
                                                                min=1))
    warmup: int = field(default=10, metadata=option("untimed iterations first (allocation, kernel selection)",
                                                    unit="iterations", min=0))
    batch: tuple[int, ...] = field(default=(1, 4, 8), metadata=option("comma list of batch sizes", unit="images",
                                                                                 sep=",", min=1))
    data: Path | None = field(default=None, metadata=option(
        "dataset yaml: end-to-end timing on its images (default: synthetic 640x480)"))
    split: str = field(default="val", metadata=option("split of --data"))
    out: Path = field(default=Path("bench-out"), metadata=option("folder for bench.json and bench.png", api=False))
    exist_ok: bool = field(default=False, metadata=option(
        "replace bench.json and bench.png already in --out (else refused, exit 4)", api=False))


@dataclass(kw_only=True)
class PredictOptions(RuntimeOptions):
    """Detections on images, a folder or a video, from a run (PyTorch) or an exported ONNX artifact (no torch)."""

    source: Path = field(metadata=option(
        "an image, a folder of images and videos (not recursive), or a video file (.mp4, .avi, .mov, .mkv, ...)"))
    run: Path | None = field(default=None, metadata=option(
        "run directory whose model.pt predicts (needs the train extra: torch, ultralytics); give --run or --artifact "
        "(default: none; exactly one of the two is required)"))
    artifact: Path | None = field(default=None, metadata=option(
        "exported ONNX artifact (model.fp32.onnx / model.int8.onnx) run with ONNX Runtime, no torch needed; class "
        "names from its metadata, else from the manifest.json beside it (default: none; give --run or --artifact)"))
    out: Path = field(default=Path("predict-out"), metadata=option(
        "output folder: drawn images/videos, labels/*.txt (YOLO: class cx cy w h score, normalised) and "
        "predictions.json; refused if it exists, unless --exist-ok"))
    exist_ok: bool = field(default=False, metadata=option(
        "write into an existing --out folder (files of the same name are replaced)"))
    conf: float = field(default=0.25, metadata=option(
        "lowest class probability a detection is kept at", unit="probability", min=0))
    iou: float = field(default=0.7, metadata=option("IoU above which NMS drops the lower-scored box of a class",
                                                    unit="IoU", min=0))
    max_det: int = field(default=300, metadata=option("most detections kept per image", unit="detections", min=1))
    device: str = field(default="cpu", metadata=option(
        "PyTorch device for --run: cpu, or a CUDA index such as 0 (--artifact uses --provider instead)"))
    vid_stride: int = field(default=1, metadata=option("predict every N-th video frame (the others are skipped)",
                                                       unit="frames", min=1))
