"""The benchmark harness and the demo, CI-sized: the JSON schema of issue 3 and the demo's outputs."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from cldet.cli import app
from tests.conftest import ROOT, SHARED

pytestmark = pytest.mark.slow


@pytest.mark.shared
def test_quick_protocol_writes_issue_schema(tmp_path):
    if not (SHARED / "data" / "chess13").is_dir():
        pytest.skip("../shared/data/chess13 not present")
    proto = tmp_path / "p.yaml"
    proto.write_text("name: tiny\ndataset: chess13\nsteps: [[white-king, white-queen], [black-king], [black-queen]]\n"
                     "methods: [finetune, ours, replay]\nreplay_images: 4\n")
    r = subprocess.run([sys.executable, "-m", "benchmarks.cl_protocols", "--protocol", str(proto), "--quick",
                        "--work", str(tmp_path / "work"), "--results", str(tmp_path / "res"), "--data-root", str(SHARED / "data")],
                       capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    js = json.loads((tmp_path / "res" / "cl-chess13-tiny-quick.json").read_text())
    assert js["dataset"] == "chess13" and js["protocol"] == "tiny" and js["steps"] == 3
    assert js["exemplar_free"] == {"joint": False, "finetune": True, "ours": True, "replay": False}
    for name in ("joint", "finetune", "ours", "replay"):
        m = js["methods"][name]
        for g in ("old", "new", "all"):
            assert 0.0 <= m["final"][g]["map50_95"] <= 1.0 and 0.0 <= m["final"][g]["map50"] <= 1.0
        assert isinstance(m["seconds_per_step"], list) and all(s > 0 for s in m["seconds_per_step"])
        assert "forgetting" in m and "ratio_to_joint" in m
    assert len(js["methods"]["ours"]["seconds_per_step"]) == 2
    assert {"step0", "old"} <= set(js["methods"]["ours"]["forgetting"])
    assert (tmp_path / "res" / "cl-chess13-tiny-quick.png").stat().st_size > 10_000
    assert "| ours |" in (tmp_path / "res" / "cl-chess13-tiny-quick.md").read_text()
    # replay stored old images in its run directory (that is what makes it not exemplar-free)
    assert len(list((tmp_path / "work" / "chess13-tiny-quick" / "seed0" / "replay" / "step1" / "replay" / "images").iterdir())) == 4


def test_demo_command(tmp_path):
    r = CliRunner().invoke(app, ["demo", "--out", str(tmp_path / "demo"), "--epochs", "1"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    md = (tmp_path / "demo" / "cl-chess-mini-demo.md").read_text()
    assert "| finetune |" in md and "| ours |" in md and "| base (before) |" in md and "time (s)" in md
    assert (tmp_path / "demo" / "cl-chess-mini-demo.png").stat().st_size > 10_000
    js = json.loads((tmp_path / "demo" / "cl-chess-mini-demo.json").read_text())
    # the bundled base is converged: it detects the white pieces of the demo's validation photos
    assert js["base"]["metrics"]["old"]["map50_95"] > 0.5
    assert js["scene"]["boxes"]["base"]["old"] >= 3 and js["scene"]["boxes"]["base"]["new"] == 0
    for name in ("finetune", "ours"):
        assert js["methods"][name]["seconds"] > 0 and (tmp_path / "demo" / "runs" / name / "lineage.json").is_file()
        assert (tmp_path / "demo" / "runs" / name / "train.log").stat().st_size > 0  # Ultralytics' output went here
    import cv2

    scene = cv2.imread(str(tmp_path / "demo" / "demo-scene.jpg"))
    assert scene is not None and scene.shape[1] > 3 * 500  # three panels side by side
    # quiet by default: Ultralytics' argument dump and per-epoch tables are not on the console
    assert "Starting training" not in r.output and "optimizer:" not in r.output


def test_demo_refuses_missing_base(tmp_path):
    from cldet.core.errors import RunError
    from cldet.demo import DemoOptions, run_demo

    with pytest.raises(RunError, match="demo base model"):
        run_demo(DemoOptions(out=tmp_path / "d"), base=tmp_path / "nope")
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize("leftover, expect", [
    ({"pending.json": "{}", "train/weights/state.pt": "w"}, [True]),   # trained >= 1 epoch: continued (--resume)
    ({"pending.json": "{}"}, [False]),                                 # killed before training: started again
    ({"junk.txt": "x"}, [False]),                                      # not a cldet run: removed, started again
    ({"lineage.json": "{}"}, []),                                      # finished: reused, nothing run
])
def test_reuse_resumes_an_interrupted_step(tmp_path, leftover, expect):
    from cldet.protocol import reuse

    run = tmp_path / "step1"
    for rel, text in leftover.items():
        (run / rel).parent.mkdir(parents=True, exist_ok=True)
        (run / rel).write_text(text)
    calls = []

    def make(resume):
        calls.append(resume)
        assert run.exists() == resume, "a resumed folder is kept; a fresh start gets no leftover"

    assert reuse(run, make) == run
    assert calls == expect


def test_reused_run_must_have_the_protocols_settings(tmp_path):
    """A finished run in the work folder trained with other epochs is refused, not silently reused."""
    from cldet.core.errors import RunError
    from cldet.detector.config import TrainConfig
    from cldet.detector.lineage import Increment, Lineage
    from cldet.protocol import check_reused

    done = TrainConfig(epochs=30, workers=2)
    Lineage(arch="yolov5nu.yaml", imgsz=320, classes=["a"], increments=[
        Increment(index=0, kind="train", classes_added=["a"], method="train", hyper={"train": done.as_dict()})]).save(tmp_path)
    check_reused(tmp_path, TrainConfig(epochs=30, workers=0))  # workers may differ, as on --resume
    with pytest.raises(RunError, match="epochs: 30 there, 60 now"):
        check_reused(tmp_path, TrainConfig(epochs=60))


def _protocol(tmp_path, extra: str = ""):
    from cldet.protocol import load_protocol
    from tests.conftest import write_dataset

    ds = write_dataset(tmp_path / "ds", ["a", "b"], {"x": "0 0.5 0.5 0.2 0.2\n1 0.3 0.3 0.1 0.1\n"})
    y = tmp_path / "p.yaml"
    y.write_text(f"name: t\ndataset: {ds}\nsteps: [[a], [b]]\nmethods: [finetune]\n{extra}")
    return load_protocol(y, tmp_path)


def test_protocol_names_architecture_and_starting_weights(tmp_path):
    from cldet.core.errors import DataError

    p = _protocol(tmp_path)
    assert (p.arch, p.init, p.no_init) == ("yolov5nu.yaml", None, False)  # cldet's defaults
    p = _protocol(tmp_path, "arch: yolo11n.yaml\ninit: none\n")
    assert (p.arch, p.init, p.no_init) == ("yolo11n.yaml", None, True)
    (tmp_path / "w.pt").write_bytes(b"x")
    assert _protocol(tmp_path, "init: w.pt\n").init == (tmp_path / "w.pt").resolve()  # relative to the YAML
    with pytest.raises(DataError, match="init weights"):
        _protocol(tmp_path, "init: missing.pt\n")


def test_parts_of_a_seed(tmp_path, monkeypatch):
    """--parts splits a seed between processes: the methods refuse an unfinished base, the joint does not need it,
    and every run gets the protocol's architecture and starting weights."""
    import cldet.detector.runs as runs
    from cldet.core.errors import RunError
    from cldet.protocol import run_protocol

    p = _protocol(tmp_path, "arch: yolo11n.yaml\ninit: none\n")
    done = []

    def fake(kind):
        def run(job, *cfgs):
            done.append((kind, job.out.name, getattr(job, "arch", None), getattr(job, "no_init", None)))
            raise SystemExit  # stop at the first training: what was asked for is recorded
        return run

    monkeypatch.setattr(runs, "train", fake("train"))
    monkeypatch.setattr(runs, "learn", fake("learn"))
    with pytest.raises(RunError, match="base part first"):
        run_protocol(p, tmp_path / "work", parts=("methods",))
    assert done == []
    with pytest.raises(SystemExit):
        run_protocol(p, tmp_path / "work", parts=("joint",))
    assert done == [("train", "joint", "yolo11n.yaml", True)]  # straight to the joint, no base trained
    with pytest.raises(SystemExit):
        run_protocol(p, tmp_path / "work", parts=("base", "joint"))
    assert done[-1] == ("train", "base", "yolo11n.yaml", True)
