"""Datasets in Ultralytics YOLO format (and COCO json, read by cldet.core.coco into the same `Dataset`): reading,
validation, class-name resolution, fingerprints.

Pure Python + numpy (no torch): the board's `cldet check` reads evaluation data through this module.
A dataset is a yaml with `names` and split entries (`train`, `val`, `test`) that point at image
folders (or lists of them); labels live beside them in a `labels` folder (`.../images/x.jpg` ->
`.../labels/x.txt`, one `class cx cy w h` line per box, coordinates normalised to [0, 1]).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from .coco import CocoSplit, is_coco_entry, read_coco
from .errors import CldetError, DataError

__all__ = [
    "IMAGE_SUFFIXES",
    "Dataset",
    "load_dataset",
    "label_path_for",
    "read_labels",
    "resolve_classes",
    "class_map",
    "require_classes",
]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
SPLITS = ("train", "val", "test")
_COORD_TOL = 1e-3  # exporters round; a hair outside [0, 1] is clipped, more is an error


@dataclass
class Dataset:
    """A parsed dataset yaml. `splits` maps a split name to its image folders (absolute)."""

    yaml_path: Path
    names: list[str]
    splits: dict[str, list[Path]] = field(default_factory=dict)
    coco: dict[str, CocoSplit] = field(default_factory=dict)  # split -> its COCO annotations (COCO datasets)
    images_dir: Path | None = None  # `--images DIR` of a COCO .json (None: the data file says where its images are)

    @property
    def nc(self) -> int:
        return len(self.names)

    def images(self, split: str) -> list[Path]:
        """Sorted image files of a split; a clear error when the split is missing or empty."""
        if split in self.coco:
            files = self.coco[split].images
            if not files:
                raise DataError(f"{self.coco[split].source}: '{split}' lists no images.")
            return files
        if split not in self.splits:
            raise DataError(
                f"{self.yaml_path}: no '{split}' split (has: {', '.join(self.splits) or 'none'}). "
                f"Add a '{split}:' entry pointing at an image folder."
            )
        files: list[Path] = []
        for folder in self.splits[split]:
            if folder.is_file() and folder.suffix == ".txt":  # Ultralytics also allows a list file
                files += [Path(line.strip()) for line in folder.read_text().splitlines() if line.strip()]
                continue
            if not folder.is_dir():
                raise DataError(f"{self.yaml_path}: '{split}' folder {folder} does not exist.")
            files += [p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES]
        if not files:
            raise DataError(
                f"{self.yaml_path}: '{split}' has no images under {', '.join(map(str, self.splits[split]))} "
                f"(looked for {', '.join(IMAGE_SUFFIXES)})."
            )
        return sorted(files)

    def labels(self, split: str) -> dict[Path, np.ndarray]:
        """Validated labels of every image in a split: {image: (n, 5) array of class, cx, cy, w, h}."""
        return {img: self.label_rows(img) for img in self.images(split)}

    def coco_ids(self, img: Path, k: int) -> tuple[int, list[int]]:
        """(image id, category id per class index) for COCO-format results: the dataset's own ids for COCO data,
        else the image's position `k` in its split and the class index."""
        for split in self.coco.values():
            if img in split.image_ids:
                return split.image_ids[img], split.category_ids
        return k, list(range(self.nc))

    def label_rows(self, img: Path) -> np.ndarray:
        """One image's labels as (n, 5) rows of class, cx, cy, w, h (normalised): from its YOLO label file, or from
        the COCO annotations that list it."""
        if self.coco:
            for split in self.coco.values():
                if img in split.rows:
                    return split.rows[img].copy()
            return np.zeros((0, 5), np.float32)
        return read_labels(label_path_for(img), self.nc)

    def fingerprint(self, split: str) -> str:
        """sha256 over image names, sizes and label contents: identifies the data an increment saw."""
        h = hashlib.sha256()
        for img in self.images(split):
            h.update(img.name.encode())
            h.update(str(img.stat().st_size).encode())
            if self.coco:
                h.update(self.label_rows(img).tobytes())
                continue
            lab = label_path_for(img)
            if lab.exists():
                h.update(lab.read_bytes())
        return h.hexdigest()


