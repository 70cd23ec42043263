import math

import numpy as np

from cldet.core.metrics import ImageResult, coco_map, group_map, yolo_to_xyxy


def _img(gt, dets):
    gt = np.asarray(gt, np.float32).reshape(-1, 5)
    boxes = yolo_to_xyxy(gt, (100, 200)) if dets == "perfect" else np.zeros((0, 4))
    n = len(boxes)
    return ImageResult(gt, (100, 200), boxes, np.ones(n), gt[:, 0].astype(int) if n else np.zeros(0, int))


def test_perfect_detections_score_one_and_absent_class_is_nan():
    res = [_img([[0, 0.5, 0.5, 0.2, 0.3], [1, 0.2, 0.2, 0.1, 0.1]], "perfect")] * 3
    ap = coco_map(res, 3)
    assert abs(ap[0].map50_95 - 1.0) < 1e-6 and abs(ap[1].map50 - 1.0) < 1e-6
    assert math.isnan(ap[2].map50_95) and ap[0].instances == 3


def test_no_detections_score_zero():
    ap = coco_map([_img([[0, 0.5, 0.5, 0.2, 0.3]], None)], 1)
    assert ap[0].map50_95 == 0.0


def test_shifted_box_scores_at_50_but_not_at_95():
    gt = np.array([[0, 0.5, 0.5, 0.4, 0.4]], np.float32)
    box = yolo_to_xyxy(gt, (100, 100)) + np.array([8, 0, 8, 0])  # IoU ~0.67
    ap = coco_map([ImageResult(gt, (100, 100), box, np.ones(1), np.zeros(1, int))], 1)
    assert ap[0].map50 > 0.99 and 0.2 < ap[0].map50_95 < 0.6


def test_group_map_averages_present_classes():
    res = [_img([[0, 0.5, 0.5, 0.2, 0.3]], "perfect"), _img([[1, 0.5, 0.5, 0.2, 0.3]], None)]
    g = group_map(coco_map(res, 3), ["a", "b", "c"], {"old": ["a"], "new": ["b", "c"], "all": ["a", "b", "c"]})
    assert abs(g["old"].map50_95 - 1.0) < 1e-9 and g["new"].map50_95 == 0.0 and abs(g["all"].map50_95 - 0.5) < 1e-9


def test_paired_bootstrap_measures_the_noise_of_a_difference():
    """Same detections twice: no difference and no noise. A model that misses class 0 on one image in five: the
    difference on all images lies inside its interval, the interval has width, and a group it does not touch
    stays at zero."""
    import pytest

    from cldet.core.metrics import paired_bootstrap

    gt = [[0, 0.5, 0.5, 0.2, 0.3], [1, 0.2, 0.2, 0.1, 0.1]]
    a = [_img(gt, "perfect") for _ in range(20)]
    names, groups = ["x", "y"], {"step0": ["x"], "step1": ["y"]}
    same = paired_bootstrap(a, a, names, groups, draws=30)
    assert all(v["diff"] == v["std"] == v["lo"] == v["hi"] == 0 for v in same.values())
    b = list(a)
    for i in range(0, 20, 5):  # class-0 box missed on 4 of 20 images
        r = a[i]
        b[i] = ImageResult(r.gt, r.shape, r.boxes[1:], r.scores[1:], r.classes[1:])
    noise = paired_bootstrap(a, b, names, groups, draws=100, seed=1)
    assert 15 < noise["step0"]["diff"] < 25  # a - b in points: b lost 20% recall on class x
    assert noise["step0"]["lo"] < noise["step0"]["diff"] < noise["step0"]["hi"] and noise["step0"]["std"] > 1
    assert noise["step1"] == {"diff": 0.0, "std": 0.0, "lo": 0.0, "hi": 0.0} and "all" in noise
    with pytest.raises(ValueError, match="same images"):
        paired_bootstrap(a, b[:3], names, groups)
