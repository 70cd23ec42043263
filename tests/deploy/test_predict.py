"""`cldet predict` / cldet.api.predict: drawn images and videos, YOLO-txt and JSON results, from an ONNX artifact
(torch-free) or a run's PyTorch model; never overwrites an output folder without --exist-ok."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from cldet import api
from cldet.cli import app
from cldet.core.assets import DEMO_BASE
from cldet.core.processing import letterbox, load_image, postprocess
from cldet.deploy.runtime import open_backend

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "docker" / "smoke"
ARTIFACT = SMOKE / "model.int8.onnx"
runner = CliRunner()


def _video(path: Path, images: list[Path], size=(320, 240)) -> Path:
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5, size)
    for p in images:
        w.write(cv2.resize(cv2.imread(str(p)), size))
    w.release()
    return path


def test_onnx_folder_writes_drawn_images_labels_and_json(tmp_path):
    images = sorted((SMOKE / "images").iterdir())
    res = api.predict(artifact=ARTIFACT, source=SMOKE / "images", out=tmp_path / "out", progress=False)
    assert res.names == json.loads((SMOKE / "manifest.json").read_text())["classes"]
    assert len(res.predictions) == len(images) and res.detections > 0
    for img in images:
        drawn = cv2.imread(str(tmp_path / "out" / img.name))
        assert drawn is not None and drawn.shape == cv2.imread(str(img)).shape
        assert not np.array_equal(drawn, cv2.imread(str(img))) or not (tmp_path / "out" / "labels" /
                                                                       f"{img.stem}.txt").read_text()
    # the detections are those of the shared post-processing around the same runtime
    backend = open_backend(ARTIFACT, provider="cpu")
    x, lb = letterbox(load_image(images[2]), backend.imgsz)
    want = postprocess(backend(x[None])[0], lb, conf=0.25, iou=0.7)
    got = res.predictions[2].detections
    np.testing.assert_allclose(got.boxes, want.boxes, atol=1e-3)
    np.testing.assert_array_equal(got.classes, want.classes)
    rows = [l.split() for l in (tmp_path / "out" / "labels" / f"{images[2].stem}.txt").read_text().splitlines()]
    assert len(rows) == len(want) and all(len(r) == 6 for r in rows)
    h, w = lb.orig_shape
    x1, y1, x2, y2 = want.boxes[0]
    assert [float(v) for v in rows[0][1:5]] == pytest.approx([(x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w,
                                                              (y2 - y1) / h], abs=1e-5)
    raw = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert [Path(i["source"]).name for i in raw["images"]] == [p.name for p in images]
    d = raw["images"][2]["detections"][0]
    assert d["class"] == res.names[d["class_id"]] and d["score"] == pytest.approx(float(want.scores[0]), abs=1e-4)


def test_existing_out_is_refused_unless_exist_ok(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    argv = ["predict", "--artifact", str(ARTIFACT), "--source", str(sorted((SMOKE / "images").iterdir())[0]),
            "--out", str(out), "--quiet"]
    r = runner.invoke(app, argv)
    assert r.exit_code == 4 and "--exist-ok" in r.output
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    r = runner.invoke(app, argv + ["--exist-ok"])
    assert r.exit_code == 0, r.output
    assert (out / "keep.txt").read_text() == "mine" and (out / "predictions.json").is_file()


def test_video_frames_are_predicted_and_a_broken_video_is_refused(tmp_path):
    images = sorted((SMOKE / "images").iterdir())[:4]
    video = _video(tmp_path / "clip.avi", images)
    res = api.predict(artifact=ARTIFACT, source=video, out=tmp_path / "out", progress=False, vid_stride=2)
    assert [p.frame for p in res.predictions] == [0, 2]
    assert sorted(p.name for p in (tmp_path / "out" / "labels").iterdir()) == ["clip_0.txt", "clip_2.txt"]
    drawn = [f for f in res.files if f.stem == "clip"]
    cap = cv2.VideoCapture(str(drawn[0]))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == 2
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\0" * 4096)
    r = runner.invoke(app, ["predict", "--artifact", str(ARTIFACT), "--source", str(bad), "--out",
                            str(tmp_path / "out2")])
    assert r.exit_code == 3 and "broken.mp4 cannot be decoded" in r.output
    assert not (tmp_path / "out2").exists()


def test_run_predicts_with_pytorch(tmp_path):
    src = tmp_path / "imgs"
    src.mkdir()
    for p in sorted((SMOKE / "images").iterdir())[:2]:
        shutil.copy(p, src / p.name)
    res = api.predict(run=DEMO_BASE, source=src, out=tmp_path / "out", progress=False)
    assert res.names[0] == "white-bishop" and len(res.predictions) == 2 and res.detections > 0
    assert (tmp_path / "out" / "predictions.json").is_file()


BLOCKED = """
import sys
class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "torchvision", "ultralytics", "onnx"):
            raise ImportError(name + " is blocked: deploy-only install")
sys.meta_path.insert(0, Blocker())
from cldet.cli import app
app(sys.argv[1:])
"""


def test_onnx_predict_runs_without_the_training_stack(tmp_path):
    r = subprocess.run([sys.executable, "-c", BLOCKED, "predict", "--artifact", str(ARTIFACT), "--source",
                        str(SMOKE / "images"), "--out", str(tmp_path / "out"), "--quiet"],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert len(json.loads((tmp_path / "out" / "predictions.json").read_text())["images"]) == 8
    r = subprocess.run([sys.executable, "-c", BLOCKED, "predict", "--run", str(DEMO_BASE), "--source",
                        str(SMOKE / "images"), "--out", str(tmp_path / "out2")],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 6 and "cldet[train]" in r.stderr, r.stderr[-2000:]
    assert not (tmp_path / "out2").exists()
