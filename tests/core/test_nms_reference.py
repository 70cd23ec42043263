"""The torch-free NMS of the board's post-processing keeps exactly what torchvision's keeps."""

from __future__ import annotations

import numpy as np
import pytest

from cldet.core.processing import nms, postprocess

torch = pytest.importorskip("torch")
ops = pytest.importorskip("torchvision.ops")


def _boxes(rng: np.random.Generator, n: int) -> np.ndarray:
    xy = rng.uniform(0, 200, (n, 2))
    wh = rng.uniform(2, 60, (n, 2))
    return np.concatenate([xy, xy + wh], 1).astype(np.float32)


@pytest.mark.parametrize("iou", [0.3, 0.5, 0.7])
def test_nms_matches_torchvision_on_random_boxes(iou):
    rng = np.random.default_rng(int(iou * 10))
    for _ in range(20):
        n = int(rng.integers(1, 400))
        boxes, scores = _boxes(rng, n), rng.random(n).astype(np.float32)
        ref = ops.nms(torch.from_numpy(boxes), torch.from_numpy(scores), iou).numpy()
        np.testing.assert_array_equal(nms(boxes, scores, iou), ref)


def test_class_wise_postprocess_matches_batched_nms():
    rng = np.random.default_rng(0)
    nc, a = 5, 600
    boxes = _boxes(rng, a)
    probs = rng.random((nc, a)).astype(np.float32)
    out = np.concatenate([np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2,
                                    boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]]), probs]).astype(np.float32)
    det = postprocess(out, None, conf=0.2, iou=0.6, max_det=a)
    cls, score = probs.argmax(0), probs.max(0)
    m = score > 0.2
    xyxy = torch.from_numpy(out[:4].T.copy())
    xyxy = torch.cat([xyxy[:, :2] - xyxy[:, 2:] / 2, xyxy[:, :2] + xyxy[:, 2:] / 2], 1)[torch.from_numpy(m)]
    keep = ops.batched_nms(xyxy, torch.from_numpy(score[m]), torch.from_numpy(cls[m]), 0.6).numpy()
    assert len(det) == len(keep) > 0
    np.testing.assert_allclose(det.scores, score[m][keep], rtol=0, atol=0)
    np.testing.assert_array_equal(det.classes, cls[m][keep])
