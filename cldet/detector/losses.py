"""Distillation losses and pseudo-labelling as pure functions on tensors (no trainer, no model).

Shapes follow Ultralytics' Detect head: scores are (B, nc, A) logits, decoded predictions are
(B, 4 + nc, A) with cx, cy, w, h in input pixels followed by class probabilities, neck features are
a list of (B, C, H, W) maps for P3/P4/P5.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.ops import batched_nms, box_convert, box_iou

__all__ = [
    "pseudo_labels", "merge_targets", "feature_kd", "score_kd", "teacher_confidence", "level_maps",
    "soft_target_correction", "box_kd", "new_object_anchors", "split_targets",
]


@torch.no_grad()
def pseudo_labels(
    teacher_pred: torch.Tensor, conf: float, nms_iou: float = 0.6, max_det: int = 300
) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Confident teacher detections per image: [(boxes xyxy px (n, 4), classes (n,), scores (n,))].

    One class per anchor (the teacher's best), score > conf, class-wise NMS.
    """
    out = []
    for p in teacher_pred:  # (4 + nc_old, A)
        p = p.T
        score, cls = p[:, 4:].max(1)
        keep = score > conf
        boxes, score, cls = box_convert(p[keep, :4], "cxcywh", "xyxy"), score[keep], cls[keep]
        k = batched_nms(boxes, score, cls, nms_iou)[:max_det]
        out.append((boxes[k], cls[k], score[k]))
    return out


@torch.no_grad()
def merge_targets(
    batch: dict, pseudo: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], imgsz: tuple[int, int], gt_iou: float = 0.5
) -> tuple[dict, int]:
    """Add pseudo boxes to a batch's targets, dropping any that overlap a real box (IoU > gt_iou).

    A pseudo-box never overrides a real label: where the new data labels an object, the label wins.
    Returns (new batch dict, number of pseudo boxes added).
    """
    h, w = imgsz
    scale = torch.tensor([w, h, w, h], device=batch["bboxes"].device, dtype=batch["bboxes"].dtype)
    cls, bboxes, bidx = [batch["cls"].view(-1, 1)], [batch["bboxes"]], [batch["batch_idx"].view(-1)]
    added = 0
    for i, (boxes, c, _) in enumerate(pseudo):
        if not len(boxes):
            continue
        gt_mask = batch["batch_idx"].view(-1) == i
        if gt_mask.any():
            gt = box_convert(batch["bboxes"][gt_mask] * scale, "cxcywh", "xyxy")
            boxes_keep = box_iou(boxes, gt).max(1).values <= gt_iou
            boxes, c = boxes[boxes_keep], c[boxes_keep]
        if not len(boxes):
            continue
        xywh = box_convert(boxes, "xyxy", "cxcywh") / scale
        cls.append(c.view(-1, 1).to(batch["cls"].dtype))
        bboxes.append(xywh.clamp(0, 1).to(batch["bboxes"].dtype))
        bidx.append(torch.full((len(boxes),), i, dtype=batch["batch_idx"].dtype, device=boxes.device))
        added += len(boxes)
    if not added:
        return batch, 0
    bidx_all = torch.cat(bidx)
    order = torch.argsort(bidx_all, stable=True)  # the loss expects targets grouped by image
    merged = dict(batch)
    merged["cls"] = torch.cat(cls)[order]
    merged["bboxes"] = torch.cat(bboxes)[order]
    merged["batch_idx"] = bidx_all[order]
    return merged, added


def split_targets(batch: dict, nc_old: int) -> tuple[dict, dict]:
    """(old-class targets, new-class targets) of a batch: two copies of its label set, split by class id.

    The old part holds the pseudo labels (and any real labels of known classes); the new part the new classes'
    real labels. Each becomes the target set of its own task loss over its own class channels, normalised by
    its own target sum, so adding pseudo labels does not scale down the new classes' learning signal.
    """
    cls = batch["cls"].view(-1)
    parts = []
    for keep in (cls < nc_old, cls >= nc_old):
        part = dict(batch)
        part["cls"], part["bboxes"], part["batch_idx"] = batch["cls"][keep], batch["bboxes"][keep], batch["batch_idx"][keep]
        parts.append(part)
    return parts[0], parts[1]


def teacher_confidence(teacher_logits: torch.Tensor) -> torch.Tensor:
    """The teacher's belief that an anchor holds an old object: max old-class probability, (B, A)."""
    return teacher_logits.detach().sigmoid().amax(1)


def level_maps(per_anchor: torch.Tensor, feats: list[torch.Tensor]) -> list[torch.Tensor]:
    """Split a (B, A) per-anchor map into one (B, 1, H, W) map per feature level (the head's anchor order)."""
    sizes = [f.shape[2] * f.shape[3] for f in feats]
    return [m.view(m.shape[0], 1, *f.shape[2:]) for m, f in zip(per_anchor.split(sizes, 1), feats)]


