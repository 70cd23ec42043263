"""What a `train` or `learn` will do, worked out and checked in full before anything is written.

`plan_train` / `plan_learn` read everything a run needs (options, architecture, initial weights, the previous run,
the whole dataset, the evaluation data, the output folder) and refuse with the documented exit code and a message
naming the option, file or line. Only then does cldet.detector.runs create the run folder; so a refused run leaves
nothing behind, and an accepted one does not fail later on something that could have been known.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path

from ..core.assets import BACKBONE
from ..core.data import Dataset, load_dataset, resolve_classes
from ..core.errors import CldetError, RunError
from ..core.options import given
from .checks import check_distill_config, check_eval_data, check_train_config, check_train_data
from .config import DistillConfig, TrainConfig
from .jobs import LearnJob, TrainJob
from .lineage import CHECKPOINT, Lineage, read_lineage
from .rundir import check_out, check_pending

__all__ = ["TrainPlan", "LearnPlan", "plan_train", "plan_learn", "DEFAULT_INIT"]

log = logging.getLogger("cldet")
DEFAULT_INIT = BACKBONE


@dataclass
class TrainPlan:
    out: Path
    mode: str  # 'new' | 'resume'
    data: Dataset
    names: list[str]
    arch: str
    arch_cfg: dict
    init: Path | None
    eval_yaml: Path
    tcfg: TrainConfig
    options: dict = field(default_factory=dict)  # what a --resume must repeat (rundir.RunFolder)
    eval_images: Path | None = None  # --images of a COCO .json evaluation set (when it is --data)


@dataclass
class LearnPlan:
    out: Path
    mode: str
    data: Dataset
    parent_dir: Path
    parent: Lineage
    new: list[str]
    use: list[str]  # dataset class names whose labels are staged
    eval_yaml: Path
    tcfg: TrainConfig
    dcfg: DistillConfig
    options: dict = field(default_factory=dict)
    eval_images: Path | None = None

    @property
    def names(self) -> list[str]:
        return self.parent.classes + self.new


def _check_init(path: Path) -> None:
    """The initial weights must be a tensors-only state dict (read weights-only, never unpickled)."""
    import torch

    if not path.is_file():
        raise CldetError(f"--init {path}: file does not exist.")
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises several types for foreign pickles
        raise CldetError(f"--init {path}: not a tensors-only state dict ({type(e).__name__}); cldet never unpickles "
                         "objects. Save the weights with torch.save(model.state_dict(), path).") from None
    sd = sd.get("state_dict", sd) if isinstance(sd, dict) else sd
    if not isinstance(sd, dict) or not any(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CldetError(f"--init {path}: holds no tensors.")


def _check_resumable(out: Path, mode: str, command: str, options: dict) -> None:
    """On --resume, before anything is redone: the pending record is this command's with the same options, and the
    interrupted training's state reads as weights-only data."""
    from .trainer import STATE, read_train_state

    if mode != "resume":
        return
    state = out / "train" / STATE
    if state.exists():
        read_train_state(state)
    check_pending(out, command, options)


def _eval_source(eval_data: Path | None, data: Path, ds: Dataset) -> tuple[Path, Path | None]:
    """The evaluation data and its --images folder: --eval-data as it is, else --data with its --images."""
    return (Path(eval_data), None) if eval_data is not None else (Path(data), ds.images_dir)


def images_record(ds: Dataset) -> dict:
    """--images of a COCO .json, for what a --resume must repeat and for the lineage (where export and calibration
    find the images again); absent without it, so runs begun before the option still resume."""
    return {"images": str(ds.images_dir)} if ds.images_dir is not None else {}


def plan_train(job: TrainJob, tcfg: TrainConfig) -> TrainPlan:
    from .arch import resolve_arch

    check_train_config(tcfg)
    if job.init is not None and job.no_init:
        raise CldetError("--init and --no-init contradict each other; give one of them.")
    arch_cfg = resolve_arch(job.arch)
    init = None if job.no_init else Path(job.init or DEFAULT_INIT)
    if init is not None:
        _check_init(init)
    ds = load_dataset(job.data, job.images)
    ids = resolve_classes(job.classes, ds.names) if job.classes else list(range(ds.nc))
    names = [ds.names[i] for i in ids]
    check_train_data(ds, require=names)
    ev, ev_images = _eval_source(job.eval_data, job.data, ds)
    if job.eval_data is not None:
        check_eval_data(ev, names)
    mode = check_out(Path(job.out), job.resume)
    options = {"data": str(ds.yaml_path), "fingerprints": [ds.fingerprint("train"), ds.fingerprint("val")],
               "classes": names, "arch": job.arch, "init": str(init), "eval_data": str(ev.resolve()),
               "train": tcfg.as_dict(), **images_record(ds)}
    _check_resumable(Path(job.out), mode, "train", options)
    return TrainPlan(Path(job.out), mode, ds, names, job.arch, arch_cfg, init, ev, tcfg, options, ev_images)


