import numpy as np

from cldet.core.data import load_dataset
from cldet.detector.staging import stage_dataset
from tests.conftest import write_dataset


def test_staging_keeps_only_used_classes_in_model_ids(tmp_path):
    y = write_dataset(tmp_path / "d", ["cat", "dog"], {"a": "0 0.5 0.5 0.2 0.2\n1 0.1 0.1 0.1 0.1\n"})
    staged = stage_dataset(load_dataset(y), tmp_path / "s", ["dog", "cat"], ["cat"], splits=("train",), progress=False)
    assert (tmp_path / "s" / "train" / "labels" / "a.txt").read_text() == "1 0.500000 0.500000 0.200000 0.200000\n"
    assert staged.ignored == {"dog": 1} and staged.used == {"cat": 1}


def test_replayed_image_held_by_the_new_data_gets_both_label_sets(tmp_path):
    """A stored old image that the new data also holds is one training image with old + new labels, not two
    contradicting copies (one calling the old objects background)."""
    y = write_dataset(tmp_path / "d", ["old", "new"], {"a": "0 0.5 0.5 0.2 0.2\n1 0.2 0.2 0.1 0.1\n", "b": "1 0.3 0.3 0.1 0.1\n"})
    data = load_dataset(y)
    stored = tmp_path / "replay" / "a.jpg"
    stored.parent.mkdir()
    stored.write_bytes(data.images("train")[0].read_bytes())
    old_rows = np.array([[0, 0.5, 0.5, 0.2, 0.2]])
    staged = stage_dataset(data, tmp_path / "s", ["old", "new"], ["new"], splits=("train",),
                           extra_train=[(stored, old_rows)], progress=False)
    labels = sorted((tmp_path / "s" / "train" / "labels").iterdir())
    assert [p.name for p in labels] == ["a.txt", "b.txt"] and staged.images["train"] == 2
    assert sorted(r.split()[0] for r in labels[0].read_text().splitlines()) == ["0", "1"]
    assert staged.used == {"new": 2, "old": 1}
