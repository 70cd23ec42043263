"""`manifest.json`: what `cldet export` promises and what `cldet check` verifies on the board.

Torch-free. Layout (format "cldet-manifest/1"):
    {"format": "cldet-manifest/1",
     "created": iso8601, "cldet_version": str,
     "run": {"path": str, "model_sha256": str, "lineage_increments": int},
     "input": {"name": "images", "shape": [1, 3, S, S], "imgsz": S, "color": "RGB", "scale": 1/255,
               "letterbox": {"pad_value": PAD_VALUE of cldet.core.processing, "center": true}},
     "output": {"name": "output0", "layout": "(B, 4+nc, A): cx, cy, w, h in input pixels, then class probabilities"},
     "classes": [names in head order],
     "groups": {"step0": [names], "step1": [names], ..., "all": [names]},
     "calibration": {...what the export used: images, classes covered, missing classes, method},
     "eval": {"data": str, "split": str, "fingerprint": str, "images": int},
     "artifacts": {key: {"file": relative path, "sha256": str, "precision": "fp32"|"fp16"|"int8",
                         "target": "cpu"|"tensorrt"|null,
                         "metrics": {group: {"map50_95": float, "map50": float}}}}}
Artifact files are named relative to the manifest's folder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ArtifactError

__all__ = ["Manifest", "read_manifest", "MANIFEST_FORMAT"]

MANIFEST_FORMAT = "cldet-manifest/1"


@dataclass
class Manifest:
    path: Path
    raw: dict = field(default_factory=dict)

    @property
    def classes(self) -> list[str]:
        return list(self.raw["classes"])

    @property
    def groups(self) -> dict[str, list[str]]:
        return {k: list(v) for k, v in self.raw["groups"].items()}

    @property
    def imgsz(self) -> int:
        return int(self.raw["input"]["imgsz"])

    @property
    def artifacts(self) -> dict[str, dict]:
        return self.raw["artifacts"]

    def find(self, artifact: Path, digest: str) -> str | None:
        """Key of the entry describing `artifact`: the one with its sha256, else the one with its file name."""
        for key, a in self.artifacts.items():
            if a.get("sha256") == digest:
                return key
        for key, a in self.artifacts.items():
            if Path(a["file"]).name == Path(artifact).name:
                return key
        return None

    def file_of(self, key: str) -> Path:
        """Where an artifact listed under `key` lies (its file is named relative to the manifest's folder)."""
        return self.path.parent / self.artifacts[key]["file"]


def read_manifest(path: str | Path) -> Manifest:
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"manifest {path} does not exist (it is written by `cldet export`).")
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ArtifactError(f"{path}: not valid JSON ({e}).") from None
    if raw.get("format") != MANIFEST_FORMAT:
        raise ArtifactError(f"{path}: not a cldet manifest (format {raw.get('format')!r}).")
    for key in ("classes", "groups", "input", "artifacts"):
        if key not in raw:
            raise ArtifactError(f"{path}: missing '{key}'.")
    return Manifest(path=path, raw=raw)
