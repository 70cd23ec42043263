"""The ablation harness drives cldet.protocol.reuse: a variant's steps are learned, resumed or reused."""

from __future__ import annotations

from types import SimpleNamespace


def test_run_variant_learns_resumes_and_reuses(tmp_path, monkeypatch):
    import benchmarks.ablation as ablation

    calls = []

    def learn(**kw):
        calls.append((kw["out"].name, kw["from_run"].name, kw["resume"], kw.get("box_weight"), kw["old_labels"]))
        kw["out"].mkdir(parents=True, exist_ok=True)
        (kw["out"] / "lineage.json").write_text("{}")

    monkeypatch.setattr(ablation.api, "learn", learn)
    p = SimpleNamespace(steps=[["a"], ["b"], ["c"]], dataset=tmp_path / "d.yaml")
    # step 1 was interrupted after an epoch: it is continued (--resume), then step 2 starts from it
    (tmp_path / "abl-box" / "step1" / "train" / "weights").mkdir(parents=True)
    (tmp_path / "abl-box" / "step1" / "pending.json").write_text("{}")
    (tmp_path / "abl-box" / "step1" / "train" / "weights" / "state.pt").write_text("w")
    last = ablation.run_variant(p, tmp_path, "abl-box", {"box_weight": 1.0})
    assert last == tmp_path / "abl-box" / "step2"
    assert calls == [("step1", "base", True, 1.0, False), ("step2", "step1", False, 1.0, False)]
    ablation.run_variant(p, tmp_path, "abl-box", {"box_weight": 1.0})  # finished: reused, nothing learned again
    assert len(calls) == 2


def test_oracle_variant_reads_the_old_labels_and_no_other_does(tmp_path, monkeypatch):
    import benchmarks.ablation as ablation

    seen = {}

    def learn(**kw):
        seen[kw["out"].parent.name] = (kw["old_labels"], kw.get("method"))
        kw["out"].mkdir(parents=True, exist_ok=True)
        (kw["out"] / "lineage.json").write_text("{}")

    monkeypatch.setattr(ablation.api, "learn", learn)
    p = SimpleNamespace(steps=[["a"], ["b"]], dataset=tmp_path / "d.yaml")
    for key, (_, folder, over) in ablation.VARIANTS.items():
        ablation.run_variant(p, tmp_path, folder, over)
    assert seen.pop("abl-oracle") == (True, "finetune")
    assert seen and all(old is False for old, _ in seen.values())


def test_second_teacher_variant_takes_each_steps_finetune_run(tmp_path, monkeypatch):
    import pytest

    import benchmarks.ablation as ablation

    seen = []

    def learn(**kw):
        seen.append((kw["out"].parent.name, kw.get("new_teacher")))
        kw["out"].mkdir(parents=True, exist_ok=True)
        (kw["out"] / "lineage.json").write_text("{}")

    monkeypatch.setattr(ablation.api, "learn", learn)
    p = SimpleNamespace(steps=[["a"], ["b"]], dataset=tmp_path / "d.yaml")
    _, folder, over = ablation.VARIANTS["second-teacher"]
    with pytest.raises(SystemExit, match="not finished"):  # no fine-tuning run to learn from yet
        ablation.run_variant(p, tmp_path, folder, over)
    assert seen == []
    ablation.run_variant(p, tmp_path, *ablation.VARIANTS["finetune"][1:])
    ablation.run_variant(p, tmp_path, folder, over)
    assert seen == [("finetune", None), ("abl-second-teacher", str(tmp_path / "finetune" / "step1"))]


def test_a_new_variant_adds_its_row_to_the_earlier_table(tmp_path):
    """Running one more variant keeps the rows measured before (same study), replaces a row run again, and starts
    over when the settings differ (threads aside)."""
    import json

    from benchmarks.ablation import merged_rows

    train = {"epochs": 12, "imgsz": 320, "threads": None}
    earlier = {"protocol": "2step", "dataset": "chess13", "seed": 0, "train": train,
               "rows": {"default": {"v": 1}, "box": {"v": 2}}}
    path = tmp_path / "ablation.json"
    path.write_text(json.dumps(earlier))
    now = {**earlier, "train": {**train, "threads": 1}, "rows": {"box": {"v": 3}, "oracle": {"v": 4}}}
    assert merged_rows(path, now) == {"default": {"v": 1}, "box": {"v": 3}, "oracle": {"v": 4}}
    other = {**now, "train": {**train, "epochs": 24}}
    assert merged_rows(path, other) == now["rows"]
    assert merged_rows(tmp_path / "none.json", now) == now["rows"]
