""".ci/run runs the whole suite in a clone without ../shared, then in place only the tests marked `shared`: the
split is only sound if every test that can see ../shared carries that marker. These tests keep it so."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from tests.conftest import SHARED_FIXTURES

ROOT = Path(__file__).resolve().parents[1]


def _reads_shared(item) -> bool:
    if SHARED_FIXTURES & set(getattr(item, "fixturenames", ())):
        return True
    fn = getattr(item, "function", None)
    if fn is None or Path(str(item.path)) == Path(__file__):  # this file names ../shared to look for it
        return False
    src = inspect.getsource(fn)
    return "SHARED" in src or "../shared" in src or '"shared"' in src


def test_every_test_that_reads_shared_is_marked(request):
    items = request.session.items
    if len(items) < 100:
        pytest.skip("needs the whole suite collected (`make test`), not one file")
    unmarked = [i.nodeid for i in items if _reads_shared(i) and i.get_closest_marker("shared") is None]
    assert not unmarked, f"tests that read ../shared without the `shared` marker: {unmarked}"
    assert any(i.get_closest_marker("shared") for i in items), "no `shared` test collected: the in-place CI step runs nothing"


def test_ci_runs_the_shared_tests_in_place():
    run = (ROOT / ".ci" / "run").read_text()
    assert "make -C \"$TMP/cldet\" test" in run  # the whole suite, without ../shared
    assert 'make test PYTEST_ARGS="-m shared"' in run  # then the tests that see ../shared, with it
