"""`cldet check`: the drift gate passes on a faithful artifact and fails, with its documented exit code, on
drift, artifact/manifest disagreement, wrong evaluation data, corrupt files and missing runtimes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cldet.cli import app

from ..conftest import write_dataset
from .assets import CLASSES, GROUPS, IMGSZ
from .conftest import edit_manifest

runner = CliRunner()


def _check(export: Path, data: Path, *extra: str, artifact: str = "model.int8.onnx"):
    return runner.invoke(app, ["check", "--artifact", str(export / artifact), "--manifest", str(export / "manifest.json"),
                               "--data", str(data), "--threads", "1", "--quiet", *extra])


def _groups(export: Path) -> dict:
    return json.loads((export / "manifest.json").read_text())["groups"]


def test_check_passes_and_writes_report(workdir, assets, tmp_path):
    report = tmp_path / "report.json"
    r = _check(workdir, assets.eval_yaml, "--report", str(report))
    assert r.exit_code == 0, r.output
    for g in _groups(workdir):
        assert g in r.output
    assert "PASS" in r.output and "FAIL" not in r.output
    rep = json.loads(report.read_text())
    assert rep["passed"] and rep["reference_key"] == "int8" and rep["max_abs_drift"] < 1.0
    assert {g["group"] for g in rep["groups"]} == set(_groups(workdir))
    assert set(rep["per_class"]) == set(CLASSES)


def test_drift_in_one_group_of_several_exits_1(workdir, assets, tmp_path):
    """Two increments' groups: references as the host measured them, then the host claims 5 points more on one."""
    from cldet.core.data import load_dataset
    from cldet.core.evaluate import evaluate
    from cldet.deploy.runtime import open_backend

    res = evaluate(open_backend(workdir / "model.int8.onnx", "cpu", 1), load_dataset(assets.eval_yaml), "val",
                   json.loads((workdir / "manifest.json").read_text())["classes"], IMGSZ, groups=GROUPS, progress=False)
    refs = {g: {"map50_95": m.map50_95, "map50": m.map50} for g, m in res.groups.items()}

    def two_groups(raw):
        raw["groups"] = GROUPS
        raw["artifacts"]["int8"]["metrics"] = refs
    edit_manifest(workdir / "manifest.json", two_groups)
    report = tmp_path / "r.json"
    assert _check(workdir, assets.eval_yaml, "--report", str(report)).exit_code == 0

    def shift(raw):
        raw["artifacts"]["int8"]["metrics"]["step1"]["map50_95"] += 0.05
    edit_manifest(workdir / "manifest.json", shift)
    r = _check(workdir, assets.eval_yaml, "--report", str(report))
    assert r.exit_code == 1, r.output
    assert "FAIL" in r.output and "step1" in r.output
    rep = json.loads(report.read_text())
    assert not rep["passed"] and [g["group"] for g in rep["groups"] if not g["ok"]] == ["step1"]
    assert abs(rep["max_abs_drift"] - 5.0) < 1e-6
    # a looser tolerance lets the same artifact through
    assert _check(workdir, assets.eval_yaml, "--tolerance", "6", "--report", str(report)).exit_code == 0


def test_engine_artifact_compared_with_its_source(workdir, assets):
    """A device-built engine is not in the manifest: hash skipped, references of the INT8 ONNX, TensorRT needed."""
    (workdir / "model.engine").write_bytes(b"\0" * 64)
    r = _check(workdir, assets.eval_yaml, artifact="model.engine")
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        assert r.exit_code == 6, r.output
        assert "TensorRT" in r.output
    else:  # pragma: no cover - on a board the zero file is a corrupt engine
        assert r.exit_code == 5, r.output


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda raw: raw["artifacts"]["int8"].update(sha256="0" * 64), "sha256"),
        (lambda raw: raw.update(classes=CLASSES + ["white-queen"]), "classes"),
        (lambda raw: raw.update(classes=CLASSES[::-1]), "classes"),
        (lambda raw: raw["input"].update(imgsz=IMGSZ + 32), f"says {IMGSZ + 32} px"),
        (lambda raw: raw["artifacts"]["int8"].update(metrics={}), "no host reference"),
        (lambda raw: raw["artifacts"]["int8"]["metrics"].pop("step0"), "step0"),
        (lambda raw: raw.update(format="something-else"), "not a cldet manifest"),
    ],
    ids=["hash", "class-count", "class-order", "imgsz", "no-metrics", "missing-group", "format"],
)
def test_manifest_disagreement_exits_5(workdir, assets, edit, message):
    edit_manifest(workdir / "manifest.json", edit)
    r = _check(workdir, assets.eval_yaml)
    assert r.exit_code == 5, r.output
    assert message in r.output


