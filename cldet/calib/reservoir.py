"""The calibration reservoir: a small, class-balanced set of training images carried across increments.

Old training data is gone after an increment, but INT8 calibration must still see every class the model
detects, or the activation ranges of old-class features are set by new-class images only. So each run keeps
`run_dir/calib/`: a bounded sample of its own TRAIN images plus its parent's reservoir, re-balanced so every
class keeps images where the caps allow. Layout:

    calib/images/<increment>_<sha12>.<ext>   byte-identical copies (the sha256 proves no eval image slipped in)
    calib/labels/<increment>_<sha12>.txt     YOLO labels remapped to the model's class ids (by name)
    calib/index.json                         {"format": "cldet-calib/1", "classes": [...], "caps": {...},
                                              "images": [{"file", "label", "sha256", "bytes", "classes",
                                                          "increment", "source"}], "covered": [...],
                                              "missing": [...], "evicted": int}

Both caps may be 0 (nothing may be kept): the index then lists no images and export calibrates on what the
user passes with `--calib`.
"""

from __future__ import annotations

import logging
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.data import class_map, load_dataset, read_labels
from ..core.files import sha256_file, write_json_atomic
from ..core.errors import DataError, RunError

__all__ = ["update_reservoir", "read_reservoir", "select_balanced", "Candidate", "CALIB_DIR", "INDEX"]

log = logging.getLogger("cldet")
CALIB_DIR = "calib"
INDEX = "index.json"
FORMAT = "cldet-calib/1"


@dataclass(eq=False)  # identity equality: labels are arrays
class Candidate:
    """One image that may enter the reservoir, with its labels already in model class ids."""

    image: Path
    labels: np.ndarray  # (n, 5): model class id, cx, cy, w, h
    classes: list[str]
    increment: int
    source: str
    bytes: int = 0
    sha256: str = ""


def select_balanced(cands: list[Candidate], class_names: list[str], max_images: int, max_mb: float,
                    seed: int = 0) -> list[Candidate]:
    """Greedy class balance: repeatedly add an image of the class with the fewest images so far.

    Classes with no candidates left drop out; the loop stops at either cap. Deterministic for a seed, so
    rerunning an increment rebuilds the same reservoir.
    """
    rng = random.Random(seed)
    pool = list(cands)
    rng.shuffle(pool)
    budget = max_mb * 1e6
    chosen: list[Candidate] = []
    count = {c: 0 for c in class_names}
    used = 0
    while len(chosen) < max_images and pool:
        live = [c for c in class_names if any(c in p.classes for p in pool)]
        if not live:  # only unlabeled images remain: they add nothing to coverage
            break
        target = min(live, key=lambda c: (count[c], class_names.index(c)))
        options = [p for p in pool if target in p.classes and used + p.bytes <= budget]
        if not options:
            pool = [p for p in pool if target not in p.classes]  # too big for what is left of the budget
            continue
        # prefer the image that also covers other under-represented classes
        best = min(options, key=lambda p: sum(count[c] for c in p.classes) / len(p.classes))
        chosen.append(best)
        pool.remove(best)
        used += best.bytes
        for c in set(best.classes):
            count[c] += 1
    return chosen


def _train_candidates(data_yaml: Path, class_names: list[str], increment: int,
                      images: str | Path | None = None) -> list[Candidate]:
    ds = load_dataset(data_yaml, images)
    to_model = class_map(class_names, ds.names)
    out = []
    for img, lab in ds.labels("train").items():
        lab = lab.copy()
        lab[:, 0] = to_model[lab[:, 0].astype(int)] if len(lab) else lab[:, 0]
        lab = lab[lab[:, 0] >= 0]
        if not len(lab):
            continue
        out.append(Candidate(img, lab, sorted({class_names[int(c)] for c in lab[:, 0]}), increment,
                             f"{data_yaml}:train", bytes=img.stat().st_size))
    return out


def read_reservoir(run_dir: str | Path) -> dict | None:
    """The run's reservoir index, or None when the run has none (older runs, or caps of zero never written)."""
    path = Path(run_dir) / CALIB_DIR / INDEX
    if not path.is_file():
        return None
    import json

    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise RunError(f"{path}: not valid JSON ({e}); delete {path.parent} and re-run the increment.") from None
    if raw.get("format") != FORMAT:
        raise RunError(f"{path}: not a cldet calibration index (format {raw.get('format')!r}).")
    return raw


