"""Everything `train` and `learn` are given, checked before a run folder is created or an epoch runs.

Ranges of the training and distillation settings that Ultralytics would otherwise reject (or silently accept) only
after a training started, the device, the architecture, and the whole dataset (cldet.core.validate). Each problem
is a CldetError with the documented exit code (2 usage, 3 dataset, 6 missing runtime) that names the option or file.
"""

from __future__ import annotations

import math
from pathlib import Path

from ..core.data import Dataset, load_dataset, require_classes
from ..core.errors import CldetError, MissingRuntimeError
from ..core.validate import check_split
from .config import DEFAULT_METHOD, DistillConfig, TrainConfig

__all__ = ["STRIDE", "OPTIMIZERS", "check_train_config", "check_distill_config", "check_device", "check_train_data",
           "check_eval_data"]

STRIDE = 32  # the largest stride of the YOLO detectors cldet trains: input sizes are multiples of it
OPTIMIZERS = ("SGD", "Adam", "Adamax", "AdamW", "NAdam", "RAdam", "RMSprop", "MuSGD", "auto")  # Ultralytics' names


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _range(name: str, value, lo: float | None, hi: float | None, lo_open: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (lo is None or (value > lo if lo_open else value >= lo)) and (hi is None or value <= hi)
    if not ok:
        lo_s = "" if lo is None else (f"> {lo:g}" if lo_open else f">= {lo:g}")
        hi_s = "" if hi is None else f"<= {hi:g}"
        raise CldetError(f"{_flag(name)} {value}: must be a number {' and '.join(s for s in (lo_s, hi_s) if s)}.")


def check_train_config(t: TrainConfig) -> None:
    """Ranges of every TrainConfig field (the CLI/API check only declared minimums)."""
    if not isinstance(t.imgsz, int) or t.imgsz <= 0 or t.imgsz % STRIDE:
        near = max(STRIDE, round(t.imgsz / STRIDE) * STRIDE) if isinstance(t.imgsz, int) else 320
        raise CldetError(f"--imgsz {t.imgsz}: must be a positive multiple of {STRIDE} (the model's largest stride), "
                         f"e.g. {near}.")
    for name, lo in (("epochs", 1), ("batch", 1), ("workers", 0), ("freeze", 0), ("close_mosaic", 0),
                     ("patience", 1)):
        v = getattr(t, name)
        if not isinstance(v, int) or isinstance(v, bool) or v < lo:
            raise CldetError(f"{_flag(name)} {v}: must be an integer >= {lo}.")
    if not 0 <= t.seed < 2**32:
        raise CldetError(f"--seed {t.seed}: must be in 0..{2**32 - 1}.")
    _range("lr0", t.lr0, 0, 10, lo_open=True)
    _range("mosaic", t.mosaic, 0, 1)
    _range("fraction", t.fraction, 0, 1, lo_open=True)
    if str(t.optimizer).lower() not in {o.lower() for o in OPTIMIZERS}:
        raise CldetError(f"--optimizer {t.optimizer!r}: unknown; choose one of {', '.join(OPTIMIZERS)}.")
    check_device(t.device)


def check_distill_config(d: DistillConfig) -> None:
    d.terms()  # the method name (the CLI already restricts it to the choices)
    for name in ("pseudo_conf", "pseudo_nms_iou", "pseudo_gt_iou"):
        _range(name, getattr(d, name), 0, 1)
    for name in ("feature_weight", "response_weight", "box_weight", "new_teacher_weight"):
        _range(name, getattr(d, name), 0, None)
    if d.method == "replay" and d.replay_images < 1:
        raise CldetError("--method replay needs --replay-images N (N >= 1 old images to store and mix in).")
    if d.new_teacher and not any(d.terms().values()):
        raise CldetError(f"--new-teacher distils into a model that learns with a teacher; --method {d.method} has none "
                         f"(use the default method, {DEFAULT_METHOD}).")
    if d.method != "replay" and d.replay_images:
        raise CldetError(f"--replay-images {d.replay_images} applies to --method replay only (got --method {d.method}).")


def check_device(device: str) -> None:
    """'cpu', 'mps', or CUDA ids ('0', '0,1', 'cuda:0') that this machine has; MissingRuntimeError otherwise."""
    text = str(device).strip().lower()
    if text in ("cpu", "mps"):
        if text == "mps":
            import torch

            if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
                raise MissingRuntimeError("--device mps: Apple MPS is not available here; use --device cpu.")
        return
    ids = [s.strip().removeprefix("cuda:") for s in text.split(",")]
    if not ids or not all(s.isdigit() for s in ids) or len(set(ids)) != len(ids):
        raise CldetError(f"--device {device!r}: expected 'cpu', 'mps', or CUDA device ids such as '0' or '0,1'.")
    import torch

    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    missing = [i for i in ids if int(i) >= n]
    if missing:
        raise MissingRuntimeError(f"--device {device}: CUDA device {', '.join(missing)} not available here "
                                  f"({n} CUDA device(s)); use --device cpu or an id below {n}.")


def check_train_data(ds: Dataset, require: list[str]) -> None:
    """The splits the trainer reads: every train and val image decodes, every label line parses, and each class in
    `require` (dataset names) has a train label."""
    check_split(ds, "train", require=require)
    check_split(ds, "val", need_labels=False)


def check_eval_data(path: Path, names: list[str], split: str = "val", source: str = "the model",
                    images: Path | None = None) -> Dataset:
    """A dataset a model of `names` will be scored on: names include every class, and `split` is intact and
    labeled. `images`: the --images folder of a COCO .json."""
    ds = load_dataset(path, images)
    require_classes(names, ds, source)
    check_split(ds, split)
    return ds
