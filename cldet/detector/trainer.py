"""Ultralytics DetectionTrainer subclass: builds IncrementalDetectionModel, attaches the teacher, and keeps its own
weights-only state instead of Ultralytics' pickled checkpoints.

Everything else (data pipeline, augmentation, assigner, optimiser, EMA, DDP) is Ultralytics' own. Two things are
cldet's:
- No pickle is written or read. The start checkpoint (`train/init.pt`) is a cldet weights-only checkpoint with the
  distillation settings in its `extra`; after every epoch `save_model` writes `train/weights/state.pt` (EMA,
  optimizer and scaler state dicts, epoch, early-stopping state: tensors and plain data, `torch.load(
  weights_only=True)`), and `--resume` reads that file back (`resume=` names it). Ultralytics' `last.pt`/`best.pt`
  are never written, and its own resume path (which unpickles `last.pt`) is never taken.
- The trainer must survive Ultralytics' DDP launch, which pickles the trainer class, its args and the callback table
  into a script (cldet's own process, nothing read from a file): the distillation settings come from init.pt in
  every process, and the teacher is loaded again in each by the `on_pretrain_routine_end` callback
  (`attach_teacher`), which Ultralytics runs once the model is on its device, wrapped for DDP, and its EMA exists.
"""

from __future__ import annotations

from pathlib import Path

import torch

from . import _offline  # noqa: F401
from ultralytics.models.yolo.detect import DetectionTrainer
from ultralytics.utils import DEFAULT_CFG, LOGGER, RANK
from ultralytics.utils.torch_utils import unwrap_model

from ..core.errors import RunError
from ..core.files import atomic_path
from .distill import Distiller, IncrementalDetectionModel
from .lineage import CHECKPOINT

__all__ = ["CLTrainer", "attach_teacher", "write_trainer_start", "read_train_state", "state_finished", "STATE",
           "STATE_FORMAT"]

STATE = Path("weights") / "state.pt"  # under the trainer's folder (RUN/train)
STATE_FORMAT = "cldet-train-state/1"


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
        second = None
        if cfg.get("new_teacher"):  # --new-teacher: a run folder, checked by plan_learn
            second, _ = load_checkpoint(Path(cfg["new_teacher"]) / CHECKPOINT)
            second = second.to(trainer.device)
        model.attach(Distiller(teacher.to(trainer.device), cfg["nc_old"], cfg, new_teacher=second))


def write_trainer_start(path: Path, model, names: list[str], imgsz: int, cl_config: dict | None) -> Path:
    """The start checkpoint the trainer builds its model from: a cldet weights-only checkpoint whose `extra`
    carries the distillation settings (plain data) to every process."""
    from .model import save_checkpoint

    path.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(path, model, names, imgsz, extra={"cl_config": cl_config})
    return path


def _plain(x):
    """A number as a Python float (numpy scalars are not weights-only data); None stays None."""
    return None if x is None else float(x)


def read_train_state(path: Path) -> dict:
    """A `state.pt` written by `CLTrainer.save_model`, read without unpickling objects; RunError when it is not one."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises several types for foreign or damaged files
        raise RunError(f"{path}: not a cldet training state ({type(e).__name__}); cldet never unpickles objects. "
                       "Delete it to restart the interrupted training from its first epoch.") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise RunError(f"{path}: not a cldet training state (expected format {STATE_FORMAT}).")
    ok = (isinstance(state.get("epoch"), int) and state["epoch"] >= 0 and isinstance(state.get("ema"), dict)
          and all(isinstance(v, torch.Tensor) for v in state["ema"].values()) and isinstance(state.get("yaml"), dict)
          and isinstance(state.get("optimizer"), dict) and isinstance(state.get("stop"), bool))
    if not ok:
        raise RunError(f"{path}: malformed cldet training state; delete it to restart the training.")
    return state


class _Weights(torch.nn.Module):
    """What Ultralytics' `_load_checkpoint_state` expects under "ema": something with `.float().state_dict()`."""

    def __init__(self, sd: dict) -> None:
        super().__init__()
        self._sd = sd

    def state_dict(self, *args, **kwargs):  # noqa: D102
        return self._sd


