import json

import pytest

from cldet.core.files import sha256_file
from cldet.detector.lineage import Increment, Lineage, read_lineage
from cldet.core.errors import RunError


def _run(tmp_path, classes=("a", "b"), steps=((["a"]), (["b"]))):
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.pt").write_bytes(b"weights")
    incs = [Increment(index=i, kind="train" if i == 0 else "learn", classes_added=list(s), method="m") for i, s in enumerate(steps)]
    incs[-1].artifacts = {"model.pt": sha256_file(run / "model.pt")}
    Lineage(arch="yolov5nu.yaml", imgsz=64, classes=list(classes), increments=incs).save(run)
    return run


def test_roundtrip_groups(tmp_path):
    lin = read_lineage(_run(tmp_path))
    assert lin.groups() == {"step0": ["a"], "step1": ["b"], "all": ["a", "b"]}
    assert lin.old_new() == {"old": ["a"], "new": ["b"], "all": ["a", "b"]}


def test_tampered_checkpoint_refused(tmp_path):
    run = _run(tmp_path)
    (run / "model.pt").write_bytes(b"other weights")
    with pytest.raises(RunError, match="does not match lineage"):
        read_lineage(run)


def test_bad_run_dirs(tmp_path):
    with pytest.raises(RunError, match="does not exist"):
        read_lineage(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunError, match="no lineage.json"):
        read_lineage(tmp_path / "empty")
    run = _run(tmp_path)
    raw = json.loads((run / "lineage.json").read_text())
    raw["classes"] = ["a", "b", "c"]
    (run / "lineage.json").write_text(json.dumps(raw))
    with pytest.raises(RunError, match="increments add"):
        read_lineage(run)
    (run / "lineage.json").write_text("{")
    with pytest.raises(RunError, match="not valid JSON"):
        read_lineage(run)
