"""The wheel carries what `cldet demo` and `cldet train`'s default need: data, backbone weights, demo base model.

The install-and-run check (a fresh virtualenv outside the checkout, `cldet demo` from the installed wheel)
is in .ci/run; this test builds the wheel and reads its file list.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import cldet
from cldet.core.assets import ASSETS, BACKBONE, CHESS_MINI, DEMO_BASE
from tests.conftest import ROOT


def test_cldet_is_imported_from_this_checkout():
    # .ci/run runs the suite in a second clone with a shared virtualenv: the code under test must be this tree's
    assert Path(cldet.__file__).resolve().is_relative_to(ROOT.resolve()), cldet.__file__


def test_assets_are_inside_the_package():
    assert ASSETS.resolve().is_relative_to(Path(cldet.__file__).resolve().parent)
    for p in (CHESS_MINI, BACKBONE, DEMO_BASE / "model.pt", DEMO_BASE / "lineage.json", DEMO_BASE / "README.md"):
        assert p.is_file(), p


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out),
                        str(ROOT)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    (whl,) = out.glob("cldet-*.whl")
    return whl


def test_wheel_carries_the_assets(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {f"cldet/{p.relative_to(ASSETS.parent).as_posix()}" for p in ASSETS.rglob("*")
                if p.is_file() and p.name != "labels.cache"}
    assert expected, "no assets found in the checkout"
    missing = sorted(expected - names)
    assert not missing, f"the wheel lacks {len(missing)} asset files, e.g. {missing[:5]}"
    imgs = lambda split: [n for n in names if n.startswith(f"cldet/assets/chess-mini/{split}/images/")]  # noqa: E731
    assert len(imgs("train")) == 72 and len(imgs("valid")) == 24
    assert "cldet/assets/demo-base/calib/index.json" in names  # learn reads the parent's calibration reservoir
    assert not any(n.startswith(("tests/", "benchmarks/")) for n in names)
    assert any(n.endswith("entry_points.txt") for n in names)
