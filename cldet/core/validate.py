"""A dataset split checked whole before any work starts: every image decodes, every label line parses, and every
class the work needs has a label.

Training, evaluation and `cldet check` call this first, so a zero-byte or truncated image or a bad label line is
reported with its file (and line) before a run folder is created or an epoch runs, instead of after. Torch-free
(the board's `cldet check` uses it too); OpenCV decodes the images.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from .data import Dataset, label_path_for, read_labels
from .errors import DataError

__all__ = ["image_problem", "check_split"]

_TAIL = 1 << 16  # a JPEG's end marker must lie in its last 64 KiB (camera trailers may follow it)
_SHOWN = 5


def image_problem(path: Path) -> str | None:
    """What is wrong with one image file (None when it decodes): missing, empty, truncated, or not an image."""
    import cv2

    try:
        size = path.stat().st_size
    except OSError:
        return "does not exist (or is a broken link)"
    if size == 0:
        return "is empty (0 bytes)"
    with open(path, "rb") as f:
        head = f.read(8)
        f.seek(max(0, size - _TAIL))
        tail = f.read()
    suffix = path.suffix.lower()
    if suffix in (".jpg", ".jpeg"):
        if not head.startswith(b"\xff\xd8"):
            return "is not a JPEG (no start marker)"
        if b"\xff\xd9" not in tail:
            return "is truncated (no JPEG end marker)"
    elif suffix == ".png":
        if not head.startswith(b"\x89PNG"):
            return "is not a PNG (bad signature)"
        if b"IEND" not in tail[-64:]:
            return "is truncated (no PNG end chunk)"
    flag = cv2.IMREAD_REDUCED_GRAYSCALE_8 if suffix in (".jpg", ".jpeg", ".png", ".webp") else cv2.IMREAD_GRAYSCALE
    try:
        im = cv2.imread(str(path), flag)
    except cv2.error:
        im = None
    if im is None or im.size == 0:
        return "does not decode as an image"
    return None


def check_split(ds: Dataset, split: str, nc: int | None = None, require: list[str] | tuple[str, ...] = (),
                limit: int | None = None, need_labels: bool = True) -> Counter:
    """Check every image and label file of `split` (the first `limit` images when given); returns the label count
    per class name.

    DataError, naming the files, when an image does not decode, a label line is malformed (read_labels names the
    file and line), the split has no label at all (`need_labels`), or a class of `require` has none.
    """
    nc = ds.nc if nc is None else nc
    images = ds.images(split)[:limit]
    bad = [(img, p) for img in images if (p := image_problem(img))]
    if bad:
        shown = "; ".join(f"{img}: {p}" for img, p in bad[:_SHOWN])
        more = f" (and {len(bad) - _SHOWN} more)" if len(bad) > _SHOWN else ""
        raise DataError(f"{ds.yaml_path} [{split}]: {len(bad)} unreadable image(s): {shown}{more}. "
                        "Remove them or replace them with intact copies.")
    counts: Counter = Counter()
    for img in images:
        rows = ds.label_rows(img) if ds.coco else read_labels(label_path_for(img), nc)
        counts.update(ds.names[int(c)] for c in rows[:, 0])
    if need_labels and not counts:
        where = (f"{ds.coco[split].source} has no annotation for its {len(images)} images" if split in ds.coco else
                 f"the label files of all {len(images)} images are empty or missing (expected e.g. "
                 f"{label_path_for(images[0])})")
        raise DataError(f"{ds.yaml_path} [{split}]: no labels at all: {where}.")
    missing = [c for c in require if counts[c] == 0]
    if missing:
        raise DataError(f"{ds.yaml_path} [{split}]: no label of {', '.join(missing)}; every class to learn needs "
                        "labeled examples in the training data.")
    return counts