class CLTrainer(DetectionTrainer):
    """DetectionTrainer whose model distils from the teacher named in the start checkpoint, and whose checkpoints
    are cldet's weights-only training state."""

    def __init__(self, cfg=DEFAULT_CFG, overrides: dict | None = None, _callbacks: dict | None = None):
        super().__init__(cfg, overrides, _callbacks)
        if attach_teacher not in self.callbacks["on_pretrain_routine_end"]:  # a DDP worker gets it pickled
            self.add_callback("on_pretrain_routine_end", attach_teacher)
        self.state_path = self.save_dir / STATE
        self.last = self.state_path  # Ultralytics' last.pt / best.pt are never written (nor read)
        self.best = self.save_dir / "weights" / ".no-best"

    def check_resume(self, overrides):
        """`resume=` names cldet's state file; Ultralytics' own resume (which unpickles last.pt) is never used."""
        state = self.args.resume
        if state and not (isinstance(state, (str, Path)) and Path(state).is_file()):
            raise RunError(f"resume state {state!r} does not exist.")
        self.resume = bool(state)

    def get_dataset(self):
        supply_fonts()
        return super().get_dataset()

    def get_model(self, cfg=None, weights=None, verbose=True):
        from .arch import check_arch
        from .model import apply_cls_width

        if isinstance(cfg, dict):
            cfg = check_arch(cfg, "trainer model")
        model = IncrementalDetectionModel(cfg, nc=self.data["nc"], ch=self.data.get("channels", 3), verbose=False)
        model = apply_cls_width(model)  # a widened head keeps its parent's class-branch width (model.py)
        model = self.set_model_names_for_load(model)
        if weights:
            model.load(weights, verbose=False)
            model.cl_config = getattr(weights, "cl_config", None)
        return model

    def setup_model(self):
        """Build the model from the cldet start checkpoint (args.model); when resuming, its weights and the optimizer,
        EMA and early-stopping state come from the weights-only state file. Returns Ultralytics' resume dict."""
        if isinstance(self.model, torch.nn.Module):
            return None
        from .model import load_checkpoint

        weights, meta = load_checkpoint(self.model)
        extra = meta.get("extra") if isinstance(meta.get("extra"), dict) else {}
        weights.cl_config = extra.get("cl_config")
        ckpt = None
        if self.resume:
            state = read_train_state(Path(self.args.resume))
            try:
                weights.load_state_dict(state["ema"], strict=True)
            except RuntimeError as e:
                raise RunError(f"{self.args.resume}: its weights do not fit the run's model ({e}).") from None
            ckpt = {"epoch": state["epoch"], "best_fitness": state.get("best_fitness"), "stopper": state.get("stopper"),
                    "ema": _Weights(state["ema"]), "updates": int(state.get("updates", 0)),
                    "optimizer": state["optimizer"], "scaler": state.get("scaler") or None}
        self.model = self.get_model(cfg=weights.yaml, weights=weights, verbose=RANK in {-1, 0})
        return ckpt

    def save_model(self):
        """Write the training state (weights-only) atomically: a kill mid-write leaves the previous epoch's."""
        ema = self.ema.ema
        yaml_cfg = {k: v for k, v in ema.yaml.items() if k != "yaml_file"}
        state = {
            "format": STATE_FORMAT,
            "epoch": int(self.epoch),
            "epochs": int(self.epochs),
            "stop": bool(self.stop),
            "best_fitness": _plain(self.best_fitness),
            "fitness": _plain(self.fitness),
            "stopper": {"best_fitness": _plain(self.stopper.best_fitness), "best_epoch": int(self.stopper.best_epoch)},
            "yaml": yaml_cfg,
            "names": [str(ema.names[i]) for i in sorted(ema.names)],
            "ema": {k: v.detach().float().cpu().clone() for k, v in ema.state_dict().items()},
            "updates": int(self.ema.updates),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
        }
        bad = [k for k, v in state["ema"].items() if v.is_floating_point() and not torch.isfinite(v).all()]
        if bad:
            LOGGER.warning(f"training state of epoch {self.epoch + 1} not saved: non-finite EMA tensors {bad[:3]}")
            return False
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.state_path) as tmp:
            torch.save(state, tmp)
        return True

    def final_eval(self):
        """Nothing to do: validation is off, and there is no best.pt to re-validate or last.pt to strip."""

    def _handle_nan_recovery(self, epoch):
        """Ultralytics' NaN recovery reloads its pickled last.pt; here the previous epoch's weights-only state."""
        import numpy as np

        loss_nan = self.loss is not None and not self.loss.isfinite()
        fitness_nan = self.fitness is not None and not np.isfinite(self.fitness)
        corrupted = RANK in {-1, 0} and (loss_nan or fitness_nan)
        if RANK != -1:
            import torch.distributed as dist

            flag = [corrupted if RANK == 0 else None]
            dist.broadcast_object_list(flag, 0)
            corrupted = flag[0]
        if not corrupted:
            return False
        if epoch == self.start_epoch or not self.state_path.exists():
            LOGGER.warning("Loss/fitness NaN or Inf, and no earlier training state to recover from")
            return False
        self.nan_recovery_attempts += 1
        if self.nan_recovery_attempts > 3:
            raise RuntimeError(f"Training failed: NaN persisted for {self.nan_recovery_attempts} epochs")
        LOGGER.warning(f"NaN/Inf detected (attempt {self.nan_recovery_attempts}/3), recovering from {self.state_path}")
        self._model_train()
        state = read_train_state(self.state_path)
        unwrap_model(self.model).load_state_dict(state["ema"], strict=False)
        self._load_checkpoint_state({"ema": _Weights(state["ema"]), "updates": state.get("updates", 0),
                                     "optimizer": state["optimizer"], "scaler": state.get("scaler") or None,
                                     "best_fitness": state.get("best_fitness"), "stopper": state.get("stopper")})
        self.scheduler.last_epoch = epoch - 1
        return True


def state_finished(state: dict, epochs: int) -> bool:
    """True when the training that wrote `state` has nothing left to do (its last epoch, or an early stop)."""
    return bool(state["stop"]) or int(state["epoch"]) + 1 >= epochs
