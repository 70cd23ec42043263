"""Training and distillation settings as typed code; every field says what it does and why its default.

Each field is also a `cldet train` / `cldet learn` option and a keyword of cldet.api.train / learn: its
`option(...)` metadata is the help text both show (cldet.core.options). A new field needs nothing else.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..core.options import option

__all__ = ["TrainConfig", "DistillConfig", "METHODS", "DEFAULT_METHOD"]

# Every method runs through the same trainer; only the terms that are switched on differ.
METHODS: dict[str, dict[str, bool]] = {
    "finetune": {"pseudo": False, "feature": False, "response": False},  # lower bound: new labels only
    "pseudo": {"pseudo": True, "feature": False, "response": False},  # teacher's old-class boxes as labels
    "feature": {"pseudo": False, "feature": True, "response": False},  # neck features pulled to the teacher's
    "response": {"pseudo": False, "feature": False, "response": True},  # old-class score KD only
    "pseudo+feature": {"pseudo": True, "feature": True, "response": False},
    "pseudo+response": {"pseudo": True, "feature": False, "response": True},
    "feature+response": {"pseudo": False, "feature": True, "response": True},
    "pseudo+feature+response": {"pseudo": True, "feature": True, "response": True},
    "replay": {"pseudo": False, "feature": False, "response": False},  # finetune + stored old images (not exemplar-free)
}
DEFAULT_METHOD = "pseudo+feature+response"


@dataclass
class TrainConfig:
    """What the Ultralytics trainer gets; identical for every method so comparisons are fair."""

    # 12 epochs reach mAP50 0.94 on chess13's white pieces from the COCO backbone
    epochs: int = field(default=12, metadata=option("training epochs", unit="epochs", min=1))
    # edge-sized input; the board runs the same size
    imgsz: int = field(default=320, metadata=option("square input size (an increment keeps the previous run's)",
                                                    unit="px", min=32))
    batch: int = field(default=16, metadata=option("batch size", unit="images", min=1))
    lr0: float = field(default=0.01, metadata=option("initial learning rate (Ultralytics' SGD default)"))
    # 'auto' would pick by iteration count; fixed so runs compare
    optimizer: str = field(default="SGD", metadata=option("Ultralytics optimizer name (SGD, AdamW, ...)"))
    seed: int = field(default=0, metadata=option("random seed"))
    workers: int = field(default=2, metadata=option("data-loader workers", unit="processes", min=0))
    device: str = field(default="cpu", metadata=option("'cpu', '0', or '0,1' for multi-GPU (Ultralytics DDP)"))
    # Ultralytics trains on min(8, cores - 1) CPU threads and loads data in that same thread on CPU: one thread on a
    # 2-core machine, half of it idle. Every core trained 1.79x faster there, side by side
    # (benchmarks/train_threads.py, results/train-threads.json), so cldet takes them all unless told otherwise.
    threads: int | None = field(default=None, metadata=option(
        "CPU threads for training with --device cpu (default: every core this process may use; Ultralytics "
        "alone would take min(8, cores - 1))", unit="threads", min=1))
    freeze: int = field(default=0, metadata=option("freeze the first N layers (0 = train all)", unit="layers", min=0))
    # Ultralytics' default augmentation for every method
    mosaic: float = field(default=1.0, metadata=option("probability of mosaic augmentation", unit="probability"))
    close_mosaic: int = field(default=10, metadata=option("turn mosaic off for the last N epochs", unit="epochs"))
    patience: int = field(default=100, metadata=option("early-stopping patience", unit="epochs"))
    fraction: float = field(default=1.0, metadata=option("fraction of the training images to use", unit="fraction"))

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class DistillConfig:
    """How an increment keeps the old classes (see METHODS)."""

    method: str = field(default=DEFAULT_METHOD, metadata=option(
        f"how the old classes are kept; {DEFAULT_METHOD} is the best measured (see README)", choices=tuple(METHODS)))
    # Teacher detections above this class probability become labels. 0.5 keeps the precision of the
    # pseudo labels high: a false pseudo-box teaches a wrong positive, a missed one only weakens a negative
    # that the score KD term still softens.
    pseudo_conf: float = field(default=0.5, metadata=option(
        "teacher score above which an old-class box becomes a label", unit="probability"))
    pseudo_nms_iou: float = field(default=0.6, metadata=option(
        "class-wise NMS of the teacher's boxes before they become labels", unit="IoU"))
    pseudo_gt_iou: float = field(default=0.5, metadata=option(
        "a pseudo-box overlapping a real label by more than this is dropped", unit="IoU"))
    # scale-free by construction, so the weight needs no retuning across datasets
    feature_weight: float = field(default=1.0, metadata=option("weight of the neck-feature distillation term"))
    feature_mode: str = field(default="mse", metadata=option(
        "'mse' (relative L2) or 'channel' (channel-wise KL)", choices=("mse", "channel")))
    # Where the neck is held: 'teacher' weights each position by the teacher's old-class confidence there
    # (old objects keep their features, background and new objects are free to change); 'all' holds it
    # everywhere alike, which also holds it still where new objects need new features.
    feature_focus: str = field(default="teacher", metadata=option(
        "where neck features are held: 'teacher' (weighted by the teacher's old-class confidence) or 'all'",
        choices=("teacher", "all")))
    response_weight: float = field(default=1.0, metadata=option(
        "weight of the old-class score distillation term, times the task's cls gain"))
    # With the response term: the task loss' old-class targets are max(assigned, teacher probability), so
    # old objects that no pseudo label claims are not trained as background against the teacher.
    soft_targets: bool = field(default=True, metadata=option(
        "old-class targets of the task loss = max(assigned, teacher probability) instead of hard background"))
    box_weight: float = field(default=0.0, metadata=option(
        "weight (times the task's dfl gain) of box-distribution distillation where the teacher sees old objects",
        min=0))
    # Ultralytics normalises its task loss by the sum of all target scores: pseudo labels of the old classes then
    # scale down the new classes' share of the signal (measured: new classes learn slower than fine-tuning's).
    # Split, each class group's targets train its own channels over its own target sum.
    task_split: bool = field(default=False, metadata=option(
        "task loss per class group: pseudo labels train the old class outputs and new labels the new ones, each "
        "normalised by its own target sum"))
    # A second teacher for the new classes (BPF, YOLO-IOD): a model that learned the same new classes alone, from the
    # same previous run, typically plain fine-tuning. It knows them better than the student can while it also keeps
    # the old ones; its new-class scores and box distributions are distilled into the student's new outputs.
    # Off by default: it costs that extra run (about one fine-tuning increment) and a third forward pass per batch.
    new_teacher: str | None = field(default=None, metadata=option(
        "run folder of a model that learned the same new classes from the same previous run (e.g. `cldet learn "
        "--method finetune`): its new-class scores and boxes are distilled into the new class outputs, a second "
        "teacher for the new classes (default: none)"))
    new_teacher_weight: float = field(default=1.0, metadata=option(
        "--new-teacher: weight of its score and box distillation, times the task's cls and dfl gains", min=0))
    replay_images: int = field(default=0, metadata=option(
        "method 'replay' only: old images to store and mix in (not exemplar-free)", unit="images", min=0))

    def terms(self) -> dict[str, bool]:
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}")
        return METHODS[self.method]

    def as_dict(self) -> dict:
        return asdict(self)
