"""Any Ultralytics Detect architecture through train -> learn (head widening + distillation) -> export: yolov8n and
yolo11n here, tiny CPU runs (yolov5nu, the default, is covered by test_e2e; an imported yolo11n by test_import)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cldet.cli import app
from cldet.detector.lineage import read_lineage

pytestmark = pytest.mark.slow
runner = CliRunner()
TINY = ["--epochs", "1", "--imgsz", "64", "--batch", "4", "--workers", "0", "--fraction", "0.25"]


def invoke(*args):
    r = runner.invoke(app, [str(a) for a in args], catch_exceptions=False)
    assert r.exit_code == 0, r.output[-3000:]
    return r


@pytest.mark.parametrize("arch", ["yolov8n.yaml", "yolo11n.yaml"])
def test_train_learn_export(arch, tmp_path, mini_yaml):
    invoke("train", "--data", mini_yaml, "--out", tmp_path / "base", "--classes", "white-pawn,white-king",
           "--arch", arch, "--no-init", *TINY)
    invoke("learn", "--from", tmp_path / "base", "--data", mini_yaml, "--new-classes", "black-pawn",
           "--out", tmp_path / "step1", "--no-old-labels", *TINY)
    lin = read_lineage(tmp_path / "step1")
    assert lin.arch == arch and lin.classes == ["white-pawn", "white-king", "black-pawn"]
    head = lin.last.hyper["head"]
    assert len(head["widened"]) == 6 and head["copied"] > 100  # only the last class conv of 3 levels was re-made
    with open(tmp_path / "step1" / "train" / "results.csv") as f:
        row = next(csv.DictReader(f))
    kd = {k.strip(): float(v) for k, v in row.items() if k and "kd" in k}
    assert kd and any(v > 0 for v in kd.values()), row  # distillation ran: its terms are in the training losses
    if arch == "yolo11n.yaml":
        invoke("export", "--run", tmp_path / "step1", "--int8", "ptq", "--eval-limit", "4", "--quiet")
        manifest = json.loads((tmp_path / "step1" / "export" / "manifest.json").read_text())
        assert {"fp32", "int8"} <= set(manifest["artifacts"]) and manifest["classes"] == lin.classes