def _parent_candidates(parent: Path, class_names: list[str]) -> list[Candidate]:
    idx = read_reservoir(parent)
    if idx is None:
        log.warning("parent run %s has no calibration reservoir; earlier classes are covered only by the "
                    "current increment's images", parent)
        return []
    pnames = idx["classes"]
    root = parent / CALIB_DIR
    out = []
    for e in idx["images"]:
        img = root / e["file"]
        if not img.is_file():
            raise RunError(f"{img} is listed in {root / INDEX} but missing; the parent's reservoir is damaged.")
        lab = read_labels(root / e["label"], len(pnames))
        ids = np.array([class_names.index(pnames[int(c)]) if pnames[int(c)] in class_names else -1 for c in lab[:, 0]],
                       np.int64)
        lab[:, 0] = ids
        lab = lab[ids >= 0]
        out.append(Candidate(img, lab, sorted({class_names[int(c)] for c in lab[:, 0]}), int(e["increment"]),
                             e.get("source", str(parent)), bytes=int(e["bytes"]), sha256=e["sha256"]))
    return out


def update_reservoir(
    run_dir: Path,
    parent_run_dir: Path | None,
    data_yaml: Path,
    class_names: list[str],
    max_images: int = 64,
    max_mb: float = 32.0,
    increment: int | None = None,
    seed: int = 0,
    images: str | Path | None = None,
) -> dict:
    """Write `run_dir/calib/` from the parent's reservoir plus a class-balanced sample of this increment's TRAIN
    images; returns the index (also saved as calib/index.json). Call it at the end of every train/learn.

    Labels are remapped to the model's class ids by name; images whose labels hold none of the model's classes
    are skipped. Eviction keeps every class covered where the caps allow and warns by name otherwise. `images`: the
    --images folder of a COCO .json `data_yaml`.
    """
    run_dir, data_yaml = Path(run_dir), Path(data_yaml)
    if max_images < 0 or max_mb < 0:
        raise DataError(f"reservoir caps must be >= 0 (got max_images={max_images}, max_mb={max_mb}).")
    if not run_dir.is_dir():
        raise RunError(f"run directory {run_dir} does not exist.")
    parent = Path(parent_run_dir) if parent_run_dir else None
    old = _parent_candidates(parent, class_names) if parent else []
    if increment is None:
        increment = 1 + max((c.increment for c in old), default=-1) if parent else 0
    new = _train_candidates(data_yaml, class_names, increment, images)
    chosen = select_balanced(old + new, class_names, max_images, max_mb, seed=seed)

    root = run_dir / CALIB_DIR
    tmp = run_dir / f".{CALIB_DIR}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "images").mkdir(parents=True)
    (tmp / "labels").mkdir()
    entries = []
    for n, c in enumerate(chosen):
        digest = c.sha256 or sha256_file(c.image)
        stem = f"{c.increment}_{digest[:12]}_{n:03d}"  # the counter keeps byte-identical images apart
        shutil.copyfile(c.image, tmp / "images" / f"{stem}{c.image.suffix.lower()}")
        rows = [f"{int(r[0])} {r[1]:.6f} {r[2]:.6f} {r[3]:.6f} {r[4]:.6f}" for r in c.labels]
        (tmp / "labels" / f"{stem}.txt").write_text("\n".join(rows) + ("\n" if rows else ""))
        entries.append({"file": f"images/{stem}{c.image.suffix.lower()}", "label": f"labels/{stem}.txt",
                        "sha256": digest, "bytes": c.bytes, "classes": c.classes, "increment": c.increment,
                        "source": c.source})
    covered = sorted({n for e in entries for n in e["classes"]}, key=class_names.index)
    missing = [n for n in class_names if n not in covered]
    index = {"format": FORMAT, "classes": list(class_names), "caps": {"max_images": max_images, "max_mb": max_mb},
             "images": entries, "bytes": sum(e["bytes"] for e in entries), "covered": covered, "missing": missing,
             "evicted": len(old) - sum(1 for c in chosen if c in old)}
    write_json_atomic(tmp / INDEX, index)
    shutil.rmtree(root, ignore_errors=True)
    tmp.rename(root)
    if missing and max_images > 0:
        log.warning("calibration reservoir of %s misses classes %s (caps: %d images, %.1f MB)",
                    run_dir, ", ".join(missing), max_images, max_mb)
    return index
