"""Run directories and their append-only `lineage.json` (no torch: export and the board read it too).

A run directory holds one increment's result:
    model.pt       weights-only checkpoint (tensors + plain data; loads with torch.load(weights_only=True))
    lineage.json   every increment so far, oldest first; a new run copies its parent's entries and appends one
    train/         the trainer's working folder: init.pt (start checkpoint), weights/state.pt (weights-only state of
                   the last epoch, for --resume), results.csv
    pending.json   while unfinished: the command and options it was started with (cldet.detector.rundir)

lineage.json:
    {"format": "cldet-lineage/1", "arch": str, "imgsz": int, "classes": [model class names, in head order],
     "increments": [{"index": int, "kind": "train"|"learn", "classes_added": [str], "method": str,
                     "hyper": {...}, "data": {"yaml": str, "train_fingerprint": str, "val_fingerprint": str},
                     "parent": {"run": str, "model_sha256": str} | null, "seconds": float,
                     "metrics": {group: {"map50_95": float, "map50": float}} , "artifacts": {name: sha256},
                     "finished": iso8601}]}
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..core.errors import RunError
from ..core.files import sha256_file, write_json_atomic

__all__ = ["Lineage", "Increment", "read_lineage", "CHECKPOINT", "LINEAGE"]

FORMAT = "cldet-lineage/1"
CHECKPOINT = "model.pt"
LINEAGE = "lineage.json"


@dataclass
class Increment:
    index: int
    kind: str
    classes_added: list[str]
    method: str
    hyper: dict = field(default_factory=dict)
    data: dict = field(default_factory=dict)
    parent: dict | None = None
    seconds: float = 0.0
    metrics: dict = field(default_factory=dict)
    artifacts: dict = field(default_factory=dict)
    finished: str = ""


@dataclass
class Lineage:
    arch: str
    imgsz: int
    classes: list[str]
    increments: list[Increment]

    @property
    def last(self) -> Increment:
        return self.increments[-1]

    def groups(self) -> dict[str, list[str]]:
        """Class group per increment ('step0', 'step1', ...) plus 'all'."""
        g = {f"step{inc.index}": list(inc.classes_added) for inc in self.increments}
        g["all"] = list(self.classes)
        return g

    def old_new(self) -> dict[str, list[str]]:
        """'old' = classes of earlier increments, 'new' = the last increment's, 'all'."""
        new = list(self.last.classes_added)
        old = [c for c in self.classes if c not in new]
        return {"old": old, "new": new, "all": list(self.classes)} if old else {"new": new, "all": list(self.classes)}

    def to_json(self) -> dict:
        return {
            "format": FORMAT,
            "arch": self.arch,
            "imgsz": self.imgsz,
            "classes": self.classes,
            "increments": [vars(i) for i in self.increments],
        }

    def save(self, run_dir: str | Path) -> None:
        write_json_atomic(Path(run_dir) / LINEAGE, self.to_json())

    @classmethod
    def from_json(cls, raw: dict, where: str = "lineage") -> "Lineage":
        if raw.get("format") != FORMAT:
            raise RunError(f"{where}: not a cldet lineage (format {raw.get('format')!r}, expected {FORMAT!r}).")
        try:
            incs = [Increment(**i) for i in raw["increments"]]
            lin = cls(arch=raw["arch"], imgsz=int(raw["imgsz"]), classes=list(raw["classes"]), increments=incs)
        except (KeyError, TypeError) as e:
            raise RunError(f"{where}: malformed lineage ({e}).") from None
        if not incs:
            raise RunError(f"{where}: lineage has no increments.")
        added = [c for i in incs for c in i.classes_added]
        if added != lin.classes:
            raise RunError(f"{where}: increments add {added} but the class list is {lin.classes}.")
        return lin


def read_lineage(run_dir: str | Path, verify: bool = True) -> Lineage:
    """Read a run's lineage; with verify, refuse a checkpoint whose sha256 differs from the record."""
    run_dir = Path(run_dir)
    path = run_dir / LINEAGE
    if not run_dir.is_dir():
        raise RunError(f"run directory {run_dir} does not exist.")
    if not path.is_file():
        raise RunError(f"{run_dir} has no {LINEAGE}: not a cldet run (make one with `cldet train`).")
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise RunError(f"{path}: not valid JSON ({e}).") from None
    lin = Lineage.from_json(raw, str(path))
    if verify:
        ckpt = run_dir / CHECKPOINT
        if not ckpt.is_file():
            raise RunError(f"{run_dir} has no {CHECKPOINT}; the run did not finish (use --resume to continue it).")
        want = lin.last.artifacts.get(CHECKPOINT)
        got = sha256_file(ckpt)
        if want != got:
            raise RunError(
                f"{ckpt}: sha256 {got[:12]}... does not match lineage.json ({str(want)[:12]}...). "
                "The checkpoint was modified or replaced; refusing to use it."
            )
    return lin
