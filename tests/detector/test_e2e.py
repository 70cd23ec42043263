"""Tiny CPU end-to-end runs through the CLI: train -> learn -> eval, bad input, offline, DDP launch."""

from __future__ import annotations

import csv
import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cldet.cli import app
from cldet.core.files import sha256_file
from cldet.detector.lineage import read_lineage

pytestmark = pytest.mark.slow
TINY = ["--epochs", "1", "--imgsz", "128", "--batch", "8", "--workers", "0"]
WHITE = "white-king,white-queen,white-rook,white-pawn"
BLACK = "black-king,black-pawn"
runner = CliRunner()


@pytest.fixture(scope="module")
def net_attempts():
    """Block and record every outbound connection or name lookup while the module's runs execute."""
    attempts: list = []
    orig = (socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo, socket.create_connection)

    def deny(*a, **k):
        import traceback

        attempts.append((a[1:] if len(a) > 1 else a, "".join(traceback.format_stack(limit=25))))
        raise OSError("network access attempted during a cldet run")

    socket.socket.connect = lambda self, *a, **k: deny(self, *a)
    socket.socket.connect_ex = lambda self, *a, **k: deny(self, *a)
    socket.getaddrinfo = lambda *a, **k: deny(None, *a)
    socket.create_connection = lambda *a, **k: deny(None, *a)
    yield attempts
    socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo, socket.create_connection = orig


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, mini_yaml, net_attempts):
    root = tmp_path_factory.mktemp("runs")
    r = invoke("train", "--data", mini_yaml, "--out", root / "base", "--classes", WHITE, *TINY)
    assert r.exit_code == 0, r.output
    r = invoke("learn", "--from", root / "base", "--data", mini_yaml, "--new-classes", BLACK, "--out", root / "step1",
               "--no-old-labels", *TINY)
    assert r.exit_code == 0, r.output
    r = invoke("eval", "--run", root / "step1", "--data", mini_yaml)
    assert r.exit_code == 0, r.output
    return root


def test_lineage_after_two_increments(runs):
    lin = read_lineage(runs / "step1")
    assert lin.classes == WHITE.split(",") + BLACK.split(",")
    assert [i.classes_added for i in lin.increments] == [WHITE.split(","), BLACK.split(",")]
    inc = lin.last
    assert inc.method == "pseudo+feature+response" and inc.hyper["distill"]["pseudo_conf"] == 0.5
    assert inc.parent["model_sha256"] == sha256_file(runs / "base" / "model.pt")
    assert lin.arch == read_lineage(runs / "base").arch == "yolov5nu.yaml"  # the parent's architecture, carried on
    assert inc.artifacts["model.pt"] == sha256_file(runs / "step1" / "model.pt")
    assert set(inc.metrics) >= {"old", "new", "all", "step0", "step1"}
    assert inc.data["staged"]["ignored"]  # the other classes' labels were dropped, and recorded
    assert not (runs / "step1" / "pending.json").exists()
    # the previous run is untouched: still verifies, still one increment
    assert len(read_lineage(runs / "base").increments) == 1
    rep = json.loads((runs / "step1" / "eval-val.json").read_text())
    assert set(rep["forgetting"]) == {"step0", "step1"}


def test_distillation_terms_were_active(runs):
    rows = list(csv.DictReader(open(runs / "step1" / "train" / "results.csv")))
    assert float(rows[-1]["train/feat_kd"]) > 0 and float(rows[-1]["train/resp_kd"]) > 0


def test_no_network_access(runs, net_attempts):
    assert net_attempts == []


def test_bad_input_clear_errors(runs, mini_yaml, tmp_path):
    r = invoke("learn", "--from", runs / "base", "--data", mini_yaml, "--new-classes", "black-king", "--out", runs / "step1", *TINY)
    assert r.exit_code == 4 and "already exists" in r.output
    r = invoke("learn", "--from", runs / "base", "--data", mini_yaml, "--new-classes", "unicorn", "--out", tmp_path / "x", *TINY)
    assert r.exit_code == 3 and "unknown new class 'unicorn'" in r.output
    r = invoke("learn", "--from", runs / "base", "--data", mini_yaml, "--new-classes", "white-king", "--out", tmp_path / "x", *TINY)
    assert r.exit_code == 4 and "already known" in r.output
    r = invoke("learn", "--from", tmp_path, "--data", mini_yaml, "--new-classes", "black-king", "--out", tmp_path / "x", *TINY)
    assert r.exit_code == 4 and "no lineage.json" in r.output
    r = invoke("learn", "--from", runs / "base", "--data", mini_yaml, "--new-classes", "black-king", "--out", runs / "base" / "x", *TINY)
    assert r.exit_code == 4 and "never writes into it" in r.output
    r = invoke("learn", "--from", runs / "base", "--data", mini_yaml, "--new-classes", "black-king", "--out", tmp_path / "x",
               "--method", "magic", *TINY)
    assert r.exit_code != 0 and "unknown method" in r.output
    r = invoke("train", "--data", tmp_path / "missing.yaml", "--out", tmp_path / "y", *TINY)
    assert r.exit_code == 3 and "does not exist" in r.output
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()  # nothing half-written


