"""The census' matching: greedy one-to-one by score at IoU >= 0.5, same as a detection counts once."""

from __future__ import annotations

import numpy as np

from benchmarks.pseudo_census import match


def test_match_is_one_to_one_and_respects_iou():
    gt = np.array([[0, 0, 10, 10], [20, 20, 30, 30]], float)
    dets = np.array([[0, 0, 10, 10], [1, 0, 10, 10], [20, 20, 26, 26], [50, 50, 60, 60]], float)
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    # the duplicate of box 0 finds no second partner; the 6x6 box has IoU 0.36 with the second GT; the far box none
    assert match(dets, scores, gt) == 1
    assert match(dets, scores, gt, iou=0.3) == 2
    assert match(dets[:0], scores[:0], gt) == 0 and match(dets, scores, gt[:0]) == 0
