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
from ultralytics.utils.loss import v8DetectionLoss

from .losses import (
    box_kd, feature_kd, level_maps, merge_targets, new_object_anchors, pseudo_labels, score_kd, soft_target_correction,
    split_targets, teacher_confidence,
)

__all__ = ["IncrementalDetectionModel", "Distiller", "IncrementalLoss"]


class _AssignerRecorder:
    """Wraps the loss' task-aligned assigner and keeps its last output (the assigned target scores)."""

    def __init__(self, assigner):
        self.assigner = assigner
        self.last = None

    def __call__(self, *args, **kwargs):
        self.last = self.assigner(*args, **kwargs)
        return self.last

    def __getattr__(self, name):
        if name in ("assigner", "last"):
            raise AttributeError(name)
        return getattr(self.assigner, name)


class IncrementalLoss(v8DetectionLoss):
    """Ultralytics' detection loss whose assigned targets stay readable after each call.

    `channels` (a slice of the class outputs), optional: the classification loss trains only those channels
    (through the loss' own per-class weight seam); the others are left to the distillation terms.
    """

    def __init__(self, model, *args, channels: slice | None = None, **kwargs):
        super().__init__(model, *args, **kwargs)
        self.assigner = _AssignerRecorder(self.assigner)
        if channels is not None:
            mask = torch.zeros(1, 1, self.nc, device=self.device)
            mask[..., channels] = 1.0
            self.class_weights = mask if self.class_weights is None else self.class_weights * mask

    @property
    def target_scores(self) -> torch.Tensor:
        """(B, A, nc) target scores of the last call (zero where an anchor is background)."""
        return self.assigner.last[2]


class Distiller:
    """Holds the frozen teacher and computes the increment's loss for a training batch.

    Terms (see cldet.detector.config.METHODS and DistillConfig):
      pseudo   teacher's confident old-class boxes join the labels of the task loss
      feature  neck features held near the teacher's, weighted by the teacher's old-class confidence
      response old-class scores distilled at every anchor but those assigned to a labeled new object;
               with soft_targets the task loss' old-class targets become max(assigned, teacher probability)
               instead of hard background, at the same anchors
      box_weight > 0: DFL box distributions distilled where the teacher sees old objects
      task_split: the task loss runs twice, old-class targets on the old channels and new labels on the new
               channels, each normalised by its own target sum
    """

    def __init__(self, teacher: torch.nn.Module, nc_old: int, cfg: dict, new_teacher: torch.nn.Module | None = None):
        self.teacher = teacher.eval()
        self.new_teacher = new_teacher.eval() if new_teacher is not None else None
        for t in [self.teacher] + ([self.new_teacher] if self.new_teacher is not None else []):
            t.requires_grad_(False)
        self.nc_old = nc_old
        self.cfg = cfg
        self.terms = cfg["terms"]

    def __call__(self, model: DetectionModel, batch: dict, preds=None) -> tuple[torch.Tensor, dict]:
        cfg, terms = self.cfg, self.terms
        img = batch["img"]
        with torch.no_grad():
            t_dec, t_raw = self.teacher(img)  # eval mode: decoded (B, 4 + nc_old, A) and raw dict
        n_pseudo = 0
        if terms["pseudo"]:
            pl = pseudo_labels(t_dec, cfg["pseudo_conf"], cfg["pseudo_nms_iou"])
            batch, n_pseudo = merge_targets(batch, pl, tuple(img.shape[2:]), cfg["pseudo_gt_iou"])
        if preds is None:
            preds = model.forward(img)
        if cfg.get("task_split", False):
            # old-class targets (pseudo labels) and new-class labels each train their own channels, each normalised
            # by its own target sum: the new classes learn at fine-tuning's strength however many pseudo labels join
            crit, crit_new = self._split_criteria(model)
            model.criterion = crit  # the trainer looks for one there
            old_b, new_b = split_targets(batch, self.nc_old)
            loss, items = crit(preds, old_b)
            loss_new, items_new = crit_new(preds, new_b)
            loss = loss + loss_new
            items = {k: v + items_new[k] for k, v in items.items()}
            ts_new = crit_new.target_scores
        else:
            if not isinstance(getattr(model, "criterion", None), IncrementalLoss):
                model.criterion = IncrementalLoss(model)
            crit = model.criterion
            loss, items = crit(preds, batch)
            ts_new = crit.target_scores
        raw = preds[1] if isinstance(preds, tuple) else preds
        bs = img.shape[0]
        zero = loss.new_zeros(())
        conf = teacher_confidence(t_raw["scores"])  # (B, A)
        feat = zero
        if terms["feature"]:
            weights = level_maps(conf, t_raw["feats"]) if cfg.get("feature_focus", "teacher") == "teacher" else None
            feat = feature_kd(raw["feats"], t_raw["feats"], cfg["feature_mode"], weights)
        resp = soft = zero
        if terms["response"]:
            ts = crit.target_scores
            # where a real label of a new class claims the anchor, the label wins over the teacher's old-class guess
            keep = ~new_object_anchors(ts_new, self.nc_old)
            resp = score_kd(raw["scores"][:, : self.nc_old], t_raw["scores"], keep)
            if cfg.get("soft_targets", True):
                soft = soft_target_correction(raw["scores"][:, : self.nc_old].transpose(1, 2), ts[..., : self.nc_old],
                                              t_raw["scores"], ts.sum().clamp(min=1), keep)
        box = zero
        if cfg.get("box_weight", 0.0) > 0:
            box = box_kd(raw["boxes"], t_raw["boxes"], conf, crit.reg_max)
        kd = (cfg["feature_weight"] * feat + cfg["response_weight"] * model.args.cls * resp + model.args.cls * soft
              + cfg.get("box_weight", 0.0) * model.args.dfl * box)
        new_kd = zero
        if self.new_teacher is not None:
            # second teacher: its new-class scores everywhere, its box distributions where it sees a new object
            with torch.no_grad():
                _, n_raw = self.new_teacher(img)
            n_scores = n_raw["scores"][:, self.nc_old:]
            new_resp = score_kd(raw["scores"][:, self.nc_old:], n_scores)
            new_box = box_kd(raw["boxes"], n_raw["boxes"], teacher_confidence(n_scores), crit.reg_max)
            new_kd = model.args.cls * new_resp + model.args.dfl * new_box
            kd = kd + cfg.get("new_teacher_weight", 1.0) * new_kd
        items = dict(items)
        items.update(pseudo_n=torch.tensor(float(n_pseudo) / bs), feat_kd=feat.detach(), resp_kd=resp.detach(),
                     box_kd=box.detach())
        if self.new_teacher is not None:
            items["new_kd"] = new_kd.detach()
        # the task loss is a (box, cls, dfl) vector that the trainer sums: add the distillation once
        return loss.sum() + kd * bs, items

    def _split_criteria(self, model) -> tuple[IncrementalLoss, IncrementalLoss]:
        """(old-channel loss, new-channel loss), built once per model (after Ultralytics set its hyper-parameters)."""
        crits = getattr(self, "_crits", None)
        if crits is None or crits[0] is not model:
            crits = (model, IncrementalLoss(model, channels=slice(0, self.nc_old)),
                     IncrementalLoss(model, channels=slice(self.nc_old, None)))
            self._crits = crits
        return crits[1], crits[2]


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
