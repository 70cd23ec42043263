"""`--data instances.json --images DIR`: a COCO file whose image file_names resolve against a folder elsewhere.

The fixture is made here: three small images drawn with numpy, written with cv2 into `imgs/`, and a COCO file in
`ann/` (a different folder, as COCO's own `annotations/` + `train2017/` layout has it). Nothing trains.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from cldet.cli import app
from cldet.core.data import load_dataset
from cldet.core.errors import CldetError, DataError

runner = CliRunner()
BOXES = {  # file -> (category id, [x, y, w, h]) in pixels of a 64x48 image
    "a.jpg": [(1, [4, 4, 20, 16]), (3, [30, 10, 24, 30])],
    "b.jpg": [(3, [10, 8, 40, 30])],
    "c.png": [],
}


@pytest.fixture()
def coco(tmp_path) -> tuple[Path, Path]:
    """(instances.json in ann/, images folder imgs/): categories with a gap in their ids, one image without boxes."""
    imgs, ann = tmp_path / "imgs", tmp_path / "ann"
    imgs.mkdir()
    ann.mkdir()
    rng = np.random.default_rng(0)
    images, anns = [], []
    for k, (name, boxes) in enumerate(BOXES.items()):
        cv2.imwrite(str(imgs / name), rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
        images.append({"id": 10 + k, "file_name": name, "width": 64, "height": 48})
        for cat, box in boxes:
            anns.append({"id": len(anns) + 1, "image_id": 10 + k, "category_id": cat, "bbox": box,
                         "area": box[2] * box[3], "iscrowd": 0})
    cats = [{"id": 3, "name": "dog"}, {"id": 1, "name": "cat"}]
    (ann / "instances.json").write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return ann / "instances.json", imgs


def _edit(path: Path, fn) -> Path:
    raw = json.loads(path.read_text())
    fn(raw)
    path.write_text(json.dumps(raw))
    return path


def test_images_folder_resolves_the_file_names(coco):
    js, imgs = coco
    ds = load_dataset(js, images=imgs)
    assert ds.names == ["cat", "dog"]  # categories in id order
    assert ds.images("train") == ds.images("val") == sorted(imgs.resolve() / n for n in BOXES)
    labels = ds.labels("train")
    assert sum(len(r) for r in labels.values()) == 3
    a = labels[imgs.resolve() / "a.jpg"]
    np.testing.assert_allclose(a[0], [0, 14 / 64, 12 / 48, 20 / 64, 16 / 48], atol=1e-6)
    assert a[1, 0] == 1  # category id 3 is class 1 (dog)
    assert ds.images_dir == imgs.resolve()


def test_without_images_the_files_are_looked_for_beside_the_json(coco):
    js, _ = coco
    with pytest.raises(DataError, match=r"instances.json: 3 image\(s\) without a file under .*ann"):
        load_dataset(js)


def test_images_with_a_yaml_is_a_usage_error(coco, tmp_path):
    js, imgs = coco
    y = tmp_path / "data.yaml"
    y.write_text(yaml.safe_dump({"train": {"annotations": str(js), "images": str(imgs)},
                                 "val": {"annotations": str(js), "images": str(imgs)}}))
    with pytest.raises(CldetError, match=r"--images .* is only for a COCO .json --data; .*data.yaml is not one") as e:
        load_dataset(y, images=imgs)
    assert type(e.value) is CldetError and e.value.exit_code == 2


@pytest.mark.parametrize("what,msg", [("missing", "folder does not exist"), ("file", "is a file")])
def test_images_not_a_folder(coco, what, msg):
    js, imgs = coco
    bad = imgs / "nope" if what == "missing" else imgs / "a.jpg"
    with pytest.raises(DataError, match=f"--images .*{what == 'file' and 'a.jpg' or 'nope'}: {msg}.*instances.json"):
        load_dataset(js, images=bad)


@pytest.mark.parametrize("edit,msg", [
    (lambda r: r.pop("categories"), "'categories' is missing or empty"),
    (lambda r: r.update(categories=[]), "'categories' is missing or empty"),
    (lambda r: r["annotations"][0].update(category_id=2), r"annotation 1: category_id 2 is not in 'categories' "
                                                          r"\(ids \[1, 3\]\)"),
    (lambda r: r["images"][1].update(file_name="gone.jpg"), r"1 image\(s\) without a file under .*imgs: image id 11: "
                                                            r".*gone.jpg"),
    (lambda r: r["annotations"][0].update(image_id=99), "annotation 1: image_id 99 is not in 'images'"),
])
def test_bad_coco_file_is_named(coco, edit, msg):
    js, imgs = coco
    _edit(js, edit)
    with pytest.raises(DataError, match=r".*instances.json: " + msg) as e:
        load_dataset(js, images=imgs)
    assert e.value.exit_code == 3


def _snapshot(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize("data,edit,images,code,msg", [
    ("yaml", None, "{imgs}", 2, "is only for a COCO .json --data"),
    ("json", None, "{root}/nope", 3, "folder does not exist"),
    ("json", lambda r: r.pop("categories"), "{imgs}", 3, "'categories' is missing"),
    ("json", lambda r: r["annotations"][0].update(category_id=2), "{imgs}", 3, "category_id 2 is not in"),
    ("json", lambda r: r["images"][0].update(file_name="gone.jpg"), "{imgs}", 3, "image(s) without a file"),
])
def test_train_refuses_before_writing(coco, tmp_path, monkeypatch, data, edit, images, code, msg):
    """The CLI: the documented exit code, the message, and nothing written (no --out folder, nothing else)."""
    js, imgs = coco
    if edit is not None:
        _edit(js, edit)
    y = tmp_path / "data.yaml"
    y.write_text(yaml.safe_dump({"names": ["cat", "dog"], "train": str(imgs), "val": str(imgs)}))
    data = y if data == "yaml" else js
    monkeypatch.chdir(tmp_path)
    before = _snapshot(tmp_path)
    r = runner.invoke(app, ["train", "--data", str(data), "--out", str(tmp_path / "out"), "--no-init", "--epochs",
                            "1", "--imgsz", "64", "--batch", "2", "--workers", "0", "--images",
                            images.format(root=tmp_path, imgs=imgs)])
    assert r.exit_code == code, r.output
    assert msg in r.output and "Traceback" not in r.output
    assert _snapshot(tmp_path) == before


def test_train_plan_carries_the_images_folder_to_evaluation(coco, tmp_path):
    """Planned, not run: the training data, the default evaluation data and what a --resume repeats all hold
    --images."""
    from cldet.detector.config import TrainConfig
    from cldet.detector.jobs import TrainJob
    from cldet.detector.plan import plan_train

    js, imgs = coco
    plan = plan_train(TrainJob(data=js, images=imgs, out=tmp_path / "out", no_init=True), TrainConfig(imgsz=64))
    assert plan.names == ["cat", "dog"] and plan.data.images_dir == imgs.resolve()
    assert plan.eval_yaml == js and plan.eval_images == imgs.resolve()
    assert plan.options["images"] == str(imgs.resolve())
    assert not (tmp_path / "out").exists()
    plain = plan_train(TrainJob(data=_beside(js, imgs), out=tmp_path / "o2", no_init=True), TrainConfig(imgsz=64))
    assert "images" not in plain.options and plain.eval_images is None  # runs begun before --images still resume


def _beside(js: Path, imgs: Path) -> Path:
    """The same COCO file copied beside its images (today's layout without --images)."""
    dst = imgs / "instances.json"
    dst.write_text(js.read_text())
    return dst
