"""What `train`, `learn` and `eval` read and write (data, run directories), as opposed to how they train.

Declared once here, with TrainConfig and DistillConfig (cldet.detector.config): the CLI flags and the keywords
of cldet.api are generated from these fields (cldet.core.options).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..core.options import option

__all__ = ["RunControl", "TrainJob", "LearnJob", "EvalJob", "ImportJob"]


def _images_field():
    """`--images`, the same for train, learn and eval."""
    return field(default=None, metadata=option(
        "folder the image file_names of a COCO .json --data resolve against (only with a .json --data; default: the "
        "json's own folder)"))


@dataclass(kw_only=True)
class RunControl:
    """How `train` and `learn` run and report, beside what they read and write."""

    resume: bool = field(default=False, metadata=option("continue an interrupted run in --out"))
    curves: bool = field(default=False, metadata=option(
        "score the model per class group after every epoch (RUN/curves.json; slower), and say at the end when the "
        "(new) classes were still improving, that is when more --epochs may help"))
    verbose: bool = field(default=False, metadata=option(
        "also show Ultralytics' own output (argument dump, per-epoch tables); it always goes to RUN/train.log"))


@dataclass(kw_only=True)
class TrainJob(RunControl):
    """A base model (increment 0) on the first classes of a dataset."""

    data: Path = field(metadata=option(
        "dataset: a YOLO yaml with train and val splits, a yaml whose splits name COCO files "
        "({annotations: x.json, images: DIR}), or one COCO instances .json (images in --images, else beside it)"))
    images: Path | None = _images_field()
    out: Path = field(metadata=option("new run directory (refused if it exists, unless --resume)"))
    classes: str | None = field(default=None, metadata=option(
        "comma list of class names or ids to learn (default: all)"))
    init: Path | None = field(default=None, metadata=option(
        "tensors-only backbone+neck weights (default: the bundled COCO yolov5nu weights)"))
    no_init: bool = field(default=False, metadata=option("start from random weights"))
    arch: str = field(default="yolov5nu.yaml", metadata=option("Ultralytics architecture yaml"))
    eval_data: Path | None = field(default=None, metadata=option(
        "dataset yaml (or COCO .json, images beside it) to score the result on (default: --data, with --images)"))


@dataclass(kw_only=True)
class LearnJob(RunControl):
    """One increment: new classes from new data, the previous run as the frozen teacher."""

    from_run: Path = field(metadata=option("previous run directory (its model becomes the frozen teacher)",
                                           flag="--from"))
    data: Path = field(metadata=option(
        "dataset of the NEW data (labeled for the new classes): YOLO yaml, yaml naming COCO files, or a COCO .json"))
    images: Path | None = _images_field()
    new_classes: str = field(metadata=option("comma list of class names (or ids) in --data to add"))
    out: Path = field(metadata=option("new run directory; the previous run is never written to"))
    old_labels: bool = field(default=True, metadata=option(
        "use labels of already-known classes present in the new data"))
    eval_data: Path | None = field(default=None, metadata=option(
        "dataset yaml (or COCO .json, images beside it) with ALL classes labeled, to score old and new classes "
        "(default: --data, with --images)"))


@dataclass
class EvalJob:
    """Score a run per class group and increment; forgetting over its lineage."""

    run: Path = field(metadata=option("run directory"))
    data: Path = field(metadata=option(
        "dataset with the classes to score labeled: YOLO yaml, yaml naming COCO files, or a COCO .json"))
    images: Path | None = _images_field()
    split: str = field(default="val", metadata=option("split to evaluate"))
    joint: Path | None = field(default=None, metadata=option(
        "a joint model's run, for the ratio to joint (default: none, no ratio reported)"))
    detections: Path | None = field(default=None, metadata=option(
        "also write the run's detections in COCO results format to this JSON file (image and category ids of a "
        "COCO dataset, else image index and class index; pycocotools' COCO.loadRes reads it); never overwritten "
        "(default: not written)"))
    out: Path | None = field(default=None, metadata=option(
        "JSON report path (default RUN/eval-<split>.json; never overwritten)", api=False))


@dataclass
class ImportJob:
    """An Ultralytics detection checkpoint turned into increment 0 of a cldet run."""

    weights: Path = field(metadata=option(
        "Ultralytics detection checkpoint (.pt written by `yolo train` or the Ultralytics trainer: YOLOv5u, YOLOv8, "
        "YOLO11, any scale)", argument=True))
    out: Path = field(metadata=option("new run directory (refused if it exists)"))
    trust: bool = field(default=False, metadata=option(
        "load WEIGHTS although it is a pickle: an Ultralytics .pt is a Python pickle, and loading a pickle runs "
        "whatever code its author put in it. Give --trust only for a file whose origin you trust (your own training); "
        "without it nothing is loaded. The run written is weights-only, and nothing else in cldet unpickles a file"))
    imgsz: int | None = field(default=None, metadata=option(
        "input size of the run (default: the checkpoint's training size, else 640)", unit="px", min=32))
