"""COCO-style detection metrics (pycocotools), per class and per class group.

Pure numpy + pycocotools: the same code scores the PyTorch model on the host, the ONNX artifacts in
the export manifest, and the TensorRT engine on the board, so their numbers are comparable.
"""

from __future__ import annotations

import contextlib
import io
import math
from dataclasses import dataclass, field

import numpy as np

__all__ = ["ImageResult", "ClassAP", "GroupMetrics", "coco_map", "group_map", "yolo_to_xyxy", "paired_bootstrap"]


@dataclass
class ImageResult:
    """One image: ground truth (n, 5) YOLO rows in *model* class ids, and detections in pixels."""

    gt: np.ndarray  # (n, 5): class, cx, cy, w, h normalised
    shape: tuple[int, int]  # (h, w)
    boxes: np.ndarray  # (m, 4) xyxy pixels
    scores: np.ndarray  # (m,)
    classes: np.ndarray  # (m,) model class ids


@dataclass
class ClassAP:
    """AP of one class over the evaluation set; nan where the set has no instance of it."""

    map50_95: float
    map50: float
    instances: int = 0


def yolo_to_xyxy(rows: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    h, w = shape
    cx, cy, bw, bh = rows[:, 1] * w, rows[:, 2] * h, rows[:, 3] * w, rows[:, 4] * h
    return np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 1)


def coco_map(results: list[ImageResult], nc: int) -> list[ClassAP]:
    """Per-class mAP50-95 and mAP50 with pycocotools' COCOeval (area 'all', 100 detections per image)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images, anns, dets = [], [], []
    counts = np.zeros(nc, int)
    for i, r in enumerate(results):
        h, w = r.shape
        images.append({"id": i, "height": h, "width": w})
        for c, (x1, y1, x2, y2) in zip(r.gt[:, 0].astype(int), yolo_to_xyxy(r.gt, r.shape)):
            counts[c] += 1
            bw, bh = float(x2 - x1), float(y2 - y1)
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": int(c), "iscrowd": 0,
                         "bbox": [float(x1), float(y1), bw, bh], "area": bw * bh})
        for (x1, y1, x2, y2), s, c in zip(r.boxes, r.scores, r.classes):
            dets.append({"image_id": i, "category_id": int(c), "score": float(s),
                         "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)]})
    out = [ClassAP(math.nan, math.nan, int(counts[k])) for k in range(nc)]
    if not anns:
        return out
    gt = COCO()
    gt.dataset = {"images": images, "annotations": anns, "categories": [{"id": k} for k in range(nc)]}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        if not dets:
            return [ClassAP(0.0 if c else math.nan, 0.0 if c else math.nan, int(c)) for c in counts]
        dt = gt.loadRes(dets)
        ev = COCOeval(gt, dt, "bbox")
        ev.evaluate()
        ev.accumulate()
    prec = ev.eval["precision"]  # (T iou, R recall, K class, A area, M maxdets)
    for k in range(nc):
        if counts[k] == 0:
            continue
        p = prec[:, :, k, 0, -1]
        valid = p > -1
        out[k] = ClassAP(
            float(p[valid].mean()) if valid.any() else 0.0,
            float(p[0][valid[0]].mean()) if valid[0].any() else 0.0,
            int(counts[k]),
        )
    return out


@dataclass
class GroupMetrics:
    map50_95: float
    map50: float
    classes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"map50_95": self.map50_95, "map50": self.map50, "classes": self.classes}


def group_map(per_class: list[ClassAP], names: list[str], groups: dict[str, list[str]]) -> dict[str, GroupMetrics]:
    """Mean of per-class AP over each group's classes that occur in the evaluation set (nan if none do)."""
    out = {}
    for g, members in groups.items():
        vals = [per_class[names.index(n)] for n in members if n in names]
        vals = [v for v in vals if not math.isnan(v.map50_95)]
        out[g] = GroupMetrics(
            float(np.mean([v.map50_95 for v in vals])) if vals else math.nan,
            float(np.mean([v.map50 for v in vals])) if vals else math.nan,
            list(members),
        )
    return out


def paired_bootstrap(a: list[ImageResult], b: list[ImageResult], names: list[str], groups: dict[str, list[str]],
                     draws: int = 200, seed: int = 0, level: float = 0.90) -> dict[str, dict[str, float]]:
    """How much of a difference in mAP50-95 between two models scored on the same images is sampling noise.

    The images are drawn with replacement `draws` times, the same draw for both models, and the difference
    a - b (points of mAP50-95) recomputed per group on each draw. Returns, per group, the difference on all images,
    the standard deviation over the draws and the central `level` interval: a difference inside the interval of
    width ~ 2 x 1.64 std is one a second evaluation set of the same size could show with the sign reversed."""
    if len(a) != len(b) or not a:
        raise ValueError(f"paired_bootstrap needs the same images scored twice (got {len(a)} and {len(b)})")
    groups = {**groups, "all": groups.get("all", list(names))}

    def diff(idx) -> dict[str, float]:
        ga = group_map(coco_map([a[i] for i in idx], len(names)), names, groups)
        gb = group_map(coco_map([b[i] for i in idx], len(names)), names, groups)
        return {g: 100 * (ga[g].map50_95 - gb[g].map50_95) for g in groups}

    rng = np.random.default_rng(seed)
    full = diff(range(len(a)))
    samples = [diff(rng.integers(0, len(a), len(a))) for _ in range(draws)]
    out = {}
    for g in groups:
        v = np.array([d[g] for d in samples], float)
        v = v[~np.isnan(v)]
        lo, hi = (np.quantile(v, [(1 - level) / 2, (1 + level) / 2]) if len(v) else (math.nan, math.nan))
        out[g] = {"diff": round(full[g], 3), "std": round(float(v.std()) if len(v) else math.nan, 3),
                  "lo": round(float(lo), 3), "hi": round(float(hi), 3)}
    return out
