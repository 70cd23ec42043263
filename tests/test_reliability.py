"""Hostile and malformed input across every command: each is refused with its documented exit code and a message
that names the problem, and leaves nothing behind and nothing changed.

Table-driven: every case builds its inputs in a fresh workspace (a tiny copy of the bundled chess data, and where it
needs them a copy of the bundled demo base run or of the board smoke artifact), snapshots the workspace, runs the
CLI in-process, and compares. The cases that plant a file that would run code if loaded (a pickle, an activation
string, a module name) also check that the marker file the payload would create never appears. None of the cases
trains: validation refuses every one before any work (the two that must train are in tests/detector/test_resume.py
and test_planted_pickles_are_never_loaded below). docs/reliability.md lists the cases.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
import torch
import yaml
from typer.testing import CliRunner

from cldet.cli import app
from cldet.core.assets import CHESS_MINI, DEMO_BASE
from cldet.core.files import sha256_file

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "docker" / "smoke"
runner = CliRunner()


class Payload:
    """Unpickling this creates the marker file (what a real attack would do with os.system)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


class W:
    """A case's workspace: inputs are made on first use, all under `root`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.marker = root / "PWNED"
        self._data = self._run = self._smoke = None

    @property
    def data(self) -> Path:
        """8 train + 4 val chess photos, all 13 class names (white-pawn and black-pawn well represented)."""
        if self._data is None:
            src, dst = CHESS_MINI.parent, self.root / "data"
            for split, folder, n in (("train", "train", 8), ("val", "valid", 4)):
                (dst / split / "images").mkdir(parents=True)
                (dst / split / "labels").mkdir(parents=True)
                for img in sorted((src / folder / "images").iterdir())[:n]:
                    shutil.copy(img, dst / split / "images" / img.name)
                    shutil.copy(src / folder / "labels" / f"{img.stem}.txt", dst / split / "labels" / f"{img.stem}.txt")
            (dst / "data.yaml").write_text(CHESS_MINI.read_text().replace("valid/images", "val/images"))
            self._data = dst / "data.yaml"
        return self._data

    def img(self, split: str = "train", k: int = 0) -> Path:
        return sorted((self.data.parent / split / "images").iterdir())[k]

    def label(self, split: str = "train", k: int = 0) -> Path:
        img = self.img(split, k)
        return img.parent.parent / "labels" / f"{img.stem}.txt"

    @property
    def run(self) -> Path:
        """A copy of the bundled demo base run (finished, 6 white classes, 320 px)."""
        if self._run is None:
            self._run = self.root / "base"
            shutil.copytree(DEMO_BASE, self._run)
        return self._run

    @property
    def smoke(self) -> Path:
        """A copy of the board smoke test: model.int8.onnx, manifest.json, 8 labeled photos."""
        if self._smoke is None:
            self._smoke = self.root / "smoke"
            shutil.copytree(SMOKE, self._smoke)
        return self._smoke

    def write_yaml(self, name: str, obj) -> Path:
        p = self.root / name
        p.write_text(obj if isinstance(obj, str) else yaml.safe_dump(obj))
        return p

    def pickle(self, path: Path, obj=None) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(obj if obj is not None else {"model": Payload(self.marker), "epoch": 0}, path)
        return path

    def tamper_model(self, edit: Callable[[dict], None]) -> Path:
        """Rewrite the run's model.pt with an edited blob and re-sign lineage.json (an attacker can do both)."""
        ckpt = self.run / "model.pt"
        blob = torch.load(ckpt, map_location="cpu", weights_only=True)
        edit(blob)
        torch.save(blob, ckpt)
        self.resign()
        return self.run

    def resign(self) -> None:
        lin = json.loads((self.run / "lineage.json").read_text())
        lin["increments"][-1]["artifacts"]["model.pt"] = sha256_file(self.run / "model.pt")
        (self.run / "lineage.json").write_text(json.dumps(lin))

    def interrupted(self, out: Path, command: str = "train", options: dict | None = None) -> Path:
        """A folder that looks like an interrupted run: lock file and a pending record."""
        out.mkdir(parents=True)
        (out / ".lock").write_text("1\n")
        (out / "pending.json").write_text(json.dumps({"format": "cldet-pending/1", "command": command,
                                                      "options": options or {}, "seconds": 1.0}))
        return out


def _yaml_edit(w: W, edit: Callable[[dict], None]) -> Path:
    raw = yaml.safe_load(w.data.read_text())
    edit(raw)
    w.data.write_text(yaml.safe_dump(raw))
    return w.data


def _act(blob: dict, marker: Path) -> None:
    blob["yaml"]["activation"] = f"open({str(marker)!r}, 'w') and nn.SiLU()"


def _module(blob: dict, name: str) -> None:
    blob["yaml"]["backbone"][0][2] = name


def _arg(blob: dict, arg) -> None:
    blob["yaml"]["head"][0][3] = [arg]


@dataclass
class Case:
    id: str
    argv: Callable[[W], list]
    code: int
    msg: str
    hostile: bool = False  # plants a payload: the marker must never appear


