"""The studies run as `python -m benchmarks.NAME` against the installed package, as the Makefile calls them.

Each answers `--help` without doing any work (update_readme once rewrote README.md on `--help`), and the
Makefile's `bench-*` targets name modules that exist, with flags their parsers know.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.conftest import ROOT

# every study is a module with a main(); report.py is a library of the others
MODULES = tuple(sorted(p.stem for p in (ROOT / "benchmarks").glob("*.py") if "\ndef main(" in p.read_text()))


@pytest.mark.parametrize("name", MODULES)
def test_study_answers_help_without_side_effects(name):
    readme = (ROOT / "README.md").read_bytes()
    r = subprocess.run([sys.executable, "-m", f"benchmarks.{name}", "--help"], capture_output=True, text=True,
                       cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.startswith("usage:"), r.stdout[:500]
    assert (ROOT / "README.md").read_bytes() == readme


def test_make_bench_targets_call_existing_modules_with_known_flags():
    assert {"cl_protocols", "ablation", "kd_overhead", "export_bench", "update_readme"} <= set(MODULES)
    make = (ROOT / "Makefile").read_text()
    calls = re.findall(r"^bench-[\w-]+:.*\n\t\$\(BIN\)/python -m benchmarks\.(\w+)(.*)$", make, re.M)
    assert len(calls) == len(re.findall(r"^bench-[\w-]+:", make, re.M)) >= 2
    for name, args in calls:
        assert name in MODULES
        src = (ROOT / "benchmarks" / f"{name}.py").read_text()
        for flag in re.findall(r"(--[\w-]+)", args):
            assert f'"{flag}"' in src, f"make target runs benchmarks.{name} with {flag}, which its parser lacks"
