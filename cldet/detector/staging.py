"""Stage a dataset for the trainer: model class ids, only the classes an increment may use.

The user's data stays untouched (it may be read-only): the run directory gets `data/<split>/images`
(symlinks to the originals) and `data/<split>/labels` rewritten to the model's class ids. Labels of
classes the increment does not use are dropped and counted, so the run can say what it ignored.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml
from tqdm import tqdm

from ..core.data import Dataset
from ..core.errors import DataError

__all__ = ["StagedData", "stage_dataset"]

log = logging.getLogger("cldet")


@dataclass
class StagedData:
    yaml: Path
    images: dict[str, int] = field(default_factory=dict)
    used: Counter = field(default_factory=Counter)  # model class name -> train instances
    ignored: Counter = field(default_factory=Counter)  # dataset class name -> train instances dropped

    def summary(self) -> dict:
        """What the lineage records about the staged data."""
        return {"images": self.images, "instances": dict(self.used), "ignored": dict(self.ignored)}


def _link(src: Path, dst: Path, copy: bool) -> None:
    if copy:
        shutil.copy2(src, dst)
    else:
        os.symlink(src.resolve(), dst)


def stage_dataset(
    data: Dataset,
    out_dir: Path,
    model_names: list[str],
    use: list[str],
    splits: tuple[str, ...] = ("train", "val"),
    extra_train: list[tuple[Path, np.ndarray]] | None = None,
    copy: bool = False,
    progress: bool = True,
) -> StagedData:
    """Write `out_dir/data.yaml` and per-split image links + remapped labels.

    `use` = dataset class names whose labels are kept (each must be a model class). `extra_train` adds
    (image, rows in model ids) pairs to the train split (replay buffers); an extra image whose file name
    the split already holds is the same picture, so its rows join that image's labels instead of a copy.
    """
    missing = [n for n in use if n not in model_names]
    if missing:
        raise DataError(f"classes {missing} are not in the model's class list {model_names}.")
    to_model = np.array([model_names.index(n) if n in use else -1 for n in data.names], np.int64)
    staged = StagedData(yaml=out_dir / "data.yaml")
    for split in splits:
        img_dir, lab_dir = out_dir / split / "images", out_dir / split / "labels"
        img_dir.mkdir(parents=True, exist_ok=True)
        lab_dir.mkdir(parents=True, exist_ok=True)
        entries: dict[str, list] = {}  # staged file name -> [source image, rows in model ids]
        for src in tqdm(data.images(split), desc=f"stage {split}", unit="img", disable=not progress, leave=False):
            raw = data.label_rows(src)
            keep = to_model[raw[:, 0].astype(int)] >= 0
            if split == "train":
                staged.ignored.update(data.names[int(c)] for c in raw[~keep, 0])
            rows = raw[keep].copy()
            rows[:, 0] = to_model[rows[:, 0].astype(int)]
            name = src.name
            while name in entries:  # same file name from two folders
                name = f"_{name}"
            entries[name] = [src, rows]
        for src, rows in (extra_train or []) if split == "train" else []:
            if src.name in entries:  # a stored image that the new data holds too: one image, both label sets
                entries[src.name][1] = np.concatenate([entries[src.name][1], rows])
            else:
                entries[src.name] = [src, rows]
        for name, (src, rows) in entries.items():
            _link(src, img_dir / name, copy)
            if split == "train":
                staged.used.update(model_names[int(c)] for c in rows[:, 0])
            lines = "\n".join(f"{int(r[0])} {r[1]:.6f} {r[2]:.6f} {r[3]:.6f} {r[4]:.6f}" for r in rows)
            (lab_dir / name).with_suffix(".txt").write_text(lines + ("\n" if lines else ""))
        staged.images[split] = len(entries)
    cfg = {"path": str(out_dir.resolve()), "names": dict(enumerate(model_names))}
    cfg.update({s: f"{s}/images" for s in splits})
    staged.yaml.write_text(yaml.safe_dump(cfg, sort_keys=False))
    if staged.ignored:
        log.warning(
            "ignoring labels of classes not requested for this increment: %s",
            ", ".join(f"{k} ({v} boxes)" for k, v in sorted(staged.ignored.items())),
        )
    return staged
