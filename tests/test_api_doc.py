"""docs/api.md's complete example runs as written, and `from cldet import ...` gives the API functions."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_package_exports_the_api():
    import cldet
    from cldet import api

    for name in ("train", "learn", "evaluate", "export", "check", "bench", "predict", "import_weights"):
        assert getattr(cldet, name) is getattr(api, name)
    from cldet.export.pipeline import export_run  # the subpackage stays importable by its full name

    assert callable(export_run)


@pytest.mark.slow
def test_the_complete_example_runs(tmp_path, monkeypatch):
    text = (ROOT / "docs" / "api.md").read_text()
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "docs/api.md", "exec"), {"__name__": "api_doc"})
    assert (tmp_path / "runs" / "step1" / "lineage.json").is_file()
    assert (tmp_path / "predictions" / "predictions.json").is_file()
