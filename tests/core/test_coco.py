"""COCO json datasets: the same labels and the same mAP as the YOLO copy of the data; bad files refused by name."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from cldet.core.assets import CHESS_MINI
from cldet.core.data import load_dataset, read_labels, label_path_for
from cldet.core.errors import DataError
from cldet.core.evaluate import evaluate
from cldet.core.validate import check_split

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "docker" / "smoke"
NAMES = load_dataset(CHESS_MINI).names
CAT_IDS = [i + 1 if i < 5 else i + 2 for i in range(len(NAMES))]  # COCO ids start at 1 and may have gaps


def to_coco(images: list[Path], json_path: Path, file_names: list[str] | None = None) -> Path:
    """A COCO instances file with the YOLO labels of `images` (the way a converter writes one)."""
    imgs, anns = [], []
    for k, img in enumerate(images):
        h, w = cv2.imread(str(img)).shape[:2]
        imgs.append({"id": 100 + k, "file_name": (file_names or [p.name for p in images])[k], "width": w, "height": h})
        for row in read_labels(label_path_for(img), len(NAMES)):
            c, cx, cy, bw, bh = row.tolist()
            anns.append({"id": len(anns) + 1, "image_id": 100 + k, "category_id": CAT_IDS[int(c)], "iscrowd": 0,
                         "bbox": [(cx - bw / 2) * w, (cy - bh / 2) * h, bw * w, bh * h], "area": bw * w * bh * h})
    cats = [{"id": i, "name": n, "supercategory": "piece"} for i, n in zip(CAT_IDS, NAMES)]
    json_path.write_text(json.dumps({"images": imgs, "annotations": anns, "categories": cats[::-1]}))
    return json_path


def _split(name: str, n: int) -> list[Path]:
    return sorted((CHESS_MINI.parent / name / "images").iterdir())[:n]


@pytest.fixture()
def coco_yaml(tmp_path) -> Path:
    """chess-mini's first 8 train and 6 valid photos as COCO files in place of label files."""
    for split, folder, n in (("train", "train", 8), ("val", "valid", 6)):
        to_coco(_split(folder, n), tmp_path / f"instances_{split}.json")
    y = {"train": {"annotations": "instances_train.json", "images": str(CHESS_MINI.parent / "train" / "images")},
         "val": {"annotations": "instances_val.json", "images": str(CHESS_MINI.parent / "valid" / "images")}}
    (tmp_path / "coco.yaml").write_text(yaml.safe_dump(y))
    return tmp_path / "coco.yaml"


def test_coco_labels_equal_the_yolo_labels(coco_yaml):
    ds = load_dataset(coco_yaml)
    assert ds.names == NAMES  # categories in id order, whatever order the file lists them in
    assert ds.images("val") == _split("valid", 6)
    for img, rows in ds.labels("train").items():
        np.testing.assert_allclose(rows, read_labels(label_path_for(img), len(NAMES)), atol=1e-5)
    check_split(ds, "train", require=["white-pawn"])
    assert ds.fingerprint("train") != ds.fingerprint("val")


def test_same_map_from_coco_and_yolo_labels(coco_yaml):
    """The project's mAP (pycocotools' COCOeval underneath) of one model on the same photos, YOLO vs COCO labels."""
    from cldet.deploy.runtime import open_backend

    backend = open_backend(SMOKE / "model.int8.onnx", provider="cpu")
    names = json.loads((SMOKE / "manifest.json").read_text())["classes"]
    coco = evaluate(backend, load_dataset(coco_yaml), "val", names, backend.imgsz, progress=False).scores()
    ref_yaml = coco_yaml.parent / "yolo.yaml"
    ref_yaml.write_text(yaml.safe_dump({"names": NAMES, "val": str(coco_yaml.parent / "yolo-val" / "images")}))
    (coco_yaml.parent / "yolo-val").mkdir()
    shutil.copytree(CHESS_MINI.parent / "valid" / "images", coco_yaml.parent / "yolo-val" / "images",
                    ignore=lambda d, fs: [f for f in fs if Path(d, f) not in _split("valid", 6)])
    shutil.copytree(CHESS_MINI.parent / "valid" / "labels", coco_yaml.parent / "yolo-val" / "labels")
    yolo = evaluate(backend, load_dataset(ref_yaml), "val", names, backend.imgsz, progress=False).scores()
    assert coco["all"]["map50_95"] > 0.1
    assert abs(coco["all"]["map50_95"] - yolo["all"]["map50_95"]) < 0.005
    assert abs(coco["all"]["map50"] - yolo["all"]["map50"]) < 0.005


def test_a_single_json_with_its_images_beside_it(tmp_path):
    for img in _split("valid", 3):
        shutil.copy(img, tmp_path / img.name)
    ds = load_dataset(to_coco(_split("valid", 3), tmp_path / "_annotations.coco.json"))
    assert ds.names == NAMES and len(ds.images("train")) == len(ds.images("val")) == 3


def _edit(path: Path, fn) -> Path:
    raw = json.loads(path.read_text())
    fn(raw)
    path.write_text(json.dumps(raw))
    return path


@pytest.mark.parametrize("edit,msg", [
    (lambda r: r.pop("categories"), "'categories' is missing or empty"),
    (lambda r: r["images"][1].update(file_name="gone.jpg"), "image id 101: "),
    (lambda r: r["annotations"][0].update(category_id=99), "category_id 99 is not in 'categories'"),
    (lambda r: r["annotations"][0].update(image_id=7), "image_id 7 is not in 'images'"),
    (lambda r: r["annotations"][0].update(bbox=[1, 1, 0, 5]), "has no area"),
    (lambda r: r["categories"][0].update(name=r["categories"][1]["name"]), "duplicate category names"),
])
def test_bad_coco_files_are_named(coco_yaml, edit, msg):
    _edit(coco_yaml.parent / "instances_train.json", edit)
    with pytest.raises(DataError, match="instances_train.json: .*" + msg.replace("(", r"\(").replace(")", r"\)")):
        load_dataset(coco_yaml)


def test_not_json_and_different_categories(coco_yaml):
    (coco_yaml.parent / "instances_val.json").write_text("{nope")
    with pytest.raises(DataError, match="instances_val.json: not valid JSON"):
        load_dataset(coco_yaml)
    to_coco(_split("valid", 2), coco_yaml.parent / "instances_val.json")
    _edit(coco_yaml.parent / "instances_val.json", lambda r: r["categories"].pop())
    with pytest.raises(DataError, match="different categories"):
        load_dataset(coco_yaml)


def test_coco_detections_scored_by_cocoeval_match_the_projects_map(coco_yaml):
    """evaluate() also returns its detections in COCO results format, with the file's own image and category ids:
    pycocotools' COCOeval on them and the ground-truth file gives the project's mAP (within 0.005)."""
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from cldet.deploy.runtime import open_backend

    backend = open_backend(SMOKE / "model.int8.onnx", provider="cpu")
    names = json.loads((SMOKE / "manifest.json").read_text())["classes"]
    res = evaluate(backend, load_dataset(coco_yaml), "val", names, backend.imgsz, progress=False)
    assert res.detections and {d["category_name"] for d in res.detections} <= set(names)
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(coco_yaml.parent / "instances_val.json"))
        ev = COCOeval(gt, gt.loadRes(res.detections), "bbox")
        ev.params.catIds = [CAT_IDS[NAMES.index(n)] for n in names]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    assert abs(ev.stats[0] - res.groups["all"].map50_95) < 0.005, (ev.stats[0], res.groups["all"].map50_95)
    assert abs(ev.stats[1] - res.groups["all"].map50) < 0.005
