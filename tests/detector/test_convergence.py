"""`train`/`learn` with --curves say when a run ended while its classes were still learning (more --epochs would help).

The curves below are measured ones (benchmarks/work, chess13 2-step with YOLO11n, new-class mAP50-95 per epoch):
the 12-epoch increment ended while cldet's new classes were still climbing; fine-tuning's 30-epoch one had levelled off.
"""
from __future__ import annotations

import json
import logging

import pytest

from cldet.detector.runs import CURVES, _warn_if_rising, still_rising

OURS_12 = [0.000, 0.058, 0.180, 0.366, 0.342, 0.425, 0.469, 0.490, 0.471, 0.482, 0.500, 0.501]
FINETUNE_30_TAIL = [0.679, 0.693, 0.692, 0.703, 0.717, 0.718, 0.715, 0.707, 0.723, 0.714, 0.718]


def rows(values, group="new"):
    return [{"epoch": i + 1, "metrics": {group: {"map50_95": v, "map50": v}, "all": {"map50_95": v, "map50": v}}}
            for i, v in enumerate(values)]


def test_still_rising_measures_the_last_epochs_against_the_ones_before():
    gain = still_rising(rows(OURS_12), "new")
    assert gain == pytest.approx((0.482 + 0.500 + 0.501) / 3 - (0.490 + 0.471 + 0.469) / 3)
    assert 0.015 < gain < 0.02


def test_a_levelled_curve_or_a_falling_one_is_not_rising():
    assert still_rising(rows(FINETUNE_30_TAIL), "new") is None
    assert still_rising(rows([0.7, 0.7, 0.7, 0.6, 0.6, 0.6]), "new") is None
    # just above one point is rising, just below is not
    assert still_rising(rows([0.5] * 3 + [0.511] * 3), "new") == pytest.approx(0.011)
    assert still_rising(rows([0.5] * 3 + [0.509] * 3), "new") is None


def test_too_short_or_incomplete_curves_are_not_judged():
    assert still_rising(rows([0.1, 0.2, 0.3, 0.4, 0.5]), "new") is None  # fewer than 2 x 3 epochs
    assert still_rising(rows(OURS_12), "old") is None  # no such group
    broken = rows(OURS_12)
    del broken[4]["metrics"]["new"]
    assert still_rising(broken, "new") is None
    assert still_rising([], "new") is None


def test_the_run_warns_only_when_its_classes_were_still_rising(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="cldet")
    (tmp_path / CURVES).write_text(json.dumps(rows(OURS_12)))
    _warn_if_rising(tmp_path, "new", "the new classes")
    assert len(caplog.records) == 1
    msg = caplog.records[0].getMessage()
    assert "the new classes were still improving" in msg and "+1.8 points" in msg
    assert "more --epochs may raise them" in msg

    caplog.clear()
    (tmp_path / CURVES).write_text(json.dumps(rows(FINETUNE_30_TAIL)))
    _warn_if_rising(tmp_path, "new", "the new classes")
    assert caplog.records == []

    caplog.clear()
    (tmp_path / CURVES).unlink()  # a run without --curves has nothing to judge
    _warn_if_rising(tmp_path, "new", "the new classes")
    assert caplog.records == []
