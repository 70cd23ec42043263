"""Ultralytics DetectionTrainer subclass: builds IncrementalDetectionModel and attaches the teacher.

Everything else (data pipeline, augmentation, assigner, optimiser, EMA, checkpoints, DDP) is
Ultralytics' own. The trainer must survive Ultralytics' DDP launch, which pickles the trainer class,
its args, the model and the callback table: the distillation settings travel on the model
(`cl_config`), and the teacher is loaded again in every process by the `on_pretrain_routine_end`
callback (`attach_teacher`), which Ultralytics runs once the model is on its device, wrapped for DDP,
and its EMA exists.
"""

from __future__ import annotations

from pathlib import Path

from . import _offline  # noqa: F401
from ultralytics.models.yolo.detect import DetectionTrainer
from ultralytics.utils import DEFAULT_CFG
from ultralytics.utils.torch_utils import unwrap_model

from .distill import Distiller, IncrementalDetectionModel

__all__ = ["CLTrainer", "attach_teacher", "save_trainer_init"]


def supply_fonts() -> None:
    """Ultralytics' dataset check wants Arial fonts and fetches them over the network when missing.

    cldet runs offline, so it supplies the file instead: matplotlib's bundled DejaVu Sans, copied under
    the names Ultralytics looks for into Ultralytics' own config folder (where its download would land).
    The fonts only label plots, which cldet's runs switch off.
    """
    import shutil

    import matplotlib
    from ultralytics.utils import USER_CONFIG_DIR

    src = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    for name in ("Arial.ttf", "Arial.Unicode.ttf"):
        dst = Path(USER_CONFIG_DIR) / name
        if not dst.exists() and src.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)


def attach_teacher(trainer) -> None:
    """`on_pretrain_routine_end`: load the teacher named in the model's `cl_config` and attach a Distiller.

    Runs in every process (the DDP workers rebuild the trainer with the pickled callback table), after
    Ultralytics moved the model to its device; the EMA copy made before it carries no teacher.
    """
    model = unwrap_model(trainer.model)
    cfg = getattr(model, "cl_config", None)
    if cfg and any(cfg["terms"].values()):
        from .model import load_checkpoint

        teacher, _ = load_checkpoint(cfg["teacher"])
        model.attach(Distiller(teacher.to(trainer.device), cfg["nc_old"], cfg))


class CLTrainer(DetectionTrainer):
    """DetectionTrainer whose model distils from the teacher named in the start checkpoint."""

    def __init__(self, cfg=DEFAULT_CFG, overrides: dict | None = None, _callbacks: dict | None = None):
        super().__init__(cfg, overrides, _callbacks)
        if attach_teacher not in self.callbacks["on_pretrain_routine_end"]:  # a DDP worker gets it pickled
            self.add_callback("on_pretrain_routine_end", attach_teacher)

    def get_dataset(self):
        supply_fonts()
        return super().get_dataset()

    def get_model(self, cfg=None, weights=None, verbose=True):
        model = IncrementalDetectionModel(cfg, nc=self.data["nc"], ch=self.data.get("channels", 3), verbose=False)
        model = self.set_model_names_for_load(model)
        if weights:
            model.load(weights, verbose=False)
            model.cl_config = getattr(weights, "cl_config", None)
        return model


def save_trainer_init(path: Path, model, cl_config: dict | None) -> Path:
    """The start checkpoint Ultralytics trains from (its own pickle format; a scratch file of this run).

    Ultralytics rebuilds the model from its yaml when given a yaml, dropping loaded weights; a checkpoint
    file keeps them, and carries `cl_config` to every process.
    """
    import torch

    model.cl_config = cl_config
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model, "train_args": {}, "date": None, "version": None}, path)
    return path