def test_second_teacher_distils_a_fine_tuned_runs_new_classes(runs, mini_yaml, tmp_path):
    """--new-teacher: a run that learned the same new classes from the same parent (here plain fine-tuning) is
    distilled into the new outputs; a run with other classes or another parent, or a method without a teacher, is
    refused before anything is written."""
    import shutil

    new = ("--data", mini_yaml, "--new-classes", BLACK, "--no-old-labels", *TINY)
    r = invoke("learn", "--from", runs / "base", "--out", tmp_path / "ft", "--method", "finetune", *new)
    assert r.exit_code == 0, r.output
    r = invoke("learn", "--from", runs / "base", "--out", tmp_path / "two", "--new-teacher", tmp_path / "ft", *new)
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(open(tmp_path / "two" / "train" / "results.csv")))
    assert float(rows[-1]["train/new_kd"]) > 0 and float(rows[-1]["train/resp_kd"]) > 0
    assert read_lineage(tmp_path / "two").last.hyper["distill"]["new_teacher"] == str((tmp_path / "ft").resolve())
    r = invoke("learn", "--from", runs / "base", "--out", tmp_path / "x", "--new-teacher", runs / "base", *new)
    assert r.exit_code == 4 and "same classes, same order" in r.output
    other = tmp_path / "ft-other-parent"  # same classes, learned from another model (its parent's sha256 differs)
    shutil.copytree(tmp_path / "ft", other)
    lin = json.loads((other / "lineage.json").read_text())
    lin["increments"][-1]["parent"]["model_sha256"] = "0" * 64
    (other / "lineage.json").write_text(json.dumps(lin))
    r = invoke("learn", "--from", runs / "base", "--out", tmp_path / "x", "--new-teacher", other, *new)
    assert r.exit_code == 4 and "did not learn from" in r.output
    r = invoke("learn", "--from", runs / "base", "--out", tmp_path / "x", "--new-teacher", tmp_path / "ft",
               "--method", "finetune", *new)
    assert r.exit_code == 2 and "learns with a teacher" in r.output
    assert not (tmp_path / "x").exists()


def test_tampered_checkpoint_is_refused(runs, mini_yaml, tmp_path):
    import shutil

    copy = tmp_path / "base"
    shutil.copytree(runs / "base", copy, symlinks=True)
    with open(copy / "model.pt", "ab") as f:
        f.write(b"\0")
    r = invoke("learn", "--from", copy, "--data", mini_yaml, "--new-classes", "black-king", "--out", tmp_path / "z", *TINY)
    assert r.exit_code == 4 and "does not match lineage" in r.output