def _names_from(raw: object, where: Path) -> list[str]:
    if isinstance(raw, dict):
        try:
            keys = sorted(int(k) for k in raw)
        except (TypeError, ValueError):
            raise DataError(f"{where}: 'names' keys must be integers 0..n-1.") from None
        if keys != list(range(len(keys))):
            raise DataError(f"{where}: 'names' ids must be 0..{len(keys) - 1} without gaps, got {keys}.")
        names = [str(raw[k] if k in raw else raw[str(k)]) for k in keys]
    elif isinstance(raw, list):
        names = [str(n) for n in raw]
    else:
        raise DataError(f"{where}: 'names' must be a list or an id->name mapping.")
    if not names:
        raise DataError(f"{where}: 'names' is empty.")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise DataError(f"{where}: duplicate class names {dup}.")
    return names


def load_dataset(path: str | Path, images: str | Path | None = None) -> Dataset:
    """Parse a YOLO dataset yaml; paths resolve against its `path:` key or else the yaml's folder.

    A COCO `.json` is read with its images in `images` (`--images DIR`), else beside it; a yaml names its own image
    folders, so `images` with a yaml is refused."""
    path = Path(path)
    if images is not None and path.suffix.lower() != ".json":
        raise CldetError(f"--images {images} is only for a COCO .json --data; {path} is not one (a dataset yaml names "
                         "its image folders itself: train: {annotations: x.json, images: DIR}). Leave --images out.")
    if not path.is_file():
        raise DataError(f"dataset yaml {path} does not exist.")
    if path.suffix.lower() == ".json":
        return _load_coco_json(path, None if images is None else Path(images))
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise DataError(f"{path}: not valid YAML ({e}).") from None
    if not isinstance(raw, dict) or not ("names" in raw or any(is_coco_entry(raw.get(k)) for k in SPLITS)):
        raise DataError(f"{path}: expected a mapping with 'names' and split entries (train/val).")
    root = (path.parent / str(raw["path"])).resolve() if raw.get("path") else path.parent.resolve()
    splits: dict[str, list[Path]] = {}
    coco: dict[str, CocoSplit] = {}
    for split in SPLITS:
        entry = raw.get(split)
        if entry is None:
            continue
        if is_coco_entry(entry):
            ann = (root / str(entry["annotations"])).resolve()
            images = (root / str(entry["images"])).resolve() if entry.get("images") else ann.parent
            coco[split] = read_coco(ann, images)
            splits[split] = [images]
            continue
        entries = entry if isinstance(entry, list) else [entry]
        splits[split] = [(root / str(e)).resolve() for e in entries]
    if coco and len(coco) != len(splits):
        raise DataError(f"{path}: mixes COCO splits ({', '.join(coco)}) with YOLO folders; use one format.")
    names = [c.names for c in coco.values()]
    if any(n != names[0] for n in names):
        raise DataError(f"{path}: the COCO files of {', '.join(coco)} list different categories.")
    if names and "names" in raw and _names_from(raw["names"], path) != names[0]:
        raise DataError(f"{path}: 'names' {_names_from(raw['names'], path)} differ from the COCO categories "
                        f"{names[0]}; leave 'names' out to use the categories.")
    return Dataset(yaml_path=path.resolve(), names=names[0] if names else _names_from(raw["names"], path),
                   splits=splits, coco=coco)


def _load_coco_json(path: Path, images: Path | None) -> Dataset:
    """`--data instances.json [--images DIR]`: one COCO file, its images in DIR (default: beside it), used as the
    train and the val split."""
    if images is not None and not images.is_dir():
        raise DataError(f"--images {images}: " + ("is a file; give the folder that holds the images of "
                                                  if images.exists() else "folder does not exist; it should hold the "
                                                  "images of ") + f"{path}.")
    folder = images.resolve() if images is not None else path.parent
    split = read_coco(path, folder)
    return Dataset(yaml_path=path.resolve(), names=split.names, splits={"train": [folder], "val": [folder]},
                   coco={"train": split, "val": split}, images_dir=folder if images is not None else None)


