"""`cldet import WEIGHTS --out RUN --trust`: Ultralytics detection checkpoints (made here, offline, in the format of
Ultralytics' trainer) become increment 0 of a cldet run that predicts the same boxes and can be learned from."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from cldet import api
from cldet.cli import app
from cldet.core.assets import CHESS_MINI
from cldet.core.files import sha256_file
from cldet.core.processing import letterbox, load_image, postprocess
from cldet.detector.lineage import read_lineage

runner = CliRunner()
NAMES = ["white-pawn", "white-king", "white-queen"]
IMAGES = sorted((CHESS_MINI.parent / "valid" / "images").iterdir())[:2]


class Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def ultralytics_checkpoint(path: Path, arch: str, names=NAMES, imgsz: int = 64, seed: int = 0) -> Path:
    """A checkpoint as Ultralytics' trainer leaves it (save_model's dict, then strip_optimizer), built from the yaml
    (no download). The class convs get a spread of weights so that boxes clear the confidence threshold."""
    import ultralytics
    from ultralytics.nn.tasks import DetectionModel, yaml_model_load
    from ultralytics.utils.torch_utils import strip_optimizer

    torch.manual_seed(seed)
    cls = DetectionModel
    if "-cls" in arch:
        from ultralytics.nn.tasks import ClassificationModel as cls
    elif "-seg" in arch:
        from ultralytics.nn.tasks import SegmentationModel as cls
    elif "-pose" in arch:
        from ultralytics.nn.tasks import PoseModel as cls
    elif "-obb" in arch:
        from ultralytics.nn.tasks import OBBModel as cls
    model = cls(yaml_model_load(arch), nc=len(names), verbose=False)
    model.names = dict(enumerate(names))
    model.args = {"imgsz": imgsz, "task": "detect"}
    if cls is DetectionModel:
        for seq in model.model[-1].cv3:
            torch.nn.init.normal_(seq[-1].weight, 0, 0.05)
            torch.nn.init.normal_(seq[-1].bias, -1.0, 1.0)
    ckpt = {"date": "2026-01-01T00:00:00", "version": ultralytics.__version__, "epoch": 0, "best_fitness": 0.1,
            "model": None, "ema": copy.deepcopy(model).half(), "updates": 10, "optimizer": None,
            "train_args": {"imgsz": imgsz, "data": "chess.yaml", "model": arch, "task": "detect"},
            "train_metrics": {}, "train_results": {}}
    torch.save(ckpt, path)
    strip_optimizer(path)  # what the trainer does to last.pt/best.pt at the end
    return path


def original_detections(ckpt: Path, image: Path, imgsz: int, conf: float):
    net = torch.load(ckpt, map_location="cpu", weights_only=False)["model"].float().eval()
    x, lb = letterbox(load_image(image), imgsz)
    with torch.no_grad():
        y = net(torch.from_numpy(x[None]))
    y = y[0] if isinstance(y, (list, tuple)) else y
    return postprocess(y[0].numpy(), lb, conf=conf)


@pytest.mark.parametrize("arch", ["yolov8n.yaml", "yolo11n.yaml"])
def test_imported_run_predicts_the_checkpoints_boxes(arch, tmp_path):
    ckpt = ultralytics_checkpoint(tmp_path / "best.pt", arch)
    r = runner.invoke(app, ["import", str(ckpt), "--out", str(tmp_path / "run"), "--trust"])
    assert r.exit_code == 0, r.output
    lin = read_lineage(tmp_path / "run")
    assert lin.classes == NAMES and lin.imgsz == 64 and lin.arch == arch
    src = lin.last.hyper["source"]
    assert src["sha256"] == sha256_file(ckpt) and src["arch"] == arch and lin.last.kind == "import"
    blob = torch.load(tmp_path / "run" / "model.pt", map_location="cpu", weights_only=True)  # weights-only
    assert blob["names"] == NAMES
    res = api.predict(run=tmp_path / "run", source=IMAGES[0], out=tmp_path / "pred", conf=0.3, progress=False)
    want = original_detections(ckpt, IMAGES[0], 64, 0.3)
    got = res.predictions[0].detections
    assert len(want) > 0 and len(got) == len(want)
    np.testing.assert_allclose(got.boxes, want.boxes, atol=1e-2)
    np.testing.assert_allclose(got.scores, want.scores, atol=1e-4)
    np.testing.assert_array_equal(got.classes, want.classes)


def test_without_trust_nothing_is_loaded(tmp_path):
    marker = tmp_path / "PWNED"
    evil = tmp_path / "evil.pt"
    torch.save({"model": Payload(marker)}, evil)
    r = runner.invoke(app, ["import", str(evil), "--out", str(tmp_path / "run")])
    assert r.exit_code == 2 and "--trust" in r.output and "pickle" in r.output
    assert not marker.exists() and not (tmp_path / "run").exists()
    help_text = " ".join(runner.invoke(app, ["import", "--help"], env={"COLUMNS": "300"}).output.split())
    assert "pickle runs whatever code" in help_text


@pytest.mark.parametrize("arch,kind", [("yolov8n-cls.yaml", "a classification"), ("yolov8n-seg.yaml", "a segmentation"),
                                       ("yolov8n-pose.yaml", "a pose"), ("yolov8n-obb.yaml", "an oriented-box (OBB)")])
def test_other_tasks_are_refused(arch, kind, tmp_path):
    ckpt = ultralytics_checkpoint(tmp_path / "other.pt", arch, names=["a"])
    before = sorted(tmp_path.rglob("*"))
    r = runner.invoke(app, ["import", str(ckpt), "--out", str(tmp_path / "run"), "--trust"])
    assert r.exit_code == 2, r.output
    assert f"other.pt: {kind} model, not a detection model" in " ".join(r.output.split())
    assert sorted(tmp_path.rglob("*")) == before  # no run folder, nothing else


def test_existing_out_is_refused(tmp_path):
    ckpt = ultralytics_checkpoint(tmp_path / "best.pt", "yolov8n.yaml")
    (tmp_path / "run").mkdir()
    r = runner.invoke(app, ["import", str(ckpt), "--out", str(tmp_path / "run"), "--trust"])
    assert r.exit_code == 4 and "already exists" in r.output
    assert list((tmp_path / "run").iterdir()) == []


@pytest.mark.slow
def test_learn_from_an_imported_run(tmp_path, mini_yaml):
    ckpt = ultralytics_checkpoint(tmp_path / "best.pt", "yolo11n.yaml", names=["white-pawn", "white-king"])
    assert runner.invoke(app, ["import", str(ckpt), "--out", str(tmp_path / "base"), "--trust"]).exit_code == 0
    r = runner.invoke(app, ["learn", "--from", str(tmp_path / "base"), "--data", str(mini_yaml), "--new-classes",
                            "black-pawn", "--out", str(tmp_path / "step1"), "--epochs", "1", "--batch", "4",
                            "--workers", "0", "--fraction", "0.25"], catch_exceptions=False)
    assert r.exit_code == 0, r.output[-3000:]
    lin = read_lineage(tmp_path / "step1")
    assert lin.classes == ["white-pawn", "white-king", "black-pawn"] and lin.arch == "yolo11n.yaml"
    assert [i.kind for i in lin.increments] == ["import", "learn"]
    assert json.loads((tmp_path / "step1" / "lineage.json").read_text())["increments"][0]["hyper"]["source"]["sha256"]


@pytest.mark.slow
def test_learn_from_an_imported_coco_sized_n_model(tmp_path, mini_yaml):
    """A COCO-80 yolov8n's class branch is 80 wide where 81 classes would make Ultralytics build it 81 wide: the
    increment keeps the 80 (cls_width), trains, and its old-class outputs start equal to the teacher's."""
    names = [f"coco{i}" for i in range(80)]
    ckpt = ultralytics_checkpoint(tmp_path / "coco.pt", "yolov8n.yaml", names=names)
    assert runner.invoke(app, ["import", str(ckpt), "--out", str(tmp_path / "base"), "--trust"]).exit_code == 0
    import yaml

    raw = yaml.safe_load(mini_yaml.read_text())  # chess-mini's photos, its 13 names then the 80 (unlabeled) ones
    chess = [raw["names"][k] for k in sorted(raw["names"])] if isinstance(raw["names"], dict) else raw["names"]
    data = tmp_path / "data.yaml"
    data.write_text(yaml.safe_dump({"names": chess + names, "train": str(mini_yaml.parent / "train" / "images"),
                                    "val": str(mini_yaml.parent / "valid" / "images")}))
    r = runner.invoke(app, ["learn", "--from", str(tmp_path / "base"), "--data", str(data), "--new-classes",
                            "black-pawn", "--out", str(tmp_path / "step1"), "--epochs", "1", "--batch", "4",
                            "--workers", "0", "--fraction", "0.25"], catch_exceptions=False)
    assert r.exit_code == 0, r.output[-3000:]
    lin = read_lineage(tmp_path / "step1")
    assert lin.classes == names + ["black-pawn"]
    blob = torch.load(tmp_path / "step1" / "model.pt", map_location="cpu", weights_only=True)
    assert blob["yaml"]["cls_width"] == 80
