"""Shared fixtures: bundled demo data, optional ../shared data, tiny synthetic datasets."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from cldet.core.assets import CHESS_MINI

os.environ.setdefault("YOLO_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
MINI = CHESS_MINI


SHARED_FIXTURES = {"chess13_yaml"}  # fixtures that hand a test ../shared data


def pytest_collection_modifyitems(config, items):
    """A test that takes the ../shared data through a fixture is marked `shared` without saying so itself: .ci/run
    runs the suite once without ../shared and then, in place, only the `shared` tests (the others would run the same
    code on the same files again)."""
    for item in items:
        if SHARED_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.shared)


@pytest.fixture(scope="session")
def mini_yaml() -> Path:
    assert MINI.is_file(), "bundled demo data missing"
    return MINI


@pytest.fixture(scope="session")
def chess13_yaml() -> Path:
    p = SHARED / "data" / "chess13" / "data.yaml"
    if not p.is_file():
        pytest.skip("../shared/data/chess13 not present")
    return p


def write_dataset(root: Path, names: list[str], labels: dict[str, str], size: int = 64) -> Path:
    """A tiny YOLO dataset: one image per entry of `labels` (file stem -> label text) in train and val."""
    import cv2

    for split in ("train", "val"):
        (root / split / "images").mkdir(parents=True, exist_ok=True)
        (root / split / "labels").mkdir(parents=True, exist_ok=True)
        for stem, text in labels.items():
            cv2.imwrite(str(root / split / "images" / f"{stem}.jpg"), np.full((size, size, 3), 128, np.uint8))
            (root / split / "labels" / f"{stem}.txt").write_text(text)
    y = root / "data.yaml"
    y.write_text("train: train/images\nval: val/images\nnames:\n" + "".join(f"  {i}: {n}\n" for i, n in enumerate(names)))
    return y
