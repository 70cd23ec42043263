"""Writing `manifest.json` in the schema documented in cldet/core/manifest.py (which `cldet check` reads)."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from ..core.files import sha256_file, write_json_atomic
from ..core.manifest import MANIFEST_FORMAT, read_manifest
from ..core.processing import PAD_VALUE

__all__ = ["artifact_entry", "build_manifest", "write_manifest", "PRECISION"]

PRECISION = {"fp32": "fp32", "fp16": "fp16", "fp32_nms": "fp32", "int8": "int8", "engine": "int8"}


def artifact_entry(path: Path, key: str, target: str | None, metrics: dict | None) -> dict:
    """One artifact's record: file relative to the manifest, sha256, precision, target, host metrics."""
    from .onnx_export import NMS_LAYOUT

    entry = {"file": path.name, "sha256": sha256_file(path), "bytes": path.stat().st_size,
             "precision": PRECISION.get(key, key), "target": target, "metrics": metrics or {}}
    if key == "fp32_nms":
        entry["output_layout"] = NMS_LAYOUT
        entry["metrics_note"] = "in-graph NMS output: not scored on the host; the raw-output fp32 entry is the reference"
    return entry


def build_manifest(run: Path, lin, names: list[str], imgsz: int, groups: dict, calibration: dict, data_yaml: Path,
                   split: str, ds, n_images: int, artifacts: dict, model_sha256: str) -> dict:
    from ..core.version import __version__ as version

    return {
        "format": MANIFEST_FORMAT,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cldet_version": version,
        "run": {"path": str(run), "model_sha256": model_sha256, "lineage_increments": len(lin.increments)},
        "input": {"name": "images", "shape": [1, 3, imgsz, imgsz], "imgsz": imgsz, "color": "RGB",
                  "scale": 1 / 255, "letterbox": {"pad_value": PAD_VALUE, "center": True}, "dtype": "float32",
                  "dynamic_batch": True},
        "output": {"name": "output0",
                   "layout": "(B, 4+nc, A): cx, cy, w, h in input pixels, then class probabilities"},
        "classes": list(names),
        "groups": {k: list(v) for k, v in groups.items()},
        "calibration": calibration,
        "eval": {"data": str(data_yaml), "split": split, "fingerprint": ds.fingerprint(split), "images": n_images,
                 "runtime": "onnxruntime CPUExecutionProvider"},
        "artifacts": artifacts,
    }


def write_manifest(path: Path, manifest: dict) -> None:
    """Write atomically, then read it back through the reader `cldet check` uses and verify every sha256."""
    write_json_atomic(path, manifest)
    m = read_manifest(path)
    for key, a in m.artifacts.items():
        got = sha256_file(m.file_of(key))
        if got != a["sha256"]:  # pragma: no cover - would mean a concurrent writer
            raise RuntimeError(f"{a['file']} changed while the manifest was written ({key}).")
