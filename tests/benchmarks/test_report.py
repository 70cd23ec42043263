"""The benchmark reports read the results JSON the harness has written so far: each committed table is what the
current report code renders from its committed JSON (long studies keep writing that format)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.export_bench import markdown as export_table
from benchmarks.knobs import knobs_table
from benchmarks.report import markdown_table, plot_steps

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"
RENDER = {"cl-": markdown_table, "export-": export_table, "knobs-": knobs_table}


def _committed() -> list[Path]:
    return sorted(p for p in RESULTS.glob("*.json") if any(p.name.startswith(k) for k in RENDER)
                  and p.with_suffix(".md").is_file())


def test_there_are_committed_results():
    assert {p.name.split("-")[0] for p in _committed()} >= {"cl", "export", "knobs"}


@pytest.mark.parametrize("path", _committed(), ids=lambda p: p.stem)
def test_committed_json_renders_its_committed_table(path):
    render = next(f for k, f in RENDER.items() if path.name.startswith(k))
    assert render(json.loads(path.read_text())) == path.with_suffix(".md").read_text()


def test_protocol_plot_from_committed_json(tmp_path):
    summary = json.loads((RESULTS / "cl-chess13-4step.json").read_text())
    plot_steps(summary, tmp_path / "p.png")
    assert (tmp_path / "p.png").stat().st_size > 10_000
