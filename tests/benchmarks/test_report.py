"""The benchmark reports read the results JSON the harness has written so far: each committed table is what the
current report code renders from its committed JSON (long studies keep writing that format)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.export_bench import markdown as export_table
from benchmarks.ablation import ablation_table
from benchmarks.report import markdown_table, plot_steps

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"
RENDER = {"cl-": markdown_table, "export-": export_table, "ablation-": ablation_table, "proxy-": ablation_table}


def _committed() -> list[Path]:
    return sorted(p for p in RESULTS.glob("*.json") if any(p.name.startswith(k) for k in RENDER)
                  and p.with_suffix(".md").is_file())


def test_there_are_committed_results():
    # the converged tables sit in results/, the earlier short-schedule study in results/short-schedule/
    committed = {p.name.split("-")[0] for p in _committed()} | {p.name.split("-")[0] for p in RESULTS.rglob("cl-*.json")}
    assert committed >= {"cl", "export"}


@pytest.mark.parametrize("path", _committed(), ids=lambda p: p.stem)
def test_committed_json_renders_its_committed_table(path):
    render = next(f for k, f in RENDER.items() if path.name.startswith(k))
    assert render(json.loads(path.read_text())) == path.with_suffix(".md").read_text()


def test_protocol_plot_from_committed_json(tmp_path):
    path = sorted(RESULTS.rglob("cl-chess13-*step.json"))[0]  # a converged one where committed, else short-schedule
    summary = json.loads(path.read_text())
    plot_steps(summary, tmp_path / "p.png")
    assert (tmp_path / "p.png").stat().st_size > 10_000


def test_ablation_table_ratios():
    m = lambda old, new, all_: {"old": {"map50_95": old}, "new": {"map50_95": new}, "all": {"map50_95": all_}}  # noqa: E731
    s = {"dataset": "d", "protocol": "2step", "seed": 0, "train": {"epochs": 12},
         "base": {"step0": {"map50_95": 0.70}, "all": {"map50_95": 0.70}}, "joint": m(0.72, 0.78, 0.75),
         "rows": {"default (ours)": {"run": "ours", "metrics": m(0.71, 0.72, 0.715)},
                  "fine-tuning (lower bound)": {"run": "finetune", "metrics": m(0.0, 0.80, 0.40)}}}
    t = ablation_table(s)
    assert "| joint training (upper bound) | 0.720 | 0.780 | 0.750 | 1.000 | - | - |" in t
    assert "| default (ours) | 0.710 | 0.720 | 0.715 | 0.953 | 0.900 | +1.0 |" in t
    assert "| fine-tuning (lower bound) | 0.000 | 0.800 | 0.400 | 0.533 | 1.000 | -70.0 |" in t


def test_study_update_replaces_the_measured_runs_rows_and_keeps_the_others():
    """`--update` of the PTQ studies: a run measured again replaces its row in place; rows of runs whose directories
    are gone stay; a new run is appended."""
    from benchmarks.ptq_refinements import merge_rows

    earlier = [{"run": "a", "v": 1}, {"run": "b", "v": 2}, {"run": "c", "v": 3}]
    rows = merge_rows(earlier, [{"run": "b", "v": 20}, {"run": "d", "v": 40}])
    assert rows == [{"run": "a", "v": 1}, {"run": "b", "v": 20}, {"run": "c", "v": 3}, {"run": "d", "v": 40}]
    assert merge_rows([], [{"run": "x", "v": 0}]) == [{"run": "x", "v": 0}]
