import pytest

from cldet.core.data import label_path_for, load_dataset, read_labels, resolve_classes
from cldet.core.errors import DataError
from tests.conftest import write_dataset


def test_load_relative_paths_and_labels(tmp_path):
    y = write_dataset(tmp_path / "d", ["cat", "dog"], {"a": "0 0.5 0.5 0.2 0.2\n1 0.1 0.1 0.1 0.1\n", "b": ""})
    ds = load_dataset(y)
    assert ds.names == ["cat", "dog"] and ds.nc == 2
    imgs = ds.images("train")
    assert [p.name for p in imgs] == ["a.jpg", "b.jpg"]
    labs = ds.labels("train")
    assert labs[imgs[0]].shape == (2, 5) and labs[imgs[1]].shape == (0, 5)
    assert label_path_for(imgs[0]) == tmp_path / "d" / "train" / "labels" / "a.txt"


def test_fingerprint_changes_with_labels(tmp_path):
    y = write_dataset(tmp_path / "d", ["cat"], {"a": "0 0.5 0.5 0.2 0.2\n"})
    ds = load_dataset(y)
    before = ds.fingerprint("train")
    (tmp_path / "d" / "train" / "labels" / "a.txt").write_text("0 0.5 0.5 0.3 0.2\n")
    assert ds.fingerprint("train") != before


@pytest.mark.parametrize(
    "text, msg",
    [
        ("0 0.5 0.5 0.2\n", "expected 5 columns"),
        ("0 0.5 0.5 0.2 0.2 0.1 0.1\n", "polygon"),
        ("x 0.5 0.5 0.2 0.2\n", "non-numeric"),
        ("2 0.5 0.5 0.2 0.2\n", "outside 0..1"),
        ("0 1.5 0.5 0.2 0.2\n", "not normalised"),
        ("0 0.5 0.5 0 0.2\n", "zero width"),
    ],
)
def test_malformed_labels_name_file_and_line(tmp_path, text, msg):
    p = tmp_path / "l.txt"
    p.write_text("0 0.5 0.5 0.2 0.2\n" + text)
    with pytest.raises(DataError, match=msg) as e:
        read_labels(p, nc=2)
    assert f"{p}:2" in str(e.value)


def test_missing_and_empty_splits(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(tmp_path / "nope.yaml")
    y = write_dataset(tmp_path / "d", ["cat"], {"a": ""})
    ds = load_dataset(y)
    with pytest.raises(DataError, match="no 'test' split"):
        ds.images("test")
    for f in (tmp_path / "d" / "val" / "images").iterdir():
        f.unlink()
    with pytest.raises(DataError, match="has no images"):
        ds.images("val")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: x\n")
    with pytest.raises(DataError, match="names"):
        load_dataset(bad)
    dup = tmp_path / "dup.yaml"
    dup.write_text("train: x\nnames: [a, a]\n")
    with pytest.raises(DataError, match="duplicate"):
        load_dataset(dup)


def test_resolve_classes():
    names = ["cat", "dog", "cow"]
    assert resolve_classes("dog,cat", names) == [1, 0]
    assert resolve_classes("2, cat", names) == [2, 0]
    with pytest.raises(DataError, match="unknown class 'horse'.*cat, dog, cow"):
        resolve_classes("horse", names)
    with pytest.raises(DataError, match="given twice"):
        resolve_classes("cat,0", names)
    with pytest.raises(DataError, match="outside"):
        resolve_classes("7", names)
    with pytest.raises(DataError, match="no class"):
        resolve_classes(" , ", names)


def test_mini_dataset_is_valid(mini_yaml):
    ds = load_dataset(mini_yaml)
    labs = ds.labels("train")
    assert len(labs) == 72 and sum(len(v) for v in labs.values()) > 500
    assert not set(p.name for p in ds.images("train")) & set(p.name for p in ds.images("val"))
