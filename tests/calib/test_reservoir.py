"""The calibration reservoir: caps, class balance across increments, remapping by name, readers, bad input."""

from __future__ import annotations

import json
import logging
import shutil

import cv2
import numpy as np
import pytest

from cldet.calib.reader import (CalibrationSet, calibration_arrays, check_disjoint, from_folder, from_reservoir,
                                merge)
from cldet.calib.reservoir import read_reservoir, update_reservoir
from cldet.core.data import read_labels
from cldet.core.errors import DataError

from .conftest import make_dataset

OLD = ["cat", "dog", "fox"]
NEW = ["owl", "elk"]


@pytest.fixture()
def two_steps(tmp_path):
    """step0 data (old classes, cat very common) and step1 data (new classes only, names in another order)."""
    d0 = make_dataset(tmp_path / "d0", OLD, {f"a{i}": [0] for i in range(12)} | {"b0": [1], "b1": [1, 0], "c0": [2]})
    d1 = make_dataset(tmp_path / "d1", ["elk", "zebra", "owl"], {f"e{i}": [0] for i in range(6)} |
                      {"o0": [2], "o1": [2], "z0": [1]})
    r0, r1 = tmp_path / "r0", tmp_path / "r1"
    r0.mkdir(), r1.mkdir()
    return d0, d1, r0, r1


def test_caps_and_balance(two_steps):
    d0, _, r0, _ = two_steps
    idx = update_reservoir(r0, None, d0, OLD, max_images=4, max_mb=32.0)
    assert len(idx["images"]) == 4
    assert idx["covered"] == OLD and idx["missing"] == []  # the rare dog and fox made it in despite 12 cats
    assert sum(e["bytes"] for e in idx["images"]) == idx["bytes"]
    files = list((r0 / "calib" / "images").iterdir())
    assert len(files) == 4
    assert json.loads((r0 / "calib" / "index.json").read_text()) == idx


def test_mb_cap(two_steps):
    d0, _, r0, _ = two_steps
    one = next((d0.parent / "train" / "images").iterdir()).stat().st_size
    idx = update_reservoir(r0, None, d0, OLD, max_images=64, max_mb=2.5 * one / 1e6)
    assert len(idx["images"]) <= 2 and idx["bytes"] <= 2.5 * one


def test_zero_caps_give_an_empty_reservoir(two_steps):
    d0, _, r0, _ = two_steps
    idx = update_reservoir(r0, None, d0, OLD, max_images=0)
    assert idx["images"] == [] and idx["missing"] == OLD
    assert from_reservoir(r0, OLD).images == []


def test_parent_reservoir_carried_and_labels_remapped_by_name(two_steps):
    d0, d1, r0, r1 = two_steps
    update_reservoir(r0, None, d0, OLD, max_images=3)
    names = OLD + NEW
    idx = update_reservoir(r1, r0, d1, names, max_images=6)
    assert idx["covered"] == names, idx["covered"]  # old classes from the parent, new ones from step1 data
    assert {e["increment"] for e in idx["images"]} == {0, 1}
    for e in idx["images"]:
        lab = read_labels(r1 / "calib" / e["label"], len(names))
        assert sorted({names[int(c)] for c in lab[:, 0]}) == sorted(e["classes"])
        assert "zebra" not in e["classes"]  # not a model class: dropped
    owl = [e for e in idx["images"] if e["classes"] == ["owl"]]
    assert owl and all(read_labels(r1 / "calib" / e["label"], 5)[0, 0] == names.index("owl") for e in owl)


def test_eviction_keeps_every_class_when_the_cap_shrinks(two_steps):
    d0, d1, r0, r1 = two_steps
    update_reservoir(r0, None, d0, OLD, max_images=6)
    idx = update_reservoir(r1, r0, d1, OLD + NEW, max_images=5)
    assert len(idx["images"]) == 5 and idx["missing"] == []
    assert idx["evicted"] >= 1


def test_missing_class_warning_names_it(two_steps, caplog):
    d0, _, r0, _ = two_steps
    update_reservoir(r0, None, d0, OLD, max_images=2)
    calib = from_reservoir(r0, OLD)
    with caplog.at_level(logging.WARNING, logger="cldet"):
        missing = calib.warn_missing()
    assert missing and all(m in caplog.text for m in missing)


def test_folder_reader_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="has no images"):
        from_folder(tmp_path / "empty", OLD)
    with pytest.raises(DataError, match="does not exist"):
        from_folder(tmp_path / "nope", OLD)
    bad = tmp_path / "gray"
    bad.mkdir()
    cv2.imwrite(str(bad / "g.png"), np.zeros((20, 20, 3), np.uint16))  # a format the trainer never saw
    calib = from_folder(bad, OLD)
    with pytest.raises(DataError, match=r"g\.png.*uint16"):
        list(calibration_arrays(calib, 32, progress=False))
    (bad / "broken.jpg").write_bytes(b"not an image")
    with pytest.raises(DataError, match="broken.jpg"):
        list(calibration_arrays(from_folder(bad, OLD), 32, progress=False))


def test_arrays_are_letterboxed_inputs(two_steps):
    d0, _, r0, _ = two_steps
    update_reservoir(r0, None, d0, OLD, max_images=2)
    xs = list(calibration_arrays(from_reservoir(r0, OLD), 64, progress=False))
    assert len(xs) == 2 and xs[0].shape == (1, 3, 64, 64) and xs[0].dtype == np.float32
    assert 0.0 <= xs[0].min() and xs[0].max() <= 1.0


def test_disjoint_by_path_and_by_bytes(two_steps, tmp_path):
    d0, _, r0, _ = two_steps
    val = sorted((d0.parent / "val" / "images").iterdir())
    copy = tmp_path / "copy"
    copy.mkdir()
    shutil.copy(val[0], copy / "renamed.png")
    with pytest.raises(DataError, match="also evaluation images"):
        check_disjoint(from_folder(copy, OLD), val)
    with pytest.raises(DataError, match="also evaluation images"):
        check_disjoint(CalibrationSet(val, OLD, [[]]), val)
    update_reservoir(r0, None, d0, OLD, max_images=3)
    check_disjoint(from_reservoir(r0, OLD), val)  # train images only: fine


def test_merge_caps_and_dedups(two_steps):
    d0, _, r0, _ = two_steps
    update_reservoir(r0, None, d0, OLD, max_images=3)
    a = from_reservoir(r0, OLD)
    m = merge(a, a, max_images=2)
    assert len(m.images) == 2 and read_reservoir(r0)["caps"]["max_images"] == 3
