"""Synthetic datasets for reservoir/reader tests: distinct random images, labels chosen per image."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def make_dataset(root: Path, names: list[str], per_image: dict[str, list[int]], size: int = 48,
                 val: dict[str, list[int]] | None = None) -> Path:
    """`per_image`: train image stem -> class ids shown (one box each); random pixels so no two files are equal."""
    rng = np.random.default_rng(abs(hash(str(root))) % 2**32)
    for split, table in (("train", per_image), ("val", val or {"v0": [0]})):
        (root / split / "images").mkdir(parents=True, exist_ok=True)
        (root / split / "labels").mkdir(parents=True, exist_ok=True)
        for stem, ids in table.items():
            cv2.imwrite(str(root / split / "images" / f"{stem}.png"), rng.integers(0, 255, (size, size, 3), np.uint8))
            rows = [f"{c} {0.1 + 0.08 * k:.3f} 0.5 0.1 0.1" for k, c in enumerate(ids)]
            (root / split / "labels" / f"{stem}.txt").write_text("\n".join(rows) + "\n")
    y = root / "data.yaml"
    y.write_text("train: train/images\nval: val/images\nnames:\n" + "".join(f"  {i}: {n}\n" for i, n in enumerate(names)))
    return y
