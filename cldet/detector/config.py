"""Training and distillation settings as typed code; every field says what it does and why its default."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

__all__ = ["TrainConfig", "DistillConfig", "METHODS", "DEFAULT_METHOD"]

# Every method runs through the same trainer; only the terms that are switched on differ.
METHODS: dict[str, dict[str, bool]] = {
    "finetune": {"pseudo": False, "feature": False, "response": False},  # lower bound: new labels only
    "pseudo": {"pseudo": True, "feature": False, "response": False},  # teacher's old-class boxes as labels
    "feature": {"pseudo": False, "feature": True, "response": False},  # neck features pulled to the teacher's
    "response": {"pseudo": False, "feature": False, "response": True},  # old-class score KD only
    "pseudo+feature": {"pseudo": True, "feature": True, "response": False},
    "pseudo+response": {"pseudo": True, "feature": False, "response": True},
    "pseudo+feature+response": {"pseudo": True, "feature": True, "response": True},
    "replay": {"pseudo": False, "feature": False, "response": False},  # finetune + stored old images (not exemplar-free)
}
DEFAULT_METHOD = "pseudo+feature+response"


@dataclass
class TrainConfig:
    """What the Ultralytics trainer gets; identical for every method so comparisons are fair."""

    epochs: int = 12  # 12 epochs reach mAP50 0.94 on chess13's white pieces from the COCO backbone
    imgsz: int = 320  # edge-sized input; the board runs the same size
    batch: int = 16
    lr0: float = 0.01  # Ultralytics' SGD default
    optimizer: str = "SGD"  # 'auto' would pick by iteration count; fixed so runs compare
    seed: int = 0
    workers: int = 2
    device: str = "cpu"  # 'cpu', '0', '0,1' (multi-GPU runs through Ultralytics' DDP)
    freeze: int = 0  # number of leading layers to freeze (0 = train all)
    mosaic: float = 1.0  # Ultralytics' default augmentation for every method
    close_mosaic: int = 10
    patience: int = 100
    fraction: float = 1.0  # fraction of the training images to use (quick runs)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class DistillConfig:
    """How an increment keeps the old classes (see METHODS)."""

    method: str = DEFAULT_METHOD
    # Teacher detections above this class probability become labels. 0.5 keeps the precision of the
    # pseudo labels high: a false pseudo-box teaches a wrong positive, a missed one only weakens a negative
    # that the score KD term still softens.
    pseudo_conf: float = 0.5
    pseudo_nms_iou: float = 0.6  # class-wise NMS of the teacher's boxes before they become labels
    pseudo_gt_iou: float = 0.5  # a pseudo-box overlapping a real label by more than this is dropped
    feature_weight: float = 1.0  # weight of the relative neck-feature distance (scale-free by construction)
    feature_mode: str = "mse"  # 'mse' (relative L2) or 'channel' (channel-wise KL)
    response_weight: float = 1.0  # weight of the old-class score KL, times the task's cls gain
    replay_images: int = 0  # method 'replay' only: old images stored and mixed in (not exemplar-free)
    extra: dict = field(default_factory=dict)

    def terms(self) -> dict[str, bool]:
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}")
        return METHODS[self.method]

    def as_dict(self) -> dict:
        return asdict(self)
