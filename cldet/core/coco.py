"""COCO json datasets (instances files, as `pycocotools` reads them), as the same `Dataset` the YOLO reader yields.

Two ways to point at one (docs in README "Using it"):
  - `--data instances.json [--images DIR]`: one annotation file; image `file_name`s are relative to DIR, or without
    --images to the json's folder (Roboflow's `_annotations.coco.json` layout). It serves as the train and the val
    split.
  - a dataset yaml whose splits are mappings:
        train: {annotations: annotations/instances_train.json, images: images/train}
        val:   {annotations: annotations/instances_val.json, images: images/val}
    (paths relative to the yaml's folder, or to its `path:`). `names` may be left out; given, it must equal the
    categories.

Class ids are the categories sorted by their id (COCO ids may have gaps: 1, 2, 3, 5, ...); each box becomes a YOLO
row (class, cx, cy, w, h normalised by the image's width and height), so evaluation, staging, calibration and `check`
work unchanged. Crowd annotations (`iscrowd: 1`) are left out. Everything is checked at load, naming the file: the
json parses, categories exist and have unique names, every annotation's category and image exist, every image file
exists, every box has an area. numpy + pycocotools only (the board reads COCO data too).
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np

from .errors import DataError

__all__ = ["CocoSplit", "read_coco", "is_coco_entry"]

_SHOWN = 5


class CocoSplit:
    """One annotation file read: category names in class-id order, image files, YOLO rows per image."""

    def __init__(self, names: list[str], rows: dict[Path, np.ndarray], source: Path,
                 image_ids: dict[Path, int] | None = None, category_ids: list[int] | None = None) -> None:
        self.names, self.rows, self.source = names, rows, source
        self.image_ids = image_ids or {}  # image file -> its COCO image id
        self.category_ids = category_ids or list(range(len(names)))  # class index -> its COCO category id

    @property
    def images(self) -> list[Path]:
        return sorted(self.rows)


def is_coco_entry(entry: object) -> bool:
    """A yaml split entry that names a COCO annotation file (a mapping with 'annotations')."""
    return isinstance(entry, dict) and "annotations" in entry


def read_coco(json_path: Path, images_dir: Path) -> CocoSplit:
    """Read and check one COCO instances file; image file names resolve against `images_dir`."""
    from pycocotools.coco import COCO

    json_path = Path(json_path)
    if not json_path.is_file():
        raise DataError(f"COCO annotation file {json_path} does not exist.")
    try:
        raw = json.loads(json_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{json_path}: not valid JSON ({e}).") from None
    if not isinstance(raw, dict):
        raise DataError(f"{json_path}: expected a COCO instances object with 'images', 'annotations', 'categories'.")
    for key in ("images", "categories"):
        if not isinstance(raw.get(key), list) or not raw[key]:
            raise DataError(f"{json_path}: '{key}' is missing or empty; a COCO detection file lists its {key}.")
    raw.setdefault("annotations", [])
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
            coco = COCO()
            coco.dataset = raw
            coco.createIndex()
    except (KeyError, TypeError) as e:
        raise DataError(f"{json_path}: malformed COCO entry (missing or wrong field {e}).") from None
    cats = sorted(coco.cats.values(), key=lambda c: c["id"])
    names = [str(c.get("name", "")) for c in cats]
    if any(not n for n in names):
        raise DataError(f"{json_path}: a category has no name.")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise DataError(f"{json_path}: duplicate category names {dup}.")
    cls_of = {c["id"]: k for k, c in enumerate(cats)}
    files: dict[int, Path] = {}
    missing = []
    for img in coco.imgs.values():
        f = (Path(images_dir) / str(img.get("file_name", ""))).resolve()
        if not img.get("file_name") or not f.is_file():
            missing.append(f"image id {img.get('id')}: {f}")
        if not (isinstance(img.get("width"), (int, float)) and img["width"] > 0 and isinstance(img.get("height"),
                                                                                               (int, float))
                and img["height"] > 0):
            raise DataError(f"{json_path}: image id {img.get('id')} has no positive 'width' and 'height'.")
        files[img["id"]] = f
    if missing:
        more = f" (and {len(missing) - _SHOWN} more)" if len(missing) > _SHOWN else ""
        raise DataError(f"{json_path}: {len(missing)} image(s) without a file under {images_dir}: "
                        f"{'; '.join(missing[:_SHOWN])}{more}.")
    rows: dict[Path, list] = {f: [] for f in files.values()}
    for ann in coco.dataset["annotations"]:
        aid = ann.get("id")
        if ann.get("category_id") not in cls_of:
            raise DataError(f"{json_path}: annotation {aid}: category_id {ann.get('category_id')!r} is not in "
                            f"'categories' (ids {sorted(cls_of)}).")
        if ann.get("image_id") not in files:
            raise DataError(f"{json_path}: annotation {aid}: image_id {ann.get('image_id')!r} is not in 'images'.")
        if ann.get("iscrowd", 0):
            continue
        box = ann.get("bbox")
        if not (isinstance(box, list) and len(box) == 4 and all(isinstance(v, (int, float)) for v in box)):
            raise DataError(f"{json_path}: annotation {aid}: bbox {box!r} is not [x, y, width, height].")
        img = coco.imgs[ann["image_id"]]
        w0, h0 = float(img["width"]), float(img["height"])
        x1, y1 = max(0.0, box[0]), max(0.0, box[1])
        x2, y2 = min(w0, box[0] + box[2]), min(h0, box[1] + box[3])
        if x2 <= x1 or y2 <= y1:
            raise DataError(f"{json_path}: annotation {aid}: bbox {box} has no area inside its "
                            f"{int(w0)}x{int(h0)} image.")
        rows[files[ann["image_id"]]].append([cls_of[ann["category_id"]], (x1 + x2) / 2 / w0, (y1 + y2) / 2 / h0,
                                             (x2 - x1) / w0, (y2 - y1) / h0])
    return CocoSplit(names, {f: np.asarray(r, np.float32).reshape(-1, 5) for f, r in rows.items()}, json_path,
                     image_ids={f: i for i, f in files.items()}, category_ids=[c["id"] for c in cats])
