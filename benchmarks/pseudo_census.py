"""Pseudo-label census: which old classes would a run, used as the teacher of the next increment, label?

    .venv/bin/python -m benchmarks.pseudo_census --run benchmarks/work/chess13-4step/seed0/ours/step2 \
        --data ../shared/data/chess13/data.yaml

For every class the run knows, over the training images of --data: how many ground-truth boxes there are, how many
boxes the run labels with a score above --conf (the teacher's pseudo labels of `cldet learn`: one class per anchor,
class-wise NMS), and how many of those match a ground-truth box of the same class (IoU >= 0.5). Recall is what the
next increment keeps of a class through pseudo labels; a class learned late with low recall is one the next
increment trains as background wherever no pseudo label claims it. Classes are grouped by the increment that added
them. Clean (letterboxed) images, where training sees augmented ones: a census, not the training signal itself.
Writes benchmarks/results/pseudo-census-<name>.json/.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix of xyxy boxes (n, 4) x (m, 4)."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clip(0).prod(-1)
    area = lambda x: (x[:, 2:] - x[:, :2]).clip(0).prod(-1)  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter + 1e-9)


def match(det_boxes: np.ndarray, det_scores: np.ndarray, gt_boxes: np.ndarray, iou: float = 0.5) -> int:
    """Greedy one-to-one matches of detections (by descending score) to ground-truth boxes at IoU >= iou."""
    if not len(det_boxes) or not len(gt_boxes):
        return 0
    m = _iou(det_boxes[np.argsort(-det_scores)], gt_boxes)
    used = np.zeros(len(gt_boxes), bool)
    hits = 0
    for row in m:
        row = np.where(used, -1.0, row)
        j = int(row.argmax())
        if row[j] >= iou:
            used[j] = True
            hits += 1
    return hits


def census(run: Path, data: Path, split: str = "train", conf: float = 0.5, nms_iou: float = 0.6,
           limit: int | None = None) -> dict:
    from tqdm import tqdm

    from cldet.core.data import load_dataset
    from cldet.core.processing import letterbox, load_image, postprocess
    from cldet.detector.lineage import read_lineage
    from cldet.detector.model import load_checkpoint, torch_predict

    lin = read_lineage(run)
    model, meta = load_checkpoint(run / "model.pt")
    names, imgsz = list(meta["names"]), int(meta["imgsz"])
    predict = torch_predict(model)
    ds = load_dataset(data)
    to_model = np.array([names.index(n) if n in names else -1 for n in ds.names], np.int64)
    n = len(names)
    gt_n, det_n, hit_n = np.zeros(n, int), np.zeros(n, int), np.zeros(n, int)
    images = ds.images(split)[:limit]
    for path in tqdm(images, desc=f"census {run.name}", unit="img"):
        img = load_image(path)
        x, lb = letterbox(img, imgsz)
        det = postprocess(predict(x[None])[0], lb, conf=conf, iou=nms_iou)
        rows = ds.label_rows(path)
        h, w = img.shape[:2]
        cls = to_model[rows[:, 0].astype(int)] if len(rows) else np.zeros(0, int)
        xy = rows[:, 1:5] * [w, h, w, h] if len(rows) else np.zeros((0, 4))
        gt = np.concatenate([xy[:, :2] - xy[:, 2:] / 2, xy[:, :2] + xy[:, 2:] / 2], 1)
        for c in range(n):
            g, d = gt[cls == c], det.classes == c
            gt_n[c] += len(g)
            det_n[c] += int(d.sum())
            hit_n[c] += match(det.boxes[d], det.scores[d], g)
    step_of = {c: inc.index for inc in lin.increments for c in inc.classes_added}
    rows = [{"class": names[c], "step": step_of.get(names[c]), "gt": int(gt_n[c]), "pseudo": int(det_n[c]),
             "matched": int(hit_n[c]), "recall": hit_n[c] / gt_n[c] if gt_n[c] else None,
             "precision": hit_n[c] / det_n[c] if det_n[c] else None} for c in range(n)]
    groups = {}
    for s in sorted({r["step"] for r in rows}):
        sel = [r for r in rows if r["step"] == s]
        g, d, m = (sum(r[k] for r in sel) for k in ("gt", "pseudo", "matched"))
        groups[f"step{s}"] = {"gt": g, "pseudo": d, "matched": m, "recall": m / g if g else None,
                              "precision": m / d if d else None}
    return {"run": str(run), "data": str(data), "split": split, "images": len(images), "conf": conf,
            "nms_iou": nms_iou, "classes": rows, "groups": groups}


def to_markdown(res: dict, title: str) -> str:
    f = lambda v: "" if v is None else f"{v:.2f}"  # noqa: E731
    out = [f"### Pseudo-label census: {title}", "",
           f"Teacher `{res['run']}` on {res['images']} {res['split']} images of `{res['data']}`, score > "
           f"{res['conf']}, class-wise NMS {res['nms_iou']}; matched = same class, IoU >= 0.5.", "",
           "| group | GT boxes | pseudo boxes | matched | recall | precision |", "|---|---|---|---|---|---|"]
    out += [f"| {g} | {v['gt']} | {v['pseudo']} | {v['matched']} | {f(v['recall'])} | {f(v['precision'])} |"
            for g, v in res["groups"].items()]
    out += ["", "| class | step | GT boxes | pseudo boxes | recall | precision |", "|---|---|---|---|---|---|"]
    out += [f"| {r['class']} | {r['step']} | {r['gt']} | {r['pseudo']} | {f(r['recall'])} | {f(r['precision'])} |"
            for r in res["classes"]]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, action="append", required=True, help="finished run (repeat for several)")
    ap.add_argument("--data", type=Path, required=True, help="dataset yaml whose images the next increment trains on")
    ap.add_argument("--split", default="train", help="split to count on (default: train)")
    ap.add_argument("--conf", type=float, default=0.5, help="pseudo-label score threshold (cldet learn's default 0.5)")
    ap.add_argument("--limit", type=int, default=None, help="first N images only (default: all)")
    ap.add_argument("--name", default=None, help="results file name part (default: the runs' folder names)")
    ap.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results", help="output folder")
    args = ap.parse_args(argv)
    for run in args.run:
        if not (run / "lineage.json").is_file():
            ap.error(f"--run {run}: not a finished cldet run (no lineage.json)")
    if not args.data.is_file():
        ap.error(f"--data {args.data}: no such file")
    res = [census(r, args.data, args.split, args.conf, limit=args.limit) for r in args.run]
    name = args.name or "-".join(r.name for r in args.run)
    md = "\n".join(to_markdown(r, Path(r["run"]).name) for r in res)
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / f"pseudo-census-{name}.json").write_text(json.dumps(res, indent=1))
    (args.results / f"pseudo-census-{name}.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
