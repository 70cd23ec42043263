"""The layering of docs/architecture.md, enforced from the import graph.

    cli, api, protocol, demo  (app)
        -> export -> detector -> calib -> core
           export -> deploy -> core
           export -> calib

`core`, `deploy` and `calib` are what the board installs: they must import in an interpreter where the training
stack cannot be imported at all. Every import counts, including the lazy ones inside functions, so the graph is
read from the source (AST) rather than from what one import happens to load.
"""

from __future__ import annotations

import ast
import graphlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "cldet"

# subpackage -> the subpackages it may import (besides itself and the root package, which holds only __version__)
ALLOWED = {
    "core": set(),
    "deploy": {"core"},
    "calib": {"core"},
    "detector": {"core", "calib"},
    "export": {"core", "calib", "detector", "deploy"},
    "app": {"core", "calib", "detector", "deploy", "export"},
}
TRAIN_STACK = ("torch", "torchvision", "ultralytics", "onnx", "onnxslim")  # the `train` extra: not on the board
BOARD = ("core", "deploy", "calib")


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PKG.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _unit(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "root"
    return parts[1] if parts[1] in ALLOWED else "app"


def _imports(module: str, path: Path) -> tuple[set[str], set[str]]:
    """(cldet modules, top-level third-party packages) imported anywhere in the file."""
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    internal, external = set(), set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            # `from . import x` / `from .pkg import mod` name modules; `from .mod import name` names the module
            subs = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in MODULES]
            names = subs or [target]
        else:
            continue
        for name in names:
            if name.split(".")[0] == "cldet":
                while name not in MODULES:  # `import cldet.x.y` with y an attribute
                    name = name.rsplit(".", 1)[0]
                internal.add(name)
            else:
                external.add(name.split(".")[0])
    internal.discard(module)
    return internal, external


GRAPH = {m: _imports(m, p) for m, p in MODULES.items()}


def test_the_graph_was_read():
    """Guards the checks below against passing on an empty graph."""
    assert {"cldet.core.data", "cldet.deploy.check", "cldet.detector.trainer", "cldet.export.pipeline"} <= set(MODULES)
    assert "cldet.core.processing" in GRAPH["cldet.deploy.bench"][0]
    assert "torch" in GRAPH["cldet.detector.model"][1]


def test_subpackages_import_only_downwards():
    bad = []
    for module, (internal, _) in GRAPH.items():
        src = _unit(module)
        for target in internal:
            dst = _unit(target)
            if src != "root" and dst not in (src, "root") and dst not in ALLOWED[src]:
                bad.append(f"{module} ({src}) imports {target} ({dst})")
    assert not bad, "imports against the layering of docs/architecture.md:\n" + "\n".join(sorted(bad))


def test_board_modules_never_import_the_training_stack():
    bad = [f"{m} imports {sorted(ext & set(TRAIN_STACK))}" for m, (_, ext) in GRAPH.items()
           if _unit(m) in BOARD and ext & set(TRAIN_STACK)]
    assert not bad, "\n".join(bad)


def test_no_module_imports_a_module_that_imports_it():
    """No cycle of any length, lazy imports included."""
    try:
        graphlib.TopologicalSorter({m: internal for m, (internal, _) in GRAPH.items()}).prepare()
    except graphlib.CycleError as e:
        pytest.fail(f"import cycle: {' -> '.join(e.args[1])}")


BLOCKED_INTERPRETER = """
import importlib, json, pkgutil, sys

BLOCKED = set(json.loads(sys.argv[1]))

class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is blocked: the board has no training stack")
        return None

sys.meta_path.insert(0, Blocker())
import cldet
loaded = []
for sub in json.loads(sys.argv[2]):
    pkg = importlib.import_module(f"cldet.{sub}")
    loaded.append(pkg.__name__)
    for info in pkgutil.walk_packages(pkg.__path__, prefix=f"cldet.{sub}."):
        importlib.import_module(info.name)
        loaded.append(info.name)
importlib.import_module("cldet.cli")  # the board's CLI loads too
loaded.append("cldet.cli")
heavy = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
print(json.dumps({"loaded": loaded, "heavy": heavy}))
"""


def test_board_modules_import_without_the_training_stack():
    r = subprocess.run([sys.executable, "-c", BLOCKED_INTERPRETER, json.dumps(TRAIN_STACK), json.dumps(BOARD)],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    expected = {m for m in MODULES if _unit(m) in BOARD} | {"cldet.cli"}
    assert expected <= set(res["loaded"]), sorted(expected - set(res["loaded"]))
    assert res["heavy"] == []
