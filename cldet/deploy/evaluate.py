"""Evaluate any backend on a dataset split: letterbox -> predict -> postprocess -> COCO mAP per group.

`predict` is a callable taking a float32 (B, 3, S, S) array and returning (B, 4 + nc, A), so the PyTorch
model, ONNX Runtime sessions and TensorRT engines are all scored by this one function.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from tqdm import tqdm

from ..data import Dataset, label_path_for, read_labels
from ..errors import DataError
from ..metrics import ClassAP, GroupMetrics, ImageResult, coco_map, group_map
from .processing import letterbox, load_image, postprocess

__all__ = ["EvalResult", "evaluate", "class_map"]

Predict = Callable[[np.ndarray], np.ndarray]


@dataclass
class EvalResult:
    names: list[str]
    per_class: list[ClassAP]
    groups: dict[str, GroupMetrics]
    images: int

    def as_dict(self) -> dict:
        return {
            "images": self.images,
            "per_class": {n: {"map50_95": c.map50_95, "map50": c.map50, "instances": c.instances}
                          for n, c in zip(self.names, self.per_class)},
            "groups": {g: m.as_dict() for g, m in self.groups.items()},
        }


def class_map(model_names: list[str], data_names: list[str], strict: bool = True) -> np.ndarray:
    """Dataset id -> model id (-1 where the model lacks that class).

    With strict, every model class must exist in the dataset: evaluating a model on data whose class
    names do not match is an error, not a silent zero.
    """
    missing = [n for n in model_names if n not in data_names]
    if strict and missing:
        raise DataError(
            f"the evaluation data lacks the model's classes {missing}; its names are {data_names}. "
            "Use a dataset yaml whose 'names' include every class of the model."
        )
    return np.array([model_names.index(n) if n in model_names else -1 for n in data_names], np.int64)


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
    cmap = class_map(model_names, data.names)
    images = data.images(split)[:limit]
    results: list[ImageResult] = []
    for start in tqdm(range(0, len(images), batch), desc=f"eval {split}", unit="batch", disable=not progress):
        chunk = images[start : start + batch]
        xs, lbs = zip(*(letterbox(load_image(p), imgsz) for p in chunk))
        out = np.asarray(predict(np.stack(xs)))
        if out.ndim != 3 or out.shape[0] != len(chunk) or out.shape[1] != 4 + len(model_names):
            raise DataError(f"backend returned {out.shape}; expected ({len(chunk)}, {4 + len(model_names)}, A).")
        for p, o, lb in zip(chunk, out, lbs):
            gt = read_labels(label_path_for(p), data.nc)
            gt[:, 0] = cmap[gt[:, 0].astype(int)]
            gt = gt[gt[:, 0] >= 0]
            det = postprocess(o, lb, conf=conf, iou=iou)
            results.append(ImageResult(gt, lb.orig_shape, det.boxes, det.scores, det.classes))
    per_class = coco_map(results, len(model_names))
    groups = dict(groups or {})
    groups.setdefault("all", list(model_names))
    return EvalResult(list(model_names), per_class, group_map(per_class, model_names, groups), len(images))