def feature_kd(
    student: list[torch.Tensor], teacher: list[torch.Tensor], mode: str = "mse", weights: list[torch.Tensor] | None = None
) -> torch.Tensor:
    """Distance between student and teacher neck features, averaged over levels.

    mse:     ||s - t||^2 / ||t||^2 per level (relative, so the weight does not depend on feature scale).
             With `weights` ((B, 1, H, W) per level), both sums are weighted: the features are held where
             the weights are high (where the teacher sees old objects) and left free elsewhere, which is
             where new objects need new features.
    channel: channel-wise distillation (KL between per-channel spatial softmaxes, T = 1)
    """
    losses = []
    for i, (s, t) in enumerate(zip(student, teacher)):
        t = t.detach().to(s.dtype)
        if mode == "mse":
            w = 1.0 if weights is None else weights[i].detach().to(s.dtype)
            losses.append((w * (s - t).pow(2)).sum() / (w * t.pow(2)).sum().clamp_min(1e-6))
        elif mode == "channel":
            b, c = s.shape[:2]
            ls, lt = s.reshape(b * c, -1).log_softmax(1), t.reshape(b * c, -1).log_softmax(1)
            losses.append(F.kl_div(ls, lt, log_target=True, reduction="batchmean"))
        else:
            raise ValueError(f"unknown feature KD mode {mode!r} (use 'mse' or 'channel')")
    return torch.stack(losses).mean()


def score_kd(student_logits: torch.Tensor, teacher_logits: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
    """Binary KL from teacher to student class probabilities on the old classes, summed over anchors
    and normalised by the teacher's total positive mass (the analogue of the task loss' target-score sum).

    `keep` (B, A), optional: anchors where the teacher is listened to (e.g. not those the assigner gave to a
    labeled new object, where the label says what is there and the teacher's old-class guess is wrong).
    """
    t = teacher_logits.detach().sigmoid()
    kl = F.binary_cross_entropy_with_logits(student_logits, t, reduction="none") - F.binary_cross_entropy_with_logits(
        teacher_logits.detach(), t, reduction="none"
    )
    if keep is not None:
        keep = keep.to(kl.dtype)[:, None]
        kl, t = kl * keep, t * keep
    return kl.sum() / t.sum().clamp_min(1.0)


def new_object_anchors(target_scores: torch.Tensor, nc_old: int) -> torch.Tensor:
    """(B, A) bool: anchors the task's assigner gave to a labeled object of a new class."""
    return target_scores[..., nc_old:].amax(-1) > 0


def soft_target_correction(
    student_logits: torch.Tensor, target_scores: torch.Tensor, teacher_logits: torch.Tensor, normaliser: torch.Tensor,
    keep: torch.Tensor | None = None,
) -> torch.Tensor:
    """Turn the task loss' old-class targets from hard 0 into the teacher's probability where it is higher.

    The new data leaves old objects unlabeled, so the task loss trains every old-class output that no
    (pseudo) label claims as background, against what the teacher knows. With targets y' = max(y, p_teacher)
    on the old classes the task loss agrees with the teacher. BCE is linear in its target,
    bce(x, y') - bce(x, y) = -x (y' - y), so this returns that difference, to be added to the task's
    classification loss (same normaliser). Shapes: student (B, A, nc_old) logits, target_scores
    (B, A, nc_old), teacher (B, nc_old, A) logits, normaliser: the task's target-score sum; `keep` (B, A)
    as in `score_kd`.
    """
    t = teacher_logits.detach().sigmoid().transpose(1, 2).to(target_scores.dtype)
    lift = (torch.maximum(target_scores, t) - target_scores).detach()
    if keep is not None:
        lift = lift * keep.to(lift.dtype)[..., None]
    return -(student_logits * lift).sum() / normaliser


def box_kd(student_boxes: torch.Tensor, teacher_boxes: torch.Tensor, weight: torch.Tensor, reg_max: int,
           temperature: float = 1.0) -> torch.Tensor:
    """KL between the teacher's and the student's box distributions (DFL bins), weighted per anchor.

    student/teacher_boxes: (B, 4 * reg_max, A) raw box logits; weight: (B, A), e.g. the teacher's old-class
    confidence, so the old objects' box knowledge is kept where the teacher sees them. Normalised by the
    weight sum (a weighted mean over anchors of the KL summed over the four sides).
    """
    b, _, a = student_boxes.shape
    s = (student_boxes.view(b, 4, reg_max, a) / temperature).log_softmax(2)
    t = (teacher_boxes.detach().view(b, 4, reg_max, a) / temperature).log_softmax(2)
    kl = F.kl_div(s, t, log_target=True, reduction="none").sum((1, 2))  # (B, A)
    w = weight.detach().to(kl.dtype)
    return (w * kl).sum() / w.sum().clamp_min(1e-6) * temperature**2
