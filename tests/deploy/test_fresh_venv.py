"""A fresh venv with only the core (= deploy) dependencies runs `cldet check` and `cldet bench` on the INT8 ONNX and
on the board image's smoke artifact, commands that need the training stack exit 6 naming the extra to install, and
neither torch nor ultralytics is importable or imported there: what the board image gets.

The venv is cached in pytest's cache folder (dependencies installed once); cldet itself is reinstalled from
this checkout on every run. Marked slow: the first run installs the dependencies (about a minute).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Runs a cldet command in-process, then reports which heavy modules ended up in sys.modules.
WRAPPER = """
import json, sys
from cldet.cli import app
code = 0
try:
    app(args=sys.argv[1:], prog_name="cldet")
except SystemExit as e:
    code = e.code or 0
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision", "ultralytics"))
print("CLDET_HEAVY_MODULES=" + json.dumps(heavy))
sys.exit(code)
"""


def _run(cmd: list[str], timeout: int = 300, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)


@pytest.fixture(scope="module")
def deploy_venv(request, tmp_path_factory) -> Path:
    cache = request.config.cache
    base = Path(cache.mkdir("cldet-deploy-venv")) if cache is not None else tmp_path_factory.mktemp("venv")
    deps = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()[:12]
    env_dir = base / f"venv-{deps}"
    py = env_dir / "bin" / "python"
    fresh = not py.exists()
    if fresh:
        for stale in base.glob("venv-*"):  # dependency sets of earlier pyproject.toml versions
            shutil.rmtree(stale, ignore_errors=True)
        venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    # the whole package from this checkout, not editable; dependencies only the first time
    args = [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    r = _run(args + [str(ROOT)] if fresh else args + ["--no-deps", "--force-reinstall", str(ROOT)], cwd=base)
    if r.returncode != 0:
        if fresh:
            shutil.rmtree(env_dir, ignore_errors=True)
        if "No matching distribution" in r.stderr or "Could not find" in r.stderr or "connection" in r.stderr.lower():
            pytest.skip(f"cannot install the deploy dependencies from the package registry here: {r.stderr[-300:]}")
        raise AssertionError(r.stdout + r.stderr)
    (base / "wrapper.py").write_text(WRAPPER)
    return env_dir


def _cldet(env_dir: Path, *args: str) -> tuple[int, str, list[str]]:
    r = _run([str(env_dir / "bin" / "python"), str(env_dir.parent / "wrapper.py"), *args], cwd=env_dir.parent)
    out = r.stdout + r.stderr
    line = [x for x in r.stdout.splitlines() if x.startswith("CLDET_HEAVY_MODULES=")]
    assert line, out
    return r.returncode, out, json.loads(line[-1].split("=", 1)[1])


@pytest.mark.slow
def test_deploy_only_venv_runs_check_and_bench(deploy_venv, assets, tmp_path):
    py = str(deploy_venv / "bin" / "python")
    for heavy in ("torch", "ultralytics", "torchvision"):
        r = _run([py, "-c", f"import {heavy}"])
        assert r.returncode != 0 and "ModuleNotFoundError" in r.stderr, f"{heavy} is importable in the deploy venv"
    freeze = _run([py, "-m", "pip", "list", "--format=json"]).stdout
    names = {p["name"].lower() for p in json.loads(freeze)}
    assert "cldet" in names and not names & {"torch", "ultralytics", "torchvision"}

    code, out, heavy = _cldet(deploy_venv, "check", "--artifact", str(assets.int8), "--manifest", str(assets.manifest),
                              "--data", str(assets.eval_yaml), "--threads", "1", "--quiet",
                              "--report", str(tmp_path / "check.json"))
    assert code == 0 and "PASS" in out, out
    assert heavy == [], f"cldet check imported {heavy}"
    assert json.loads((tmp_path / "check.json").read_text())["passed"]

    code, out, heavy = _cldet(deploy_venv, "bench", "--artifact", str(assets.int8), "--vs", str(assets.fp32),
                              "--iters", "3", "--warmup", "1", "--batch", "1", "--threads", "1", "--quiet",
                              "--out", str(tmp_path / "bench"))
    assert code == 0, out
    assert heavy == [], f"cldet bench imported {heavy}"
    assert (tmp_path / "bench" / "bench.png").is_file() and (tmp_path / "bench" / "bench.json").is_file()
    assert sys.executable != py


@pytest.mark.slow
def test_deploy_only_venv_runs_the_board_smoke_check(deploy_venv, tmp_path):
    """What Dockerfile.jetson's last step runs, in the same dependency set (CPU provider)."""
    smoke = ROOT / "docker" / "smoke"
    code, out, heavy = _cldet(deploy_venv, "check", "--artifact", str(smoke / "model.int8.onnx"), "--manifest",
                              str(smoke / "manifest.json"), "--data", str(smoke / "data.yaml"), "--provider", "cpu",
                              "--tolerance", "5", "--report", str(tmp_path / "smoke.json"))
    assert code == 0, out
    assert heavy == []
    report = json.loads((tmp_path / "smoke.json").read_text())
    assert report["passed"]
    # the manifest's references were measured when the artifact was made, with the onnxruntime/opencv of that day
    # (the drift gate above allows for a moved dependency set); the full install here measures the same numbers
    # as the deploy-only one: same runtime, same pre/post-processing, same result
    r = _run([sys.executable, "-m", "cldet.cli", "check", "--artifact", str(smoke / "model.int8.onnx"), "--manifest",
              str(smoke / "manifest.json"), "--data", str(smoke / "data.yaml"), "--provider", "cpu", "--tolerance", "5",
              "--quiet", "--report", str(tmp_path / "smoke-full.json")], cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    full = {g["group"]: g["measured"] for g in json.loads((tmp_path / "smoke-full.json").read_text())["groups"]}
    assert {g["group"]: round(g["measured"], 4) for g in report["groups"]} == {k: round(v, 4) for k, v in full.items()}


@pytest.mark.slow
@pytest.mark.parametrize("command", [["export", "--run", "some-run"],
                                     ["train", "--data", "d.yaml", "--out", "o"],
                                     ["learn", "--from", "r", "--data", "d.yaml", "--new-classes", "a", "--out", "o"]])
def test_training_commands_exit_6_naming_the_extra(deploy_venv, command):
    code, out, heavy = _cldet(deploy_venv, *command)
    assert code == 6, out
    assert "pip install 'cldet[train]'" in out and "Traceback" not in out and "ModuleNotFoundError" not in out
    assert heavy == []
