"""Kill a run at every stage, then `--resume` it: the result is the uninterrupted run's. A second writer is refused.

Each kill is a SIGKILL the process sends itself at a chosen point (a patched function in a child interpreter), so
the test is deterministic: before the trainer's start checkpoint exists, after the first of two epochs, after
training but before lineage.json, and halfway through writing lineage.json.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from cldet.detector.lineage import read_lineage

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
TINY = ["--epochs", "2", "--imgsz", "64", "--batch", "8", "--workers", "0"]
CLASSES = "white-king,white-queen,white-pawn"

# what the child does at each stage before killing itself
KILLS = {
    "before-init": "import cldet.detector.trainer as m\n"
                   "m.write_trainer_start = lambda *a, **k: die()",
    "mid-training": "from cldet.detector.trainer import CLTrainer as C\n"
                    "orig = C.save_model\n"
                    "def save(self):\n"
                    "    r = orig(self)\n"
                    "    if self.epoch == 0: die()\n"
                    "    return r\n"
                    "C.save_model = save",
    "before-lineage": "from cldet.detector.lineage import Lineage\n"
                      "Lineage.save = lambda self, d: die()",
    "during-lineage-write": "import cldet.detector.lineage as m\n"
                            "def half(path, obj):\n"
                            "    from pathlib import Path\n"
                            "    p = Path(path); (p.parent / f'.{p.name}.tmp').write_text('{\"format\": \"cldet-lin')\n"
                            "    die()\n"
                            "m.write_json_atomic = half",
}


def _child(stage: str, args: list[str]) -> subprocess.CompletedProcess:
    code = textwrap.dedent("""
        import os, signal, sys
        def die():
            os.kill(os.getpid(), signal.SIGKILL)
        {patch}
        from cldet.cli import app
        sys.argv = ["cldet", *{args!r}]
        app()
    """).format(patch=KILLS[stage], args=[str(a) for a in args])
    env = {**os.environ, "YOLO_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, env=env)


def _cli(*args) -> subprocess.CompletedProcess:
    env = {**os.environ, "YOLO_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "cldet.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=600, env=env)


def _weights(run: Path) -> dict:
    return torch.load(run / "model.pt", map_location="cpu", weights_only=True)["state_dict"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, mini_yaml):
    """The uninterrupted run every resumed one must reproduce."""
    out = tmp_path_factory.mktemp("ref") / "run"
    r = _cli("train", "--data", mini_yaml, "--out", out, "--classes", CLASSES, *TINY)
    assert r.returncode == 0, r.stderr[-3000:]
    return out


@pytest.mark.parametrize("stage", list(KILLS))
def test_kill_then_resume_matches_uninterrupted(stage, reference, mini_yaml, tmp_path):
    out = tmp_path / "run"
    args = ["train", "--data", mini_yaml, "--out", out, "--classes", CLASSES, *TINY]
    r = _child(stage, args)
    assert r.returncode == -9, (r.returncode, r.stderr[-3000:])
    assert out.is_dir() and not (out / "lineage.json").exists() and (out / "pending.json").exists()
    rerun = _cli(*args)  # a plain rerun never writes into the interrupted folder
    assert rerun.returncode == 4 and "--resume" in rerun.stderr
    r = _cli(*args, "--resume")
    assert r.returncode == 0, r.stderr[-3000:]
    lin, ref = read_lineage(out), read_lineage(reference)
    assert not (out / "pending.json").exists()
    assert lin.classes == ref.classes and lin.imgsz == ref.imgsz and len(lin.increments) == 1
    assert lin.last.hyper == ref.last.hyper and lin.last.data["staged"] == ref.last.data["staged"]
    rows = (out / "train" / "results.csv").read_text().strip().splitlines()
    assert len(rows) == 3, rows  # header + one row per epoch: no epoch twice
    a, b = _weights(out), _weights(reference)
    diff = max((a[k] - b[k]).abs().max().item() for k in a)
    if stage == "mid-training":  # continued from the epoch-1 state: the same up to the second epoch's data order
        rel = max(((a[k] - b[k]).abs().max() / b[k].abs().max().clamp(min=1e-6)).item() for k in a
                  if a[k].is_floating_point())
        assert rel < 0.2, rel
        assert json.loads((out / "lineage.json").read_text())["increments"][0]["metrics"].keys() == \
            ref.last.metrics.keys()
    else:  # nothing of the training was lost or redone differently: bit-identical
        assert diff == 0.0, diff
        assert lin.last.metrics == ref.last.metrics


def test_kill_between_create_and_first_write_resumes(reference, mini_yaml, tmp_path):
    """A folder holding nothing but cldet's lock file (killed right after creating it) is resumed from scratch."""
    out = tmp_path / "run"
    out.mkdir()
    (out / ".lock").write_text("123\n")
    r = _cli("train", "--data", mini_yaml, "--out", out, "--classes", CLASSES, *TINY, "--resume")
    assert r.returncode == 0, r.stderr[-3000:]
    assert read_lineage(out).classes == read_lineage(reference).classes


def test_resume_with_other_options_is_refused(mini_yaml, tmp_path):
    out = tmp_path / "run"
    args = ["train", "--data", mini_yaml, "--out", out, "--classes", CLASSES, *TINY]
    assert _child("before-init", args).returncode == -9
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    r = _cli(*args[:-8], "--epochs", "3", *TINY[2:], "--resume")
    assert r.returncode == 2 and "epochs: 2 -> 3" in r.stderr, r.stderr[-2000:]
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before


def test_second_writer_exits_4_at_once(reference, mini_yaml, tmp_path):
    """`learn` and `learn --resume` on one folder at once: the second is refused while the first holds the lock."""
    out = tmp_path / "run"
    base = ["learn", "--from", reference, "--data", mini_yaml, "--new-classes", "black-pawn", "--out", out,
            "--no-old-labels", "--epochs", "30", "--batch", "8", "--workers", "0"]
    env = {**os.environ, "YOLO_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    first = subprocess.Popen([sys.executable, "-m", "cldet.cli", *map(str, base)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, env=env)
    try:
        deadline = time.time() + 300
        while not (out / "train" / "init.pt").exists() and first.poll() is None and time.time() < deadline:
            time.sleep(0.2)
        assert first.poll() is None, "the first learn ended before the test could race it"
        t0 = time.time()
        second = _cli(*base, "--resume")
        assert second.returncode == 4 and "another cldet process is writing" in second.stderr, second.stderr[-2000:]
        assert time.time() - t0 < 60
    finally:
        first.kill()
        first.wait()
    shutil.rmtree(out)
