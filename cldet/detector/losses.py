"""Distillation losses and pseudo-labelling as pure functions on tensors (no trainer, no model).

Shapes follow Ultralytics' Detect head: scores are (B, nc, A) logits, decoded predictions are
(B, 4 + nc, A) with cx, cy, w, h in input pixels followed by class probabilities, neck features are
a list of (B, C, H, W) maps for P3/P4/P5.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.ops import batched_nms, box_convert, box_iou

__all__ = ["pseudo_labels", "merge_targets", "feature_kd", "score_kd"]


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


def feature_kd(student: list[torch.Tensor], teacher: list[torch.Tensor], mode: str = "mse") -> torch.Tensor:
    """Distance between student and teacher neck features, averaged over levels.

    mse:     ||s - t||^2 / ||t||^2 per level (relative, so the weight does not depend on feature scale)
    channel: channel-wise distillation (KL between per-channel spatial softmaxes, T = 1)
    """
    losses = []
    for s, t in zip(student, teacher):
        t = t.detach().to(s.dtype)
        if mode == "mse":
            losses.append((s - t).pow(2).sum() / t.pow(2).sum().clamp_min(1e-6))
        elif mode == "channel":
            b, c = s.shape[:2]
            ls, lt = s.reshape(b * c, -1).log_softmax(1), t.reshape(b * c, -1).log_softmax(1)
            losses.append(F.kl_div(ls, lt, log_target=True, reduction="batchmean"))
        else:
            raise ValueError(f"unknown feature KD mode {mode!r} (use 'mse' or 'channel')")
    return torch.stack(losses).mean()


def score_kd(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Binary KL from teacher to student class probabilities on the old classes, summed over anchors
    and normalised by the teacher's total positive mass (the analogue of the task loss' target-score sum).
    """
    t = teacher_logits.detach().sigmoid()
    kl = F.binary_cross_entropy_with_logits(student_logits, t, reduction="none") - F.binary_cross_entropy_with_logits(
        teacher_logits.detach(), t, reduction="none"
    )
    return kl.sum() / t.sum().clamp_min(1.0)