def test_artifact_not_from_this_export(workdir, assets):
    shutil.copy(assets.fp32, workdir / "other.onnx")  # same bytes as fp32: found by hash; a changed copy is not
    with open(workdir / "other.onnx", "ab") as f:
        f.write(b"\0")
    r = _check(workdir, assets.eval_yaml, artifact="other.onnx")
    assert r.exit_code == 5 and "not in" in r.output, r.output


def test_corrupt_onnx_listed_in_manifest(workdir, assets):
    from cldet.core.files import sha256_file

    bad = workdir / "model.int8.onnx"
    bad.write_bytes(bad.read_bytes()[:4096])
    edit_manifest(workdir / "manifest.json", lambda raw: raw["artifacts"]["int8"].update(sha256=sha256_file(bad)))
    r = _check(workdir, assets.eval_yaml)
    assert r.exit_code == 5 and "cannot load" in r.output, r.output


def test_eval_data_without_the_model_classes_exits_3(workdir, tmp_path):
    data = write_dataset(tmp_path / "ds", ["cat", "dog"], {"a": "0 0.5 0.5 0.2 0.2\n"})
    r = _check(workdir, data)
    assert r.exit_code == 3, r.output
    assert "white-pawn" in r.output and "names" in r.output


def test_missing_files_and_bad_options(workdir, assets, tmp_path):
    r = runner.invoke(app, ["check", "--artifact", str(workdir / "model.int8.onnx"), "--manifest",
                            str(tmp_path / "none.json"), "--data", str(assets.eval_yaml)])
    assert r.exit_code == 5 and "does not exist" in r.output
    assert _check(workdir, assets.eval_yaml, "--provider", "tensorrt").exit_code in (0, 6)
    assert _check(workdir, tmp_path / "nope.yaml").exit_code == 3


def test_help_documents_exit_codes():
    r = runner.invoke(app, ["check", "--help"])
    assert r.exit_code == 0 and "Exit codes" in r.output and "drift" in r.output


def test_engine_reference_resolution(workdir):
    """Engines: listed (hash ok) or rebuilt on the device (hash differs) or absent -> the INT8 ONNX's references."""
    from cldet.deploy.check import verify_artifact
    from cldet.core.files import sha256_file
    from cldet.core.errors import ArtifactError
    from cldet.core.manifest import read_manifest

    eng = workdir / "model.engine"
    eng.write_bytes(b"engine built on the host")

    def listed(raw):
        raw["artifacts"]["engine"] = {"file": eng.name, "sha256": sha256_file(eng), "precision": "int8",
                                      "target": "cpu", "metrics": {}}
    key, entry, _, warnings = verify_artifact(eng, read_manifest(workdir / "manifest.json"))
    assert key == "int8" and entry["metrics"] and "not in the manifest" in warnings[0]
    edit_manifest(workdir / "manifest.json", listed)
    key, _, _, warnings = verify_artifact(eng, read_manifest(workdir / "manifest.json"))
    assert key == "int8" and warnings == []
    eng.write_bytes(b"engine rebuilt on the board")
    key, _, _, warnings = verify_artifact(eng, read_manifest(workdir / "manifest.json"))
    assert key == "int8" and "rebuilt on this device" in warnings[0]
    assert verify_artifact(eng, read_manifest(workdir / "manifest.json"), reference="fp32")[0] == "fp32"
    with pytest.raises(ArtifactError, match="--reference 'nope'"):
        verify_artifact(eng, read_manifest(workdir / "manifest.json"), reference="nope")