TINY = ["--epochs", "1", "--imgsz", "64", "--batch", "4", "--workers", "0"]
CLS = ["--classes", "white-pawn,black-pawn"]


def T(*extra):  # noqa: N802 - a train command line on the workspace's data
    return lambda w: ["train", "--data", w.data, "--out", w.root / "out", *CLS, *TINY, *extra]


def TD(setup: Callable[[W], object], *extra):  # noqa: N802 - train after `setup` broke the data
    def argv(w: W):
        setup(w)
        return ["train", "--data", w.data, "--out", w.root / "out", *CLS, *TINY, *extra]
    return argv


def L(*extra, new="black-pawn"):  # noqa: N802 - learn from the demo base
    return lambda w: ["learn", "--from", w.run, "--data", w.data, "--new-classes", new, "--out", w.root / "out",
                      "--epochs", "1", "--batch", "4", "--workers", "0", *extra]


def LT(edit: Callable[[dict, W], None]):  # noqa: N802 - learn from a tampered base
    def argv(w: W):
        w.tamper_model(lambda b: edit(b, w))
        return L()(w)
    return argv


def E(*extra, run=None):  # noqa: N802 - eval
    return lambda w: ["eval", "--run", run(w) if run else w.run, "--data", w.data, *extra]


def X(*extra):  # noqa: N802 - export
    return lambda w: ["export", "--run", w.run, "--data", w.data, "--out", w.root / "exp", "--quiet", *extra]


def C(*extra, data=None):  # noqa: N802 - check on the smoke artifact
    return lambda w: ["check", "--artifact", w.smoke / "model.int8.onnx", "--manifest", w.smoke / "manifest.json",
                      "--data", data(w) if data else w.smoke / "data.yaml", "--report", w.root / "r.json", "--quiet",
                      *extra]


def B(*extra):  # noqa: N802 - bench on the smoke artifact
    return lambda w: ["bench", "--artifact", w.smoke / "model.int8.onnx", "--iters", "1", "--warmup", "0",
                      "--out", w.root / "bench", "--quiet", *extra]


def P(*extra, source=None):  # noqa: N802 - predict with the smoke artifact
    return lambda w: ["predict", "--artifact", w.smoke / "model.int8.onnx", "--source",
                      source if source is not None else w.img(), "--out", w.root / "pred", "--quiet", *extra]


def _coco(w: W, edit: Callable[[dict], None] | None = None) -> Path:
    """The workspace's data as a yaml naming COCO files (one per split), after `edit` broke the train file."""
    from tests.core.test_coco import to_coco

    for split in ("train", "val"):
        imgs = sorted((w.data.parent / split / "images").iterdir())
        j = to_coco(imgs, w.root / f"{split}.json")
        if edit is not None and split == "train":
            raw = json.loads(j.read_text())
            edit(raw)
            j.write_text(json.dumps(raw))
    return w.write_yaml("coco.yaml", {s: {"annotations": str(w.root / f"{s}.json"),
                                          "images": str(w.data.parent / s / "images")} for s in ("train", "val")})


def _coco_json(w: W, edit: Callable[[dict], None] | None = None) -> Path:
    """The workspace's train images as one COCO file kept apart from them (for --data x.json --images DIR)."""
    from tests.core.test_coco import to_coco

    (w.root / "ann").mkdir()
    j = to_coco(sorted((w.data.parent / "train" / "images").iterdir()), w.root / "ann" / "train.json")
    if edit is not None:
        raw = json.loads(j.read_text())
        edit(raw)
        j.write_text(json.dumps(raw))
    return j


def _ultralytics(w: W, arch: str) -> Path:
    """A checkpoint as Ultralytics' trainer writes it, of the task `arch` names (built offline from the yaml)."""
    from tests.detector.test_import import ultralytics_checkpoint

    return ultralytics_checkpoint(w.root / "best.pt", arch, names=["a", "b"])


def TC(edit):  # noqa: N802 - train on COCO data that `edit` broke
    return lambda w: ["train", "--data", _coco(w, edit), "--out", w.root / "out", *CLS, *TINY]


def _label(text: str, k: int = 0):
    return lambda w: w.label(k=k).write_text(text)


def _truncate(w: W) -> None:
    p = w.img(k=1)
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def _smoke_truncate(w: W) -> Path:
    p = sorted((w.smoke / "images").iterdir())[0]
    p.write_bytes(p.read_bytes()[:2000])
    return w.smoke / "data.yaml"


def _empty_labels(w: W) -> None:
    for p in (w.data.parent / "train" / "labels").iterdir():
        p.write_text("")


def _labels_without(cls_id: int):
    def edit(w: W) -> None:
        for p in (w.data.parent / "train" / "labels").iterdir():
            p.write_text("".join(l + "\n" for l in p.read_text().splitlines() if l.split()[:1] != [str(cls_id)]))
    return edit


def _out_file(w: W) -> None:
    (w.root / "out").write_text("not a folder")


def _finished_out(w: W) -> list:
    shutil.copytree(w.run, w.root / "out")
    return ["--resume"]


