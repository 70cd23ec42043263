"""A tiny two-increment run (random-init yolov5nu, 64 px, bundled chess-mini data) and one export of it."""

from __future__ import annotations

from pathlib import Path

import pytest

IMGSZ = 64


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, mini_yaml) -> Path:
    pytest.importorskip("torch")
    from cldet.calib.reservoir import update_reservoir
    from cldet.core.data import load_dataset
    from cldet.core.files import sha256_file
    from cldet.detector.lineage import Increment, Lineage
    from cldet.detector.model import build_model, save_checkpoint

    import torch

    torch.manual_seed(0)
    names = load_dataset(mini_yaml).names
    run = tmp_path_factory.mktemp("tiny") / "run"
    run.mkdir()
    model = build_model("yolov5nu.yaml", names)
    save_checkpoint(run / "model.pt", model, names, IMGSZ)
    incs = [Increment(index=0, kind="train", classes_added=names[:6], method="test", data={"yaml": str(mini_yaml)}),
            Increment(index=1, kind="learn", classes_added=names[6:], method="test", data={"yaml": str(mini_yaml)},
                      artifacts={"model.pt": sha256_file(run / "model.pt")})]
    Lineage(arch="yolov5nu.yaml", imgsz=IMGSZ, classes=names, increments=incs).save(run)
    update_reservoir(run, None, mini_yaml, names, max_images=6, max_mb=8.0)
    return run


@pytest.fixture(scope="session")
def exported(tiny_run, tmp_path_factory) -> dict:
    """One PTQ export (cpu target) with FP16 and NMS variants, scored on 4 eval images."""
    from cldet.export.pipeline import ExportOptions, export_run

    out = tmp_path_factory.mktemp("exp") / "export"
    manifest = export_run(tiny_run, ExportOptions(out=out, calib_images=6, eval_limit=4, progress=False, fp16=True,
                                                  nms=True, calib_method="minmax"))
    return {"out": out, "manifest": manifest}
