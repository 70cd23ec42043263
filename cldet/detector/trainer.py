"""Ultralytics DetectionTrainer subclass: builds IncrementalDetectionModel and attaches the teacher.

Everything else (data pipeline, augmentation, assigner, optimiser, EMA, checkpoints, DDP) is
Ultralytics' own. The trainer must survive Ultralytics' DDP launch, which pickles the trainer class,
its args and the model: the distillation settings travel on the model (`cl_config`), and the teacher
is loaded again in every process in `_setup_train`.
"""

from __future__ import annotations

from pathlib import Path

from . import _offline  # noqa: F401
from ultralytics.models.yolo.detect import DetectionTrainer
from ultralytics.utils.torch_utils import unwrap_model

from .distill import Distiller, IncrementalDetectionModel

__all__ = ["CLTrainer", "save_trainer_init"]


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


class CLTrainer(DetectionTrainer):
    """DetectionTrainer whose model distils from the teacher named in the start checkpoint."""

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

    def _setup_train(self):
        super()._setup_train()
        model = unwrap_model(self.model)
        cfg = getattr(model, "cl_config", None)
        if cfg and any(cfg["terms"].values()):
            from .model import load_checkpoint

            teacher, _ = load_checkpoint(cfg["teacher"])
            model.attach(Distiller(teacher.to(self.device), cfg["nc_old"], cfg))


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
