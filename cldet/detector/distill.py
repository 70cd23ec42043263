"""The frozen teacher and the distillation step, wired into Ultralytics through its model's `loss`.

`IncrementalDetectionModel` is an Ultralytics DetectionModel that carries its distillation settings as
plain data (`cl_config`), so the settings survive Ultralytics' checkpoint pickles, `--resume`, and the
DDP subprocess launch. The teacher itself is never pickled: the trainer attaches a `Distiller` after
set-up, on every process, from the teacher checkpoint path in `cl_config`.
"""

from __future__ import annotations

import torch

from . import _offline  # noqa: F401
from ultralytics.nn.tasks import DetectionModel

from .losses import feature_kd, merge_targets, pseudo_labels, score_kd

__all__ = ["IncrementalDetectionModel", "Distiller"]


class Distiller:
    """Holds the frozen teacher and computes the increment's loss for a training batch."""

    def __init__(self, teacher: torch.nn.Module, nc_old: int, cfg: dict):
        self.teacher = teacher.eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.nc_old = nc_old
        self.cfg = cfg
        self.terms = cfg["terms"]

    def __call__(self, model: DetectionModel, batch: dict, preds=None) -> tuple[torch.Tensor, dict]:
        img = batch["img"]
        with torch.no_grad():
            t_dec, t_raw = self.teacher(img)  # eval mode: decoded (B, 4 + nc_old, A) and raw dict
        n_pseudo = 0
        if self.terms["pseudo"]:
            pl = pseudo_labels(t_dec, self.cfg["pseudo_conf"], self.cfg["pseudo_nms_iou"])
            batch, n_pseudo = merge_targets(batch, pl, tuple(img.shape[2:]), self.cfg["pseudo_gt_iou"])
        if preds is None:
            preds = model.forward(img)
        if getattr(model, "criterion", None) is None:
            model.criterion = model.init_criterion()
        loss, items = model.criterion(preds, batch)
        raw = preds[1] if isinstance(preds, tuple) else preds
        bs = img.shape[0]
        zero = loss.new_zeros(())
        feat = feature_kd(raw["feats"], t_raw["feats"], self.cfg["feature_mode"]) if self.terms["feature"] else zero
        resp = score_kd(raw["scores"][:, : self.nc_old], t_raw["scores"]) if self.terms["response"] else zero
        kd = self.cfg["feature_weight"] * feat + self.cfg["response_weight"] * model.args.cls * resp
        items = dict(items)
        items.update(pseudo_n=torch.tensor(float(n_pseudo) / bs), feat_kd=feat.detach(), resp_kd=resp.detach())
        return loss + kd * bs, items


class IncrementalDetectionModel(DetectionModel):
    """DetectionModel whose training loss adds distillation when a Distiller is attached."""

    cl_config: dict | None = None

    def loss(self, batch, preds=None):
        distiller = self.__dict__.get("_distiller")
        if distiller is None or not self.training:
            return super().loss(batch, preds)
        return distiller(self, batch, preds)

    def attach(self, distiller: Distiller | None) -> None:
        self.__dict__["_distiller"] = distiller

    def __getstate__(self):
        state = self.__dict__.copy()
        state.pop("_distiller", None)  # the teacher is re-attached after load, never pickled
        return state