def _check_new_teacher(run: Path, from_run: Path, parent, names: list[str]) -> str:
    """--new-teacher RUN: a finished run (checkpoint verified) that learned exactly these classes, in this order,
    as one increment from the same previous model; returns its folder, absolute, as the lineage records it."""
    try:
        lin = read_lineage(run)  # a finished run: lineage.json there, its checkpoint's sha256 verified
    except RunError as e:
        raise RunError(f"--new-teacher: {e}") from None
    if lin.classes != names:
        raise RunError(f"--new-teacher {run} knows {', '.join(lin.classes)}; this increment's model will know "
                       f"{', '.join(names)} (same classes, same order: learn them from {from_run}, e.g. with "
                       "--method finetune).")
    came_from = (lin.last.parent or {}).get("model_sha256")
    if came_from != parent.last.artifacts.get(CHECKPOINT):
        raise RunError(f"--new-teacher {run} did not learn from {from_run}'s model (its parent's sha256 differs): a "
                       "second teacher must start from the same previous run.")
    return str(run.resolve())


def plan_learn(job: LearnJob, dcfg: DistillConfig, tcfg: TrainConfig) -> LearnPlan:
    from .model import load_checkpoint

    from_run, out = Path(job.from_run), Path(job.out)
    check_distill_config(dcfg)
    parent = read_lineage(from_run)  # verifies the checkpoint's sha256
    if out.resolve() == from_run.resolve() or from_run.resolve() in out.resolve().parents:
        raise RunError(f"--out {out} is inside the previous run {from_run}; learn never writes into it.")
    if tcfg.imgsz != parent.imgsz:
        explicit = given(tcfg)
        if explicit is not None and "imgsz" not in explicit:  # the default: an increment keeps its parent's size
            tcfg = dataclasses.replace(tcfg, imgsz=parent.imgsz)
        else:
            raise CldetError(f"--imgsz {tcfg.imgsz} differs from the previous run's {parent.imgsz} px: an increment "
                             f"keeps its parent's input size (the teacher was trained at it). Leave --imgsz out, or "
                             f"pass --imgsz {parent.imgsz}.")
    check_train_config(tcfg)
    _, meta = load_checkpoint(from_run / CHECKPOINT)  # the teacher: architecture checked, weights fit
    if list(meta["names"]) != parent.classes:
        raise RunError(f"{from_run}: checkpoint classes {meta['names']} differ from lineage.json's {parent.classes}.")
    ds = load_dataset(job.data, job.images)
    new = [ds.names[i] for i in resolve_classes(job.new_classes, ds.names, what="new class")]
    known = [n for n in new if n in parent.classes]
    if known:
        raise RunError(f"classes {known} are already known to {from_run} (its classes: {', '.join(parent.classes)}).")
    use = [n for n in ds.names if n in new or (job.old_labels and n in parent.classes)]
    check_train_data(ds, require=new)
    if dcfg.method == "replay" and not any((from_run / "data" / "train" / "images").glob("*")):
        raise RunError(f"--method replay needs the previous run's staged training images "
                       f"({from_run / 'data' / 'train' / 'images'}), and it has none.")
    if dcfg.new_teacher:
        dcfg = dataclasses.replace(dcfg, new_teacher=_check_new_teacher(Path(dcfg.new_teacher), from_run, parent,
                                                                         parent.classes + new))
    ev, ev_images = _eval_source(job.eval_data, job.data, ds)
    check_eval_data(ev, parent.classes + new, source=f"{from_run} plus the new classes", images=ev_images)
    mode = check_out(out, job.resume)
    options = {"from": str(from_run.resolve()), "parent_sha256": parent.last.artifacts.get(CHECKPOINT),
               "data": str(ds.yaml_path), "fingerprints": [ds.fingerprint("train"), ds.fingerprint("val")],
               "new_classes": new, "old_labels": job.old_labels, "eval_data": str(ev.resolve()),
               "train": tcfg.as_dict(), "distill": dcfg.as_dict(), **images_record(ds)}
    _check_resumable(out, mode, "learn", options)
    return LearnPlan(out, mode, ds, from_run, parent, new, use, ev, tcfg, dcfg, options, ev_images)
