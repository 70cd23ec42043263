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
    assert "| finetune |" in md and "| ours |" in md
    assert (tmp_path / "demo" / "cl-chess-mini-demo.png").stat().st_size > 10_000
