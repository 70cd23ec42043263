"""The shared letterbox + ONNX Runtime + numpy NMS reproduce Ultralytics' own predictions of the same model.

Ultralytics' predictor does its own letterbox, torch inference (fused model) and torchvision NMS; agreement
box by box on real chess13 images is what makes board-side mAP comparable with the host's.
"""

from __future__ import annotations

import numpy as np

from cldet.core.processing import letterbox, load_image, postprocess
from cldet.deploy.runtime import open_backend

from .assets import IMGSZ

CONF, IOU = 0.25, 0.7


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    x1, y1 = np.maximum(a[:, None, 0], b[None, :, 0]), np.maximum(a[:, None, 1], b[None, :, 1])
    x2, y2 = np.minimum(a[:, None, 2], b[None, :, 2]), np.minimum(a[:, None, 3], b[None, :, 3])
    inter = (x2 - x1).clip(0) * (y2 - y1).clip(0)
    area = lambda r: (r[:, 2] - r[:, 0]) * (r[:, 3] - r[:, 1])  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter + 1e-9)


def _ultralytics_predictions(checkpoint, images, tmp_path):
    import torch
    from ultralytics import YOLO

    from cldet.detector.model import load_checkpoint

    model, _ = load_checkpoint(checkpoint)
    pt = tmp_path / "ul.pt"
    torch.save({"model": model, "train_args": {"imgsz": IMGSZ}}, pt)  # Ultralytics' own checkpoint layout
    res = YOLO(str(pt), task="detect").predict([str(p) for p in images], imgsz=IMGSZ, conf=CONF, iou=IOU,
                                               device="cpu", verbose=False, save=False)
    return [(r.boxes.xyxy.numpy(), r.boxes.conf.numpy(), r.boxes.cls.numpy().astype(int)) for r in res]


def test_onnx_pipeline_matches_ultralytics_predict(assets, tmp_path):
    from cldet.core.data import load_dataset

    images = load_dataset(assets.train_yaml).images("val")[:8]
    theirs = _ultralytics_predictions(assets.checkpoint, images, tmp_path)
    be = open_backend(assets.fp32, "cpu", threads=1)
    total = matched = 0
    for path, (tb, ts, tc) in zip(images, theirs):
        x, lb = letterbox(load_image(path), IMGSZ)
        ours = postprocess(be(x[None])[0], lb, conf=CONF, iou=IOU)
        total += len(ts)
        if not len(ts) or not len(ours):
            continue
        iou = _iou(tb, ours.boxes)
        for i in range(len(ts)):
            cand = np.where((ours.classes == tc[i]) & (iou[i] > 0.9))[0]
            if len(cand) and np.abs(ours.scores[cand] - ts[i]).min() < 0.01:
                matched += 1
    print(f"parity: {matched}/{total} Ultralytics detections reproduced")
    assert total >= 20, f"the test model should make real detections (got {total} at conf {CONF})"
    assert matched >= 0.95 * total, f"only {matched}/{total} Ultralytics detections reproduced"
