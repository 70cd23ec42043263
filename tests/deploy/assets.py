"""Deploy test assets: a trained detector, its FP32/INT8 ONNX and a manifest, built once and cached.

Why a trained model: the parity and drift tests need real, confident detections; a random head gives
near-constant scores that any pipeline reproduces. The model is one real increment from the bundled demo base
(6 white piece classes, converged on the full chess13 split): `learn` adds black-pawn and black-knight from the
bundled chess-mini photos for a few epochs. So the old classes detect as well as the base does, with or without
../shared, and the manifest has two increments' class groups. The FP32/INT8 ONNX and manifest come from the real
`cldet export` (export_run); where the export stage is absent, a minimal stand-in (same export_onnx, ORT's
static quantizer with U8 activations / S8 per-channel weights, manifest in the documented schema) takes its
place. A fixed-batch-1 FP32 copy is added for the runtime and bench tests.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cldet.core.assets import CHESS_MINI, DEMO_BASE

ROOT = Path(__file__).resolve().parents[2]
MINI = CHESS_MINI
OLD = ["white-bishop", "white-king", "white-knight", "white-pawn", "white-queen", "white-rook"]  # the demo base's
NEW = ["black-pawn", "black-knight"]
CLASSES = OLD + NEW
GROUPS = {"step0": OLD, "step1": NEW, "all": CLASSES}
IMGSZ = 320  # the demo base's input size
EPOCHS = 3
VERSION = "v6"  # bump to rebuild cached assets


@dataclass(frozen=True)
class Assets:
    root: Path
    checkpoint: Path
    fp32: Path
    fp32_b1: Path  # fixed batch 1
    int8: Path
    manifest: Path
    eval_yaml: Path
    train_yaml: Path


def _paths(root: Path, train_yaml: Path) -> Assets:
    return Assets(root, root / "run" / "model.pt", root / "export" / "model.fp32.onnx",
                  root / "export" / "model.fp32.b1.onnx", root / "export" / "model.int8.onnx",
                  root / "export" / "manifest.json", MINI, train_yaml)


class _Calib:
    """ORT CalibrationDataReader over letterboxed training images (never the evaluation images)."""

    def __init__(self, images: list[Path], size: int) -> None:
        from cldet.core.processing import letterbox, load_image

        self.batches = iter([{"images": letterbox(load_image(p), size)[0][None]} for p in images])

    def get_next(self):
        return next(self.batches, None)


def quantize_int8(fp32: Path, int8: Path, calib_images: list[Path], size: int) -> None:
    """U8 activations / S8 per-channel weights on Conv inputs; the DFL conv (fixed arange weights) stays float."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    proto = onnx.load(str(fp32))
    inits = {i.name: i for i in proto.graph.initializer}
    dfl = [n.name for n in proto.graph.node if n.op_type == "Conv" and n.input[1] in inits
           and list(inits[n.input[1]].dims) == [1, 16, 1, 1]]
    quantize_static(str(fp32), str(int8), _Calib(calib_images, size), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
                    op_types_to_quantize=["Conv"], nodes_to_exclude=dfl, calibrate_method=CalibrationMethod.MinMax)


def write_manifest(a: Assets, metrics: dict[str, dict]) -> None:
    from cldet.core.data import load_dataset
    from cldet.core.files import sha256_file
    from cldet.core.processing import PAD_VALUE

    arts = {k: {"file": p.name, "sha256": sha256_file(p), "precision": "int8" if k == "int8" else "fp32",
                "target": "cpu" if k == "int8" else None, "metrics": metrics[k]}
            for k, p in (("fp32", a.fp32), ("int8", a.int8))}
    man = {
        "format": "cldet-manifest/1", "created": "test", "cldet_version": "test",
        "run": {"path": str(a.checkpoint.parent), "model_sha256": sha256_file(a.checkpoint), "lineage_increments": 1},
        "input": {"name": "images", "shape": [1, 3, IMGSZ, IMGSZ], "imgsz": IMGSZ, "color": "RGB", "scale": 1 / 255,
                  "letterbox": {"pad_value": PAD_VALUE, "center": True}},
        "output": {"name": "output0", "layout": "(B, 4+nc, A)"},
        "classes": CLASSES, "groups": GROUPS, "calibration": {"images": 32, "method": "minmax"},
        "eval": {"data": str(a.eval_yaml), "split": "val", "fingerprint": load_dataset(a.eval_yaml).fingerprint("val"),
                 "images": len(load_dataset(a.eval_yaml).images("val"))},
        "artifacts": arts,
    }
    a.manifest.write_text(json.dumps(man, indent=1))


def reference_metrics(artifact: Path, eval_yaml: Path) -> dict:
    from cldet.core.data import load_dataset
    from cldet.core.evaluate import evaluate
    from cldet.deploy.runtime import open_backend

    res = evaluate(open_backend(artifact, "cpu"), load_dataset(eval_yaml), "val", CLASSES, IMGSZ, groups=GROUPS,
                   progress=False)
    return {g: {"map50_95": m.map50_95, "map50": m.map50} for g, m in res.groups.items()}


def build(cache: Path) -> Assets:
    """Learn + export into `cache/VERSION` unless a complete set is already there."""
    root = (cache / VERSION).resolve()  # absolute: Ultralytics re-roots a relative project under runs/detect
    a = _paths(root, MINI)
    if a.manifest.is_file() and a.checkpoint.is_file():
        return a
    for old in root.parent.glob("v*"):  # earlier asset versions and a half-built one
        shutil.rmtree(old, ignore_errors=True)
    root.mkdir(parents=True)
    from cldet.api import learn
    from cldet.detector.model import load_checkpoint
    from cldet.export.onnx_export import export_onnx

    learn(from_run=DEMO_BASE, data=MINI, new_classes=",".join(NEW), out=root / "run", old_labels=False,
          epochs=EPOCHS, imgsz=IMGSZ, batch=16, workers=0, close_mosaic=0)
    model, _ = load_checkpoint(a.checkpoint)
    try:  # the real `cldet export` (what the board receives), when the export stage is present
        from cldet.export.pipeline import ExportOptions, export_run
    except ImportError:
        export_run = None
    if export_run is not None:
        export_run(root / "run", ExportOptions(out=a.fp32.parent, int8="ptq", data=a.eval_yaml, calib_images=32,
                                               progress=False))
    else:
        _standin_export(a, model, MINI)
    export_onnx(model, a.fp32_b1, IMGSZ, dynamic_batch=False)  # not in the manifest: runtime/bench tests only
    return a


def _standin_export(a: Assets, model, train_yaml: Path) -> None:
    from cldet.core.data import load_dataset
    from cldet.export.onnx_export import export_onnx

    a.fp32.parent.mkdir(parents=True)
    export_onnx(model, a.fp32, IMGSZ)
    calib = load_dataset(train_yaml).images("train")
    quantize_int8(a.fp32, a.int8, [calib[i] for i in np.linspace(0, len(calib) - 1, 32).astype(int)], IMGSZ)
    write_manifest(a, {k: reference_metrics(p, a.eval_yaml) for k, p in (("fp32", a.fp32), ("int8", a.int8))})
