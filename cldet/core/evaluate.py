"""Evaluate any backend on a dataset split: letterbox -> predict -> postprocess -> COCO mAP per group.

`predict` is a callable taking a float32 (B, 3, S, S) array and returning (B, 4 + nc, A), so the PyTorch
model, ONNX Runtime sessions and TensorRT engines are all scored by this one function.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from tqdm import tqdm

from .data import Dataset, class_map, require_classes
from .errors import DataError
from .metrics import ClassAP, GroupMetrics, ImageResult, coco_map, group_map
from .processing import letterbox, load_image, postprocess

__all__ = ["EvalResult", "evaluate"]

Predict = Callable[[np.ndarray], np.ndarray]


@dataclass
class EvalResult:
    names: list[str]
    per_class: list[ClassAP]
    groups: dict[str, GroupMetrics]
    images: int
    # every detection in COCO results format (image_id, category_id, bbox [x, y, w, h] in pixels, score), with the
    # dataset's own ids for COCO data (pycocotools' COCO.loadRes reads it); class name as category_name
    detections: list[dict] = field(default_factory=list)
    # per image: ground truth and detections in the evaluator's own ids (cldet.core.metrics.paired_bootstrap)
    results: list[ImageResult] = field(default_factory=list, repr=False)

    def scores(self) -> dict[str, dict[str, float]]:
        """Group -> {"map50_95", "map50"}: what lineage.json, the manifest and the results JSON record."""
        return {g: {"map50_95": m.map50_95, "map50": m.map50} for g, m in self.groups.items()}

    def as_dict(self) -> dict:
        return {
            "images": self.images,
            "per_class": {n: {"map50_95": c.map50_95, "map50": c.map50, "instances": c.instances}
                          for n, c in zip(self.names, self.per_class)},
            "groups": {g: m.as_dict() for g, m in self.groups.items()},
        }


def evaluate(
    predict: Predict,
    data: Dataset,
    split: str,
    model_names: list[str],
    imgsz: int,
    groups: dict[str, list[str]] | None = None,
    batch: int = 8,
    conf: float = 0.001,
    iou: float = 0.7,
    progress: bool = True,
    limit: int | None = None,
) -> EvalResult:
    """Score `predict` on `split` of `data`; ground-truth classes the model does not know are left out."""
    require_classes(model_names, data)
    cmap = class_map(model_names, data.names)
    images = data.images(split)[:limit]
    results: list[ImageResult] = []
    coco_dets: list[dict] = []
    dataset_id = {n: k for k, n in enumerate(data.names)}
    for start in tqdm(range(0, len(images), batch), desc=f"eval {split}", unit="batch", disable=not progress):
        chunk = images[start : start + batch]
        xs, lbs = zip(*(letterbox(load_image(p), imgsz) for p in chunk))
        out = np.asarray(predict(np.stack(xs)))
        if out.ndim != 3 or out.shape[0] != len(chunk) or out.shape[1] != 4 + len(model_names):
            raise DataError(f"backend returned {out.shape}; expected ({len(chunk)}, {4 + len(model_names)}, A).")
        for p, o, lb in zip(chunk, out, lbs):
            gt = data.label_rows(p)
            gt[:, 0] = cmap[gt[:, 0].astype(int)]
            gt = gt[gt[:, 0] >= 0]
            det = postprocess(o, lb, conf=conf, iou=iou)
            results.append(ImageResult(gt, lb.orig_shape, det.boxes, det.scores, det.classes))
            image_id, cat_ids = data.coco_ids(p, len(results) - 1)
            for (x1, y1, x2, y2), sc, c in zip(det.boxes.tolist(), det.scores.tolist(), det.classes.tolist()):
                name = model_names[c]
                coco_dets.append({"image_id": image_id, "category_id": cat_ids[dataset_id[name]], "category_name": name,
                                  "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
                                  "score": round(sc, 5)})
    per_class = coco_map(results, len(model_names))
    groups = dict(groups or {})
    groups.setdefault("all", list(model_names))
    return EvalResult(list(model_names), per_class, group_map(per_class, model_names, groups), len(images),
                      coco_dets, results)
