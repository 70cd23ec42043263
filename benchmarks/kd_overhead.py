"""Teacher overhead of an increment: time per training iteration, plain fine-tuning vs cldet's default, and vs the
default with a second teacher for the new classes (`--new-teacher`; its run costs a fine-tuning increment on top).

    .venv/bin/python -m benchmarks.kd_overhead --run RUN [--imgsz 320] [--batch 16] [--iters 10]

Both variants train the same widened student on the same real batches (letterboxed images from the
bundled chess subset with their labels). They are alternated in one process, so machine load hits
both alike. The ratio is per iteration (forward + loss + backward + SGD step); data loading is left
out and is the same for both. Writes benchmarks/results/kd-overhead.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from cldet.core.assets import CHESS_MINI

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    import torch

    from cldet.core.data import label_path_for, load_dataset, read_labels
    from cldet.core.processing import letterbox, load_image
    from cldet.detector.config import DEFAULT_METHOD, METHODS, DistillConfig
    from cldet.detector.distill import Distiller, IncrementalDetectionModel
    from cldet.detector.lineage import read_lineage
    from cldet.detector.model import load_checkpoint, widen_head

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True, help="a finished run (its model is the teacher)")
    ap.add_argument("--data", type=Path, default=CHESS_MINI)
    ap.add_argument("--imgsz", type=int, default=320)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--iters", type=int, default=10)
    args = ap.parse_args()
    torch.manual_seed(0)
    lin = read_lineage(args.run)
    teacher, _ = load_checkpoint(args.run / "model.pt")
    ds = load_dataset(args.data)
    new = [n for n in ds.names if n not in lin.classes][:6]
    names = lin.classes + new
    imgs = ds.images("train")[: args.batch]
    x = torch.from_numpy(np.stack([letterbox(load_image(p), args.imgsz)[0] for p in imgs]))
    cls, boxes, bidx = [], [], []
    for i, p in enumerate(imgs):  # labels of the new classes only, as an increment sees them
        for r in read_labels(label_path_for(p), ds.nc):  # (approximate boxes: letterbox padding ignored)
            if ds.names[int(r[0])] in new:
                cls.append([names.index(ds.names[int(r[0])])]), boxes.append(r[1:].tolist()), bidx.append(i)
    batch = {"img": x, "cls": torch.tensor(cls, dtype=torch.float32), "bboxes": torch.tensor(boxes), "batch_idx": torch.tensor(bidx, dtype=torch.float32)}

    def student():
        wide, _ = widen_head(teacher, lin.classes, new)
        m = IncrementalDetectionModel(wide.yaml, nc=len(names), verbose=False)
        m.load_state_dict(wide.state_dict())
        from ultralytics.cfg import get_cfg

        m.args = get_cfg()
        m.train()
        return m

    plain, ours, two = student(), student(), student()
    cfg = {"teacher": "", "nc_old": len(lin.classes), "terms": METHODS[DEFAULT_METHOD], **DistillConfig().as_dict()}
    ours.attach(Distiller(teacher, len(lin.classes), cfg))
    # the second teacher's weights do not change its cost: a widened copy of the teacher stands in for the
    # fine-tuned run (same architecture, old + new classes)
    two.attach(Distiller(teacher, len(lin.classes), cfg, new_teacher=student().eval()))
    opts = {id(m): torch.optim.SGD(m.parameters(), lr=1e-4, momentum=0.9) for m in (plain, ours, two)}

    def step(m) -> float:
        t = time.perf_counter()
        loss, _ = m.loss(dict(batch))
        opts[id(m)].zero_grad()
        loss.sum().backward()
        opts[id(m)].step()
        return time.perf_counter() - t

    second = f"{DEFAULT_METHOD} + new teacher"
    variants = {"finetune": plain, DEFAULT_METHOD: ours, second: two}
    for m in variants.values():
        step(m)  # warm-up
    times = {k: [] for k in variants}
    for _ in range(args.iters):
        for k, m in variants.items():
            times[k].append(step(m))
    med = {k: statistics.median(v) for k, v in times.items()}
    res = {"run": str(args.run), "imgsz": args.imgsz, "batch": args.batch, "iters": args.iters, "threads": torch.get_num_threads(),
           "seconds_per_iter": med, "ratio": med[DEFAULT_METHOD] / med["finetune"],
           "ratio_new_teacher": med[second] / med["finetune"],
           # --new-teacher needs its fine-tuning run first: one fine-tuning increment plus this one
           "increment_cost_new_teacher": 1 + med[second] / med["finetune"]}
    out = ROOT / "benchmarks" / "results" / "kd-overhead.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"median s/iter: finetune {med['finetune']:.3f}, {DEFAULT_METHOD} {med[DEFAULT_METHOD]:.3f} "
          f"({res['ratio']:.2f}x), with a second teacher {med[second]:.3f} ({res['ratio_new_teacher']:.2f}x; with its "
          f"fine-tuning run, {res['increment_cost_new_teacher']:.2f}x a fine-tuning increment)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
