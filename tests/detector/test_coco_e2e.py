"""COCO json data through train -> learn -> eval (tiny CPU runs): a yaml naming COCO files, and a bare instances
.json with its images beside it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from cldet.cli import app
from cldet.core.assets import CHESS_MINI
from cldet.detector.lineage import read_lineage
from tests.core.test_coco import to_coco

pytestmark = pytest.mark.slow
runner = CliRunner()
TINY = ["--epochs", "1", "--imgsz", "64", "--batch", "4", "--workers", "0"]


def invoke(*args):
    r = runner.invoke(app, [str(a) for a in args], catch_exceptions=False)
    assert r.exit_code == 0, r.output[-3000:]
    return r


def test_train_learn_eval_on_coco(tmp_path):
    train = sorted((CHESS_MINI.parent / "train" / "images").iterdir())[:16]
    val = sorted((CHESS_MINI.parent / "valid" / "images").iterdir())[:4]
    to_coco(train, tmp_path / "instances_train.json")
    to_coco(val, tmp_path / "instances_val.json")
    (tmp_path / "coco.yaml").write_text(yaml.safe_dump({
        "train": {"annotations": "instances_train.json", "images": str(train[0].parent)},
        "val": {"annotations": "instances_val.json", "images": str(val[0].parent)}}))
    invoke("train", "--data", tmp_path / "coco.yaml", "--out", tmp_path / "base", "--classes", "white-pawn,white-king",
           "--no-init", *TINY)
    new = tmp_path / "new"
    new.mkdir()
    for p in train:
        shutil.copy(p, new / p.name)
    invoke("learn", "--from", tmp_path / "base", "--data", to_coco(train, new / "_annotations.coco.json"),
           "--new-classes", "black-pawn", "--out", tmp_path / "step1", "--eval-data", tmp_path / "coco.yaml", *TINY)
    lin = read_lineage(tmp_path / "step1")
    assert lin.classes == ["white-pawn", "white-king", "black-pawn"] and set(lin.last.metrics) >= {"old", "new"}
    staged = (tmp_path / "step1" / "data" / "train" / "labels")
    assert any(p.read_text().strip() for p in staged.iterdir())  # COCO boxes staged as YOLO label files
    invoke("eval", "--run", tmp_path / "step1", "--data", tmp_path / "coco.yaml", "--out", tmp_path / "ev.json",
           "--detections", tmp_path / "dets.json")
    assert set(json.loads((tmp_path / "ev.json").read_text())["metrics"]) >= {"step0", "step1", "all"}
    dets = json.loads((tmp_path / "dets.json").read_text())
    gt = json.loads((tmp_path / "instances_val.json").read_text())
    assert dets and {d["image_id"] for d in dets} <= {i["id"] for i in gt["images"]}
    assert {d["category_id"] for d in dets} <= {c["id"] for c in gt["categories"]}