def _state_pickle(w: W) -> None:
    out = w.interrupted(w.root / "out")
    w.pickle(out / "train" / "weights" / "state.pt")


CASES: list[Case] = [
    # --- train: options (exit 2) ----------------------------------------------------------------------------------
    Case("train-epochs-0", T("--epochs", "0"), 2, "--epochs 0"),
    Case("train-epochs-negative", T("--epochs", "-1"), 2, "--epochs -1"),
    Case("train-imgsz-0", T("--imgsz", "0"), 2, "--imgsz 0"),
    Case("train-imgsz-negative", T("--imgsz", "-64"), 2, "--imgsz -64"),
    Case("train-imgsz-not-stride-multiple", T("--imgsz", "70"), 2, "multiple of 32"),
    Case("train-batch-0", T("--batch", "0"), 2, "--batch 0"),
    Case("train-fraction-0", T("--fraction", "0"), 2, "--fraction 0"),
    Case("train-fraction-above-1", T("--fraction", "1.5"), 2, "--fraction 1.5"),
    Case("train-mosaic-above-1", T("--mosaic", "2"), 2, "--mosaic 2"),
    Case("train-lr0-0", T("--lr0", "0"), 2, "--lr0 0"),
    Case("train-seed-negative", T("--seed", "-1"), 2, "--seed -1"),
    Case("train-optimizer-unknown", T("--optimizer", "Magic"), 2, "--optimizer 'Magic'"),
    Case("train-patience-0", T("--patience", "0"), 2, "--patience 0"),
    Case("train-close-mosaic-negative", T("--close-mosaic", "-1"), 2, "--close-mosaic -1"),
    Case("train-device-malformed", T("--device", "gpu"), 2, "--device 'gpu'"),
    Case("train-device-absent-gpu", T("--device", "7"), 6, "CUDA device 7 not available"),
    Case("train-init-and-no-init", lambda w: T("--init", w.data, "--no-init")(w), 2, "contradict"),
    Case("train-init-missing", lambda w: T("--init", w.root / "nope.pt")(w), 2, "does not exist"),
    Case("train-arch-missing", T("--arch", "nope.yaml"), 2, "no Ultralytics model yaml"),
    Case("train-arch-missing-path", T("--arch", "sub/nope.yaml"), 2, "file does not exist"),
    Case("train-arch-url", T("--arch", "https://example.com/m.yaml"), 2, "URLs are not fetched"),
    Case("train-arch-not-yaml", T("--arch", "yolov5nu.pt"), 2, "expected a .yaml"),
    Case("train-arch-is-dataset", lambda w: T("--arch", w.data)(w), 2, "unknown architecture keys"),
    # --- train: hostile files (no code may run) -------------------------------------------------------------------
    Case("train-init-pickle", lambda w: T("--init", w.pickle(w.root / "init.pt"))(w), 2, "not a tensors-only",
         hostile=True),
    Case("train-arch-evil-activation", lambda w: T("--arch", w.write_yaml("evil.yaml", {
        "nc": 2, "activation": f"open({str(w.marker)!r}, 'w') and nn.SiLU()",
        "backbone": [[-1, 1, "Conv", [16, 3, 2]]], "head": [[[-1], 1, "Detect", ["nc"]]]}))(w), 2,
         "activation", hostile=True),
    Case("train-arch-evil-module", lambda w: T("--arch", w.write_yaml("evil.yaml", {
        "nc": 2, "backbone": [[-1, 1, "attempt_download_asset", ["x.pt"]]], "head": [[[-1], 1, "Detect", ["nc"]]]}))(w),
         2, "not an allowed layer", hostile=True),
    Case("train-arch-evil-string-arg", lambda w: T("--arch", w.write_yaml("evil.yaml", {
        "nc": 2, "backbone": [[-1, 1, "Conv", [f"__import__('os').system('touch {w.marker}')"]]],
        "head": [[[-1], 1, "Detect", ["nc"]]]}))(w), 2, "string argument", hostile=True),
    Case("train-data-python-tag", lambda w: ["train", "--data", w.write_yaml(
        "evil-data.yaml", f"names: [a]\ntrain: !!python/object/apply:os.system ['touch {w.marker}']\n"),
        "--out", w.root / "out", *TINY], 3, "not valid YAML", hostile=True),
    Case("train-resume-state-pickle", lambda w: (_state_pickle(w), T("--resume")(w))[1], 4,
         "not a cldet training state", hostile=True),
    Case("train-resume-pending-garbage", lambda w: (w.interrupted(w.root / "out"),
                                                    (w.root / "out" / "pending.json").write_text("{nope"),
                                                    T("--resume")(w))[2], 4, "not valid JSON"),
    # --- train: dataset (exit 3) ----------------------------------------------------------------------------------
    Case("train-data-missing", lambda w: ["train", "--data", w.root / "nope.yaml", "--out", w.root / "out", *TINY], 3,
         "does not exist"),
    Case("train-data-no-names", TD(lambda w: _yaml_edit(w, lambda r: r.pop("names"))), 3, "'names'"),
    Case("train-data-duplicate-names", TD(lambda w: _yaml_edit(w, lambda r: r["names"].update({1: "bishop"}))), 3,
         "duplicate class names"),
    Case("train-data-no-train-split", TD(lambda w: _yaml_edit(w, lambda r: r.pop("train"))), 3, "no 'train' split"),
    Case("train-data-train-folder-missing", TD(lambda w: _yaml_edit(w, lambda r: r.update(train="nope/images"))), 3,
         "does not exist"),
    Case("train-data-no-images", TD(lambda w: [p.unlink() for p in (w.data.parent / "train" / "images").iterdir()]),
         3, "has no images"),
    Case("train-label-4-fields", TD(_label("10 0.5 0.5 0.1\n")), 3, ":1: expected 5 columns"),
    Case("train-label-6-fields", TD(_label("10 0.5 0.5 0.1 0.1 0.3\n")), 3, "got 6"),
    Case("train-label-non-numeric", TD(_label("10 0.5 abc 0.1 0.1\n")), 3, "non-numeric"),
    Case("train-label-negative", TD(_label("10 -0.5 0.5 0.1 0.1\n")), 3, "not normalised"),
    Case("train-label-above-1", TD(_label("10 0.5 1.5 0.1 0.1\n")), 3, "not normalised"),
    Case("train-label-unknown-class", TD(_label("13 0.5 0.5 0.1 0.1\n")), 3, "class id 13 is outside"),
    Case("train-label-fractional-class", TD(_label("1.5 0.5 0.5 0.1 0.1\n")), 3, "class id 1.5 is not an integer"),
    Case("train-label-zero-box", TD(_label("10 0.5 0.5 0 0.1\n")), 3, "zero width"),
    Case("train-label-bad-line-in-val", TD(lambda w: w.label("val", 1).write_text("4 0.5\n")), 3, "expected 5"),
    Case("train-image-zero-bytes", TD(lambda w: w.img(k=2).write_bytes(b"")), 3, "empty (0 bytes)"),
    Case("train-image-truncated", TD(_truncate), 3, "truncated"),
    Case("train-image-not-an-image", TD(lambda w: w.img(k=3).write_text("hello")), 3, "not a JPEG"),
    Case("train-image-val-zero-bytes", TD(lambda w: w.img("val", 0).write_bytes(b"")), 3, "empty (0 bytes)"),
    Case("train-labels-all-empty", TD(_empty_labels), 3, "no labels at all"),
    Case("train-labels-folder-missing", TD(lambda w: shutil.rmtree(w.data.parent / "train" / "labels")), 3,
         "no labels at all"),
    Case("train-class-without-labels", TD(_labels_without(4)), 3, "no label of black-pawn"),
    Case("train-class-unknown", lambda w: T()(w)[:5] + ["--classes", "unicorn"] + TINY, 3, "unknown class 'unicorn'"),
    Case("train-class-id-out-of-range", lambda w: T()(w)[:5] + ["--classes", "42"] + TINY, 3, "outside 0..12"),
    Case("train-class-twice", lambda w: T()(w)[:5] + ["--classes", "white-pawn,10"] + TINY, 3, "given twice"),
    Case("train-eval-data-lacks-classes", lambda w: T("--eval-data", w.write_yaml(
        "ev.yaml", {"names": ["white-pawn"], "val": str(w.data.parent / "val/images")}))(w), 3, "lack ['black-pawn']"),
    Case("train-coco-no-categories", TC(lambda r: r.pop("categories")), 3, "'categories' is missing"),
    Case("train-coco-image-without-file", TC(lambda r: r["images"][0].update(file_name="gone.jpg")), 3,
         "image(s) without a file"),
    Case("train-coco-unknown-category", TC(lambda r: r["annotations"][0].update(category_id=99)), 3,
         "category_id 99 is not in 'categories'"),
    Case("train-coco-unknown-image-id", TC(lambda r: r["annotations"][0].update(image_id=5)), 3,
         "image_id 5 is not in 'images'"),
    Case("train-coco-images-with-yaml", T("--images", "."), 2, "is only for a COCO .json --data"),
    Case("train-coco-images-not-a-folder", lambda w: ["train", "--data", _coco_json(w), "--images", w.img(), "--out",
                                                      w.root / "out", *CLS, *TINY], 3, "is a file"),
    Case("train-coco-not-json", lambda w: ["train", "--data", w.write_yaml("x.json", "{nope"), "--out", w.root / "out",
                                           *CLS, *TINY], 3, "not valid JSON"),
    # --- train: output folder (exit 4) ----------------------------------------------------------------------------
    Case("train-out-exists", lambda w: ((w.root / "out").mkdir(), T()(w))[1], 4, "already exists"),
    Case("train-out-is-file", lambda w: (_out_file(w), T()(w))[1], 4, "already exists"),
    Case("train-out-parent-is-file", lambda w: ((w.root / "f").write_text("x"),
                                                T()(w)[:4] + [w.root / "f" / "out"] + T()(w)[5:])[1], 4, "is a file"),
    Case("train-resume-missing", T("--resume"), 4, "does not exist"),
    Case("train-resume-finished", lambda w: T(*_finished_out(w))(w), 4, "finished run"),
    Case("train-resume-foreign-folder", lambda w: ((w.root / "out").mkdir(), (w.root / "out" / "x").write_text("x"),
                                                   T("--resume")(w))[2], 4, "not an interrupted cldet run"),
    Case("train-resume-other-options", lambda w: (w.interrupted(w.root / "out", options={"train": {"epochs": 99}}),
                                                  T("--resume")(w))[1], 2, "differ from the interrupted run"),
    Case("train-resume-other-command", lambda w: (w.interrupted(w.root / "out", command="learn"),
                                                  T("--resume")(w))[1], 4, "interrupted `cldet learn` run"),
    # --- learn ----------------------------------------------------------------------------------------------------
    Case("learn-from-missing", lambda w: ["learn", "--from", w.root / "nope", "--data", w.data, "--new-classes",
                                          "black-pawn", "--out", w.root / "out"], 4, "does not exist"),
    Case("learn-from-not-a-run", lambda w: ((w.root / "dir").mkdir(), ["learn", "--from", w.root / "dir", "--data",
                                            w.data, "--new-classes", "black-pawn", "--out", w.root / "out"])[1], 4,
         "no lineage.json"),
    Case("learn-from-tampered-checkpoint", lambda w: (open(w.run / "model.pt", "ab").write(b"\0"), L()(w))[1], 4,
         "does not match lineage"),
    Case("learn-from-pickle-checkpoint", lambda w: (w.pickle(w.run / "model.pt"), w.resign(), L()(w))[2], 4,
         "weights-only", hostile=True),
    Case("learn-from-evil-activation", LT(lambda b, w: _act(b, w.marker)), 4, "activation", hostile=True),
    Case("learn-from-evil-module", LT(lambda b, w: _module(b, "attempt_download_asset")), 4, "not an allowed layer",
         hostile=True),
    Case("learn-from-evil-string-arg", LT(lambda b, w: _arg(b, "__import__('os')")), 4, "string argument",
         hostile=True),
    Case("learn-from-unknown-yaml-key", LT(lambda b, w: b["yaml"].update(download="x")), 4, "unknown architecture"),
    Case("learn-from-bad-names", LT(lambda b, w: b.update(names=[1, 2])), 4, "class names"),
    Case("learn-out-inside-from", lambda w: L()(w)[:8] + [w.run / "x"] + L()(w)[9:], 4, "never writes into it"),
    Case("learn-new-class-unknown", L(new="unicorn"), 3, "unknown new class 'unicorn'"),
    Case("learn-new-class-known", L(new="white-pawn"), 4, "already known"),
    Case("learn-new-class-without-labels", lambda w: (_labels_without(4)(w), L()(w))[1], 3, "no label of black-pawn"),
    Case("learn-imgsz-differs", L("--imgsz", "96"), 2, "--imgsz 96 differs from the previous run's 320"),
    Case("learn-pseudo-conf-above-1", L("--pseudo-conf", "5"), 2, "--pseudo-conf 5"),
    Case("learn-pseudo-conf-negative", L("--pseudo-conf", "-0.1"), 2, "--pseudo-conf -0.1"),
    Case("learn-nms-iou-above-1", L("--pseudo-nms-iou", "1.5"), 2, "--pseudo-nms-iou 1.5"),
    Case("learn-feature-weight-negative", L("--feature-weight", "-1"), 2, "--feature-weight -1"),
    Case("learn-method-unknown", L("--method", "magic"), 2, "unknown method 'magic'"),
    Case("learn-replay-without-images", L("--method", "replay"), 2, "--replay-images"),
    Case("learn-replay-images-without-replay", L("--replay-images", "4"), 2, "applies to --method replay only"),
    Case("learn-eval-data-lacks-old-classes", lambda w: L("--eval-data", w.write_yaml(
        "ev.yaml", {"names": ["black-pawn"], "val": str(w.data.parent / "val/images")}))(w), 3, "lack"),
    Case("learn-label-bad-line", lambda w: (w.label(k=2).write_text("4 0.5 0.5\n"), L()(w))[1], 3, "expected 5"),
    Case("learn-image-truncated", lambda w: (_truncate(w), L()(w))[1], 3, "truncated"),
    Case("learn-out-exists", lambda w: ((w.root / "out").mkdir(), L()(w))[1], 4, "already exists"),
    Case("learn-coco-images-missing", lambda w: ["learn", "--from", w.run, "--data", _coco_json(w), "--images",
                                                 w.root / "nope", "--new-classes", "black-pawn", "--out",
                                                 w.root / "out"], 3, "folder does not exist"),
    Case("learn-coco-image-without-file", lambda w: [
        "learn", "--from", w.run, "--data", _coco_json(w, lambda r: r["images"][0].update(file_name="gone.jpg")),
        "--images", w.data.parent / "train" / "images", "--new-classes", "black-pawn", "--out", w.root / "out"], 3,
        "image(s) without a file"),
    # --- eval -----------------------------------------------------------------------------------------------------
    Case("eval-run-missing", E(run=lambda w: w.root / "nope"), 4, "does not exist"),
    Case("eval-run-evil-activation", lambda w: (w.tamper_model(lambda b: _act(b, w.marker)), E()(w))[1], 4,
         "activation", hostile=True),
    Case("eval-run-evil-module", lambda w: (w.tamper_model(lambda b: _module(b, "yaml_load")), E()(w))[1], 4,
         "not an allowed layer", hostile=True),
    Case("eval-data-missing", lambda w: ["eval", "--run", w.run, "--data", w.root / "nope.yaml"], 3, "does not exist"),
    Case("eval-split-missing", E("--split", "test"), 3, "no 'test' split"),
    Case("eval-data-lacks-classes", lambda w: ["eval", "--run", w.run, "--data", w.write_yaml(
        "ev.yaml", {"names": ["white-pawn"], "val": str(w.data.parent / "val/images")})], 3, "lack"),
    Case("eval-image-truncated", lambda w: ["eval", "--run", w.run, "--data", _smoke_truncate(w)], 3, "truncated"),
    Case("eval-out-exists", lambda w: ((w.root / "rep.json").write_text("{}"), E("--out", w.root / "rep.json")(w))[1],
         4, "never overwrites"),
    Case("eval-detections-exists", lambda w: ((w.root / "d.json").write_text("[]"),
                                              E("--detections", w.root / "d.json")(w))[1], 4, "never overwrites"),
    Case("eval-detections-folder-missing", lambda w: E("--detections", w.root / "nope" / "d.json")(w), 2,
         "does not exist"),
    Case("eval-out-folder-missing", lambda w: E("--out", w.root / "nope" / "rep.json")(w), 2, "does not exist"),
    Case("eval-joint-not-a-run", lambda w: ((w.root / "j").mkdir(), E("--joint", w.root / "j")(w))[1], 4,
         "no lineage.json"),
    Case("eval-coco-images-with-yaml", E("--images", "."), 2, "is only for a COCO .json --data"),
    Case("eval-coco-unknown-category", lambda w: [
        "eval", "--run", w.run, "--data", _coco_json(w, lambda r: r["annotations"][0].update(category_id=99)),
        "--images", w.data.parent / "train" / "images"], 3, "category_id 99 is not in 'categories'"),
    # --- export ---------------------------------------------------------------------------------------------------
    Case("export-run-missing", lambda w: ["export", "--run", w.root / "nope"], 4, "does not exist"),
    Case("export-target-unknown", X("--target", "gpu"), 2, "unknown target 'gpu'"),
    Case("export-int8-unknown", X("--int8", "int4"), 2, "unknown int8 'int4'"),
    Case("export-calib-missing", lambda w: X("--calib", w.root / "nope")(w), 3, "calibration folder"),
    Case("export-calib-images-0", X("--calib-images", "0"), 2, "--calib-images 0"),
    Case("export-keep-float-bad-regex", X("--keep-float", "(["), 2, "not a regular expression"),
    Case("export-percentile-0", X("--percentile", "0"), 2, "--percentile 0"),
    Case("export-engine-with-cpu-target", X("--engine", "--target", "cpu"), 2, "--engine with --target cpu"),
    Case("export-data-missing", lambda w: ["export", "--run", w.run, "--data", w.root / "nope.yaml", "--out",
                                           w.root / "exp"], 2, "not found"),
    Case("export-split-missing", X("--split", "test"), 3, "no 'test' split"),
    Case("export-image-truncated", lambda w: (_truncate(w), w.img("val", 0).write_bytes(b""), X()(w))[2], 3,
         "empty (0 bytes)"),
    Case("export-out-is-file", lambda w: ((w.root / "exp").write_text("x"), X()(w))[1], 4, "a file is in the way"),
    Case("export-existing-artifacts", lambda w: ((w.root / "exp").mkdir(), (w.root / "exp" / "manifest.json")
                                                 .write_text("{}"), X()(w))[2], 4, "--force"),
    Case("export-run-evil-activation", lambda w: (w.tamper_model(lambda b: _act(b, w.marker)), X()(w))[1], 4,
         "activation", hostile=True),
    # --- check ----------------------------------------------------------------------------------------------------
    Case("check-artifact-missing", lambda w: C()(w)[:2] + [w.root / "nope.onnx"] + C()(w)[3:], 5, "does not exist"),
    Case("check-artifact-not-in-manifest", lambda w: (w.smoke, (w.root / "m.onnx").write_bytes(b"x"),
                                                      C()(w)[:2] + [w.root / "m.onnx"] + C()(w)[3:])[2], 5,
         "is not in"),
    Case("check-manifest-missing", lambda w: C()(w)[:4] + [w.root / "nope.json"] + C()(w)[5:], 5, "does not exist"),
    Case("check-manifest-not-json", lambda w: ((w.smoke / "manifest.json").write_text("{nope"), C()(w))[1], 5,
         "not valid JSON"),
    Case("check-data-missing", C(data=lambda w: w.root / "nope.yaml"), 3, "does not exist"),
    Case("check-image-truncated", C(data=_smoke_truncate), 3, "truncated"),
    Case("check-label-bad-line", C(data=lambda w: (sorted((w.smoke / "labels").iterdir())[0].write_text("1 2\n"),
                                                   w.smoke / "data.yaml")[1]), 3, "expected 5 columns"),
    Case("check-split-missing", C("--split", "train"), 3, "no 'train' split"),
    Case("check-tolerance-negative", C("--tolerance", "-1"), 2, "--tolerance -1"),
    Case("check-report-folder-missing", lambda w: C()(w)[:8] + [w.root / "nope" / "r.json"] + C()(w)[9:], 2,
         "does not exist"),
    # --- bench ----------------------------------------------------------------------------------------------------
    Case("bench-artifact-missing", lambda w: ["bench", "--artifact", w.root / "nope.onnx"], 5, "does not exist"),
    Case("bench-artifact-unknown-type", lambda w: ["bench", "--artifact", w.data], 5, "unknown artifact type"),
    Case("bench-iters-0", B("--iters", "0"), 2, "--iters 0"),
    Case("bench-batch-0", B("--batch", "0"), 2, "must be at least 1"),
    Case("bench-batch-not-numbers", B("--batch", "a,b"), 2, "comma list of int"),
    Case("bench-warmup-negative", B("--warmup", "-1"), 2, "--warmup -1"),
    Case("bench-data-image-truncated", lambda w: B("--data", _smoke_truncate(w))(w), 3, "truncated"),
    Case("bench-out-holds-results", lambda w: ((w.root / "bench").mkdir(), (w.root / "bench" / "bench.json")
                                               .write_text("{}"), B()(w))[2], 4, "--exist-ok"),
    Case("bench-out-is-file", lambda w: ((w.root / "bench").write_text("x"), B()(w))[1], 2, "is a file"),
    # --- predict --------------------------------------------------------------------------------------------------
    Case("predict-source-missing", lambda w: P(source=w.root / "nope.jpg")(w), 3, "does not exist"),
    Case("predict-source-unknown-type", lambda w: P(source=w.data)(w), 3, "unknown file type '.yaml'"),
    Case("predict-source-empty-folder", lambda w: ((w.root / "empty").mkdir(), P(source=w.root / "empty")(w))[1], 3,
         "holds no images or videos"),
    Case("predict-image-truncated", lambda w: (_truncate(w), P(source=w.data.parent / "train" / "images")(w))[1], 3,
         "truncated"),
    Case("predict-video-undecodable", lambda w: ((w.root / "clip.mp4").write_bytes(b"\0" * 4096),
                                                 P(source=w.root / "clip.mp4")(w))[1], 3, "cannot be decoded"),
    Case("predict-video-text-as-mp4", lambda w: (
        (w.root / "src").mkdir(), shutil.copy(w.img(), w.root / "src"), (w.root / "src" / "notes.mp4").write_text(
            "not a video\n"), P(source=w.root / "src")(w))[3], 3, "notes.mp4 cannot be decoded"),
    Case("predict-run-video-undecodable", lambda w: ((w.root / "clip.mp4").write_text("not a video\n"), [
        "predict", "--run", w.run, "--source", w.root / "clip.mp4", "--out", w.root / "pred", "--quiet"])[1], 3,
        "clip.mp4 cannot be decoded"),
    Case("predict-run-and-artifact", lambda w: P("--run", w.run)(w), 2, "exactly one of --run"),
    Case("predict-no-model", lambda w: P()(w)[:1] + P()(w)[3:], 2, "exactly one of --run"),
    Case("predict-conf-above-1", P("--conf", "1.5"), 2, "--conf 1.5"),
    Case("predict-artifact-missing", lambda w: P()(w)[:2] + [w.root / "nope.onnx"] + P()(w)[3:], 5, "does not exist"),
    Case("predict-artifact-engine", lambda w: P()(w)[:2] + [w.root / "m.engine"] + P()(w)[3:], 5, "ONNX artifacts"),
    Case("predict-out-exists", lambda w: ((w.root / "pred").mkdir(), P()(w))[1], 4, "--exist-ok"),
    Case("predict-out-is-file", lambda w: ((w.root / "pred").write_text("x"), P("--exist-ok")(w))[1], 4, "is a file"),
    Case("predict-run-missing", lambda w: ["predict", "--run", w.root / "nope", "--source", w.img(),
                                           "--out", w.root / "pred"], 4, "does not exist"),
    Case("predict-run-evil-activation", lambda w: (w.tamper_model(lambda b: _act(b, w.marker)),
                                                   ["predict", "--run", w.run, "--source", w.img(), "--out",
                                                    w.root / "pred"])[1], 4, "activation", hostile=True),
    # --- import ---------------------------------------------------------------------------------------------------
    Case("import-without-trust", lambda w: ["import", w.pickle(w.root / "best.pt"), "--out", w.root / "imp"], 2,
         "--trust", hostile=True),
    Case("import-weights-missing", lambda w: ["import", w.root / "nope.pt", "--out", w.root / "imp", "--trust"], 2,
         "does not exist"),
    Case("import-weights-empty", lambda w: ((w.root / "e.pt").write_bytes(b""),
                                            ["import", w.root / "e.pt", "--out", w.root / "imp", "--trust"])[1], 2,
         "is empty"),
    Case("import-not-a-model", lambda w: ["import", w.pickle(w.root / "x.pt", {"epoch": 3}), "--out", w.root / "imp",
                                          "--trust"], 2, "holds no Ultralytics model"),
    Case("import-cldet-run-checkpoint", lambda w: ["import", w.run / "model.pt", "--out", w.root / "imp", "--trust"],
         2, "holds no Ultralytics model"),
    Case("import-classification-model", lambda w: ["import", _ultralytics(w, "yolov8n-cls.yaml"), "--out",
                                                   w.root / "imp", "--trust"], 2,
         "a classification model, not a detection model"),
    Case("import-segmentation-model", lambda w: ["import", _ultralytics(w, "yolov8n-seg.yaml"), "--out",
                                                 w.root / "imp", "--trust"], 2,
         "a segmentation model, not a detection model"),
    Case("import-out-exists", lambda w: ((w.root / "imp").mkdir(), ["import", w.pickle(w.root / "best.pt"), "--out",
                                                                    w.root / "imp", "--trust"])[1], 4,
         "already exists"),
    # --- demo -----------------------------------------------------------------------------------------------------
    Case("demo-epochs-negative", lambda w: ["demo", "--out", w.root / "demo", "--epochs", "-1"], 2, "--epochs -1"),
    Case("demo-out-is-file", lambda w: ((w.root / "demo").write_text("x"), ["demo", "--out", w.root / "demo"])[1], 4,
         "is a file"),
]


