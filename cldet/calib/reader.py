"""Calibration image sets: from a run's reservoir, a user folder, or a dataset's TRAIN split.

Whatever the source, export checks two things before a single batch is built: which model classes the set
covers (warning by name about the rest) and that no image is also an evaluation image (same path or same
bytes), because calibrating on the evaluation images would make the host's drift numbers optimistic.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
from tqdm import tqdm

from ..core.data import IMAGE_SUFFIXES, label_path_for, read_labels
from ..core.processing import letterbox, load_image
from ..core.files import sha256_file
from ..core.errors import DataError
from .reservoir import CALIB_DIR, Candidate, _train_candidates, read_reservoir, select_balanced

__all__ = ["CalibrationSet", "from_reservoir", "from_folder", "from_dataset", "merge", "check_disjoint",
           "calibration_arrays"]

log = logging.getLogger("cldet")


@dataclass
class CalibrationSet:
    """Images to calibrate on and the model classes their labels show (unlabeled images count as unknown)."""

    images: list[Path]
    classes: list[str]  # model class names, head order
    image_classes: list[list[str]] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)

    @property
    def covered(self) -> list[str]:
        seen = {c for cs in self.image_classes for c in cs}
        return [c for c in self.classes if c in seen]

    @property
    def missing(self) -> list[str]:
        return [c for c in self.classes if c not in self.covered]

    def summary(self) -> dict:
        labelled = sum(1 for cs in self.image_classes if cs)
        return {"images": len(self.images), "labelled_images": labelled, "sources": self.sources,
                "covered": self.covered, "missing": self.missing,
                "per_class_images": {c: sum(c in cs for cs in self.image_classes) for c in self.classes}}

    def warn_missing(self) -> list[str]:
        """Log a warning naming each class no calibration image shows; returns those names."""
        if self.missing:
            log.warning("calibration set (%d images from %s) has no image of classes: %s. Their activation ranges "
                        "come from other classes' images; pass --calib DIR with images of them to be safe.",
                        len(self.images), ", ".join(self.sources) or "nowhere", ", ".join(self.missing))
        return self.missing


def from_reservoir(run_dir: str | Path, classes: list[str]) -> CalibrationSet:
    """The run's `calib/` reservoir (empty set when the run has none or was capped at zero)."""
    idx = read_reservoir(run_dir)
    if idx is None:
        return CalibrationSet([], list(classes), [], [])
    root = Path(run_dir) / CALIB_DIR
    imgs = [root / e["file"] for e in idx["images"]]
    for p in imgs:
        if not p.is_file():
            raise DataError(f"calibration image {p} is listed in {root / 'index.json'} but missing.")
    cls = [[c for c in e["classes"] if c in classes] for e in idx["images"]]
    return CalibrationSet(imgs, list(classes), cls, [f"reservoir {root}"])


def from_folder(folder: str | Path, classes: list[str]) -> CalibrationSet:
    """Every image under `folder`; YOLO labels beside them (images/ -> labels/), in model class ids, are optional."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"calibration folder {folder} does not exist or is not a folder.")
    imgs = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not imgs:
        raise DataError(f"calibration folder {folder} has no images ({', '.join(IMAGE_SUFFIXES)}).")
    cls = []
    for p in imgs:
        lab = read_labels(label_path_for(p), len(classes))
        cls.append(sorted({classes[int(c)] for c in lab[:, 0]}, key=classes.index))
    return CalibrationSet(imgs, list(classes), cls, [f"folder {folder}"])


def from_dataset(data_yaml: str | Path, classes: list[str], max_images: int, seed: int = 0,
                 images: str | Path | None = None) -> CalibrationSet:
    """A class-balanced sample of a dataset's TRAIN split (for runs without a reservoir); `images`: the --images
    folder of a COCO .json."""
    cands: list[Candidate] = _train_candidates(Path(data_yaml), list(classes), 0, images)
    chosen = select_balanced(cands, list(classes), max_images, max_mb=float("inf"), seed=seed)
    return CalibrationSet([c.image for c in chosen], list(classes), [c.classes for c in chosen],
                          [f"train split of {data_yaml}"])


def merge(*sets: CalibrationSet, max_images: int | None = None) -> CalibrationSet:
    """Union of sets (first occurrence of a path wins), optionally capped, keeping their order."""
    seen, imgs, cls, src = set(), [], [], []
    for s in sets:
        src += s.sources
        for p, c in zip(s.images, s.image_classes):
            if p.resolve() not in seen:
                seen.add(p.resolve())
                imgs.append(p)
                cls.append(c)
    if max_images is not None:
        imgs, cls = imgs[:max_images], cls[:max_images]
    return CalibrationSet(imgs, list(sets[0].classes) if sets else [], cls, src)


def check_disjoint(calib: CalibrationSet, eval_images: list[Path]) -> None:
    """Refuse a calibration set that shares an image (by path or by sha256 of the bytes) with the evaluation set."""
    eval_paths = {p.resolve() for p in eval_images}
    by_path = [p for p in calib.images if p.resolve() in eval_paths]
    sizes = {p.stat().st_size for p in eval_images}
    maybe = [p for p in calib.images if p.stat().st_size in sizes and p not in by_path]  # hash only plausible ones
    clash = by_path
    if maybe:
        eval_hash = {sha256_file(p): p for p in eval_images if p.stat().st_size in {q.stat().st_size for q in maybe}}
        clash += [p for p in maybe if sha256_file(p) in eval_hash]
    if clash:
        raise DataError(
            f"{len(clash)} calibration image(s) are also evaluation images (e.g. {clash[0]}); calibrating on them "
            "would hide INT8 drift. Use training images for calibration (remove them from --calib)."
        )


def calibration_arrays(calib: CalibrationSet, imgsz: int, progress: bool = True) -> Iterator[np.ndarray]:
    """Letterboxed (1, 3, S, S) float32 inputs, exactly as the deploy path preprocesses (load_image errors name the
    file: wrong channel count, unreadable)."""
    if not calib.images:
        raise DataError("the calibration set is empty: the run has no reservoir and no --calib folder was given.")
    for p in tqdm(calib.images, desc="calibration", unit="img", disable=not progress):
        x, _ = letterbox(load_image(p), imgsz)
        yield x[None]