def test_trainer_survives_ddp_launch(runs, tmp_path):
    """Ultralytics' DDP launch pickles the trainer class, args and model, then trains in a new process:
    the distillation settings must come back there and the teacher be attached again."""
    from ultralytics.utils.dist import generate_ddp_file

    from cldet.detector.trainer import CLTrainer

    trainer = CLTrainer(overrides=dict(model=str(runs / "step1" / "train" / "init.pt"), data=str(runs / "step1" / "data" / "data.yaml"),
                                       epochs=1, imgsz=128, batch=8, workers=0, device="cpu", project=str(tmp_path), name="ddp",
                                       exist_ok=True, plots=False, val=False, amp=False))
    script = generate_ddp_file(trainer)
    try:
        proc = subprocess.run([sys.executable, script], capture_output=True, text=True, timeout=600,
                              env={**__import__("os").environ, "YOLO_OFFLINE": "1"})
    finally:
        Path(script).unlink(missing_ok=True)
        Path(script).with_suffix(".pt").unlink(missing_ok=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = list(csv.DictReader(open(tmp_path / "ddp" / "results.csv")))
    assert float(rows[-1]["train/feat_kd"]) > 0


def test_resume_refuses_finished_and_unknown_dirs(runs, mini_yaml, tmp_path):
    r = invoke("learn", "--from", runs / "base", "--data", mini_yaml, "--new-classes", "black-king", "--out", runs / "step1", "--resume", *TINY)
    assert r.exit_code == 4 and "finished run" in r.output
    (tmp_path / "other").mkdir()
    r = invoke("learn", "--from", runs / "base", "--data", mini_yaml, "--new-classes", "black-king", "--out", tmp_path / "other", "--resume", *TINY)
    assert r.exit_code == 4 and "not an interrupted cldet run" in r.output


def test_resume_after_kill(runs, mini_yaml, tmp_path):
    """Kill a learn run after its first epoch checkpoint, then --resume it to a finished, verified run."""
    import os
    import signal
    import time

    out = tmp_path / "interrupted"
    args = [sys.executable, "-m", "cldet.cli", "learn", "--from", str(runs / "base"), "--data", str(mini_yaml),
            "--new-classes", "black-king", "--out", str(out), "--no-old-labels", "--epochs", "3", "--imgsz", "128",
            "--batch", "8", "--workers", "0"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                            env={**os.environ, "YOLO_OFFLINE": "1"})
    last = out / "train" / "weights" / "state.pt"  # cldet's weights-only training state, written per epoch
    deadline = time.time() + 900  # an epoch takes ~10 s; a loaded machine (other jobs on both cores) has taken > 300
    while not last.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)  # let the checkpoint write finish
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert last.exists(), f"no epoch checkpoint before the kill (run exit code {proc.returncode})"
    assert not (out / "lineage.json").exists()
    r = invoke("learn", "--from", runs / "base", "--data", mini_yaml, "--new-classes", "black-king", "--out", out,
               "--no-old-labels", "--epochs", "3", "--imgsz", "128", "--batch", "8", "--workers", "0", "--resume")
    assert r.exit_code == 0, r.output
    lin = read_lineage(out)
    assert lin.last.classes_added == ["black-king"] and len(list(csv.DictReader(open(out / "train" / "results.csv")))) == 3


@pytest.mark.parametrize("verbose", [False, True])
def test_console_is_quiet_unless_verbose(runs, mini_yaml, tmp_path, verbose):
    """By default Ultralytics' argument dump and tables go to RUN/train.log; the console gets one bar and a line per
    epoch. --verbose shows Ultralytics' output as well."""
    import os

    out = tmp_path / "run"
    args = [sys.executable, "-m", "cldet.cli", "learn", "--from", str(runs / "base"), "--data", str(mini_yaml),
            "--new-classes", "black-king", "--out", str(out), "--no-old-labels", "--epochs", "2", "--imgsz", "128",
            "--batch", "8", "--workers", "0"] + (["--verbose"] if verbose else [])
    r = subprocess.run(args, capture_output=True, text=True, timeout=600, env={**os.environ, "YOLO_OFFLINE": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    console = r.stdout + r.stderr
    log = (out / "train.log").read_text()
    assert "Starting training for 2 epochs" in log and "optimizer:" in log  # nothing of Ultralytics' output is lost
    assert "\r\033[K" not in log  # its progress-bar redraws are not
    assert "epoch 1/2" in console and "epoch 2/2" in console
    if verbose:
        assert "Starting training for 2 epochs" in console
    else:
        assert "Starting training" not in console and "optimizer:" not in console and "Ultralytics" not in console
        assert len(console.splitlines()) < 40, console[-3000:]


@pytest.mark.parametrize("given", [False, True], ids=["default", "given"])
def test_threads_option_sets_training_threads(tmp_path, mini_yaml, given):
    """Training takes every usable core by default and --threads N when given, both set after Ultralytics' own
    choice (min(8, cores - 1)); the option is recorded in the lineage."""
    import torch
    from ultralytics.utils import NUM_THREADS

    from cldet.detector.runs import usable_cores

    want = NUM_THREADS + 1 if given else usable_cores()  # given: differs from Ultralytics' choice on any machine
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(max(1, want - 1) if want > 1 else 2)  # something else first, so the run must set it
        r = invoke("train", "--data", mini_yaml, "--out", tmp_path / "t", "--classes", WHITE, *TINY,
                   *(["--threads", want] if given else []))
        assert r.exit_code == 0, r.output
        assert torch.get_num_threads() == want
    finally:
        torch.set_num_threads(before)
    assert read_lineage(tmp_path / "t").last.hyper["train"]["threads"] == (want if given else None)