def snapshot(root: Path) -> dict[str, str]:
    """Every file and folder under `root` with a digest of its content: what a refused command must leave alone."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.is_symlink():
            out[rel] = f"link:{p.readlink()}"
        elif p.is_dir():
            out[rel] = "dir"
        else:
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_refused_before_work(case: Case, tmp_path: Path, monkeypatch) -> None:
    w = W(tmp_path)
    args = [str(a) for a in case.argv(w)]
    monkeypatch.chdir(tmp_path)  # a stray default output (check's report) would land in the snapshot
    before = snapshot(tmp_path)
    r = runner.invoke(app, args, catch_exceptions=False)
    assert r.exit_code == case.code, f"exit {r.exit_code}, expected {case.code}: {r.output[-2000:]}"
    assert case.msg in r.output, r.output[-2000:]
    assert "Traceback" not in r.output
    assert not w.marker.exists(), "the planted payload ran"
    after = snapshot(tmp_path)
    assert after == before, {k: (before.get(k), after.get(k)) for k in set(before) | set(after)
                             if before.get(k) != after.get(k)}


def test_enough_cases_across_every_command() -> None:
    commands = {c.id.split("-")[0] for c in CASES}
    assert commands == {"train", "learn", "eval", "export", "check", "bench", "demo", "predict", "import"}
    assert len(CASES) >= 60 and len({c.id for c in CASES}) == len(CASES)


def test_reliability_doc_lists_every_case() -> None:
    doc = (ROOT / "docs" / "reliability.md").read_text()
    missing = [c.id for c in CASES if f"`{c.id}`" not in doc]
    assert not missing, f"docs/reliability.md lacks {missing}"


@pytest.mark.slow
def test_planted_pickles_are_never_loaded(tmp_path: Path) -> None:
    """An interrupted run with pickles planted where Ultralytics would load them (its last.pt and init.pt, a labels
    cache) resumes to a finished run without loading any: cldet reads only its own weights-only state."""
    import numpy as np

    from cldet.detector.lineage import read_lineage
    from cldet.detector.plan import plan_train
    from cldet.detector.jobs import TrainJob
    from cldet.detector.config import TrainConfig

    w = W(tmp_path)
    out = tmp_path / "out"
    tcfg = TrainConfig(epochs=1, imgsz=64, batch=4, workers=0)
    plan = plan_train(TrainJob(data=w.data, out=out, classes="white-pawn,black-pawn"), tcfg)
    w.interrupted(out, options=json.loads(json.dumps(plan.options)))
    for rel in ("train/init.pt", "train/weights/last.pt", "train/weights/best.pt"):
        w.pickle(out / rel)
    (out / "data" / "train").mkdir(parents=True)
    with open(out / "data" / "train" / "labels.cache", "wb") as f:
        np.save(f, np.array({"x": Payload(w.marker)}, dtype=object), allow_pickle=True)
    r = runner.invoke(app, [str(a) for a in T("--resume")(w)], catch_exceptions=False)
    assert r.exit_code == 0, r.output[-3000:]
    assert not w.marker.exists(), "a planted pickle was loaded"
    assert read_lineage(out).classes == ["white-pawn", "black-pawn"]