def label_path_for(image: Path) -> Path:
    """`.../images/a/b.jpg` -> `.../labels/a/b.txt` (the last `images` folder in the path), as Ultralytics does."""
    parts = list(image.parts)
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            return Path(*parts).with_suffix(".txt")
    return image.with_suffix(".txt")


def read_labels(path: Path, nc: int) -> np.ndarray:
    """Read one YOLO label file into an (n, 5) float32 array; a missing file means no boxes.

    Raises DataError naming the file and line for: wrong column count, non-numbers, a class id
    outside 0..nc-1, coordinates outside [0, 1], or a box with no area.
    """
    if not path.exists():
        return np.zeros((0, 5), np.float32)
    rows = []
    for ln, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        cols = line.split()
        if len(cols) != 5:
            raise DataError(
                f"{path}:{ln}: expected 5 columns 'class cx cy w h', got {len(cols)}"
                + (" (polygon/segment labels are not supported)" if len(cols) > 5 else "")
            )
        try:
            vals = [float(c) for c in cols]
        except ValueError:
            raise DataError(f"{path}:{ln}: non-numeric value in {line.strip()!r}") from None
        c = vals[0]
        if c != int(c):
            raise DataError(f"{path}:{ln}: class id {cols[0]} is not an integer (expected 0..{nc - 1}).")
        if not 0 <= c < nc:
            raise DataError(f"{path}:{ln}: class id {cols[0]} is outside 0..{nc - 1} of the dataset yaml.")
        box = np.array(vals[1:])
        if (box < -_COORD_TOL).any() or (box > 1 + _COORD_TOL).any():
            raise DataError(f"{path}:{ln}: coordinates {cols[1:]} are not normalised to [0, 1].")
        if box[2] <= 0 or box[3] <= 0:
            raise DataError(f"{path}:{ln}: box has zero width or height.")
        rows.append([c, *np.clip(box, 0, 1)])
    return np.asarray(rows, np.float32).reshape(-1, 5)


def resolve_classes(requested: str | list[str], names: list[str], what: str = "class") -> list[int]:
    """Map a comma list (or list) of names or integer ids to dataset ids, in the order given.

    Unknown names, out-of-range ids and duplicates are errors that list the valid names.
    """
    items = [s.strip() for s in requested.split(",")] if isinstance(requested, str) else [str(s) for s in requested]
    items = [s for s in items if s]
    if not items:
        raise DataError(f"no {what} names given.")
    ids: list[int] = []
    for item in items:
        if item in names:
            idx = names.index(item)
        elif item.lstrip("-").isdigit():
            idx = int(item)
            if not 0 <= idx < len(names):
                raise DataError(f"{what} id {idx} is outside 0..{len(names) - 1}; names: {', '.join(names)}")
        else:
            raise DataError(f"unknown {what} {item!r}; the dataset has: {', '.join(names)}")
        if idx in ids:
            raise DataError(f"{what} {names[idx]!r} is given twice.")
        ids.append(idx)
    return ids


def class_map(model_names: list[str], data_names: list[str]) -> np.ndarray:
    """Dataset class id -> model class id, matched by name (-1 where the model has no class of that name)."""
    return np.array([model_names.index(n) if n in model_names else -1 for n in data_names], np.int64)


def require_classes(model_names: list[str], data: Dataset, source: str = "the model") -> None:
    """Scoring a model on data that lacks some of its classes is an error, not a silent zero."""
    missing = [n for n in model_names if n not in data.names]
    if missing:
        raise DataError(
            f"{data.yaml_path}: its class names lack {missing} of the classes of {source} ({model_names}); "
            f"its names are {data.names}. Evaluate with a dataset yaml whose 'names' include every class of the model."
        )
