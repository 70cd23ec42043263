"""Deploy fixtures: the trained test model and its exports (built once, cached in pytest's cache folder)."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from pathlib import Path

import pytest

from .assets import Assets, build


def _has(mod: str) -> bool:
    return importlib.util.find_spec(mod) is not None


@pytest.fixture(scope="session")
def assets(request, tmp_path_factory) -> Assets:
    """Trained 4-class model + FP32 (dynamic and fixed batch 1) and INT8 ONNX + manifest."""
    if not (_has("torch") and _has("ultralytics")):
        pytest.skip("building the test model needs the train extra (torch, ultralytics)")
    cache = request.config.cache
    root = Path(cache.mkdir("cldet-deploy")) if cache is not None else tmp_path_factory.mktemp("cldet-deploy")
    return build(root)


@pytest.fixture()
def workdir(assets: Assets, tmp_path: Path) -> Path:
    """A private copy of the export folder, free to corrupt or edit."""
    dst = tmp_path / "export"
    shutil.copytree(assets.manifest.parent, dst)
    return dst


def edit_manifest(path: Path, fn) -> Path:
    raw = json.loads(path.read_text())
    fn(raw)
    path.write_text(json.dumps(raw))
    return path


@pytest.fixture(scope="session")
def int8_onnx(request) -> Path:
    """An INT8 Q/DQ ONNX for the `jetson` tests: $CLDET_TEST_EXPORT/model.int8.onnx (a board has no torch to build
    the test model; copy an export folder there), else the test model's."""
    env = os.environ.get("CLDET_TEST_EXPORT")
    if env:
        return Path(env) / "model.int8.onnx"
    return request.getfixturevalue("assets").int8
