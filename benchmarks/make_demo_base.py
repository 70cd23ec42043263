"""Copy a finished base run into the package as the demo's base model (cldet/assets/demo-base) with its README.

The demo base is the chess13 2-step protocol's seed-0 base run, i.e. what this command trains:

    cldet train --data ../shared/data/chess13/data.yaml --out runs/demo-base --curves \\
        --classes white-bishop,white-king,white-knight,white-pawn,white-queen,white-rook \\
        --epochs 40 --imgsz 320 --batch 16 --seed 0
    .venv/bin/python -m benchmarks.make_demo_base --run runs/demo-base

Kept: model.pt (weights-only), lineage.json (its sha256, data fingerprints, metrics), curves.json (val mAP after
every epoch: the convergence evidence) and calib/ (the calibration reservoir that `learn` carries forward).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from cldet.core.assets import DEMO_BASE
from cldet.detector.lineage import read_lineage

KEEP = ("model.pt", "lineage.json", "curves.json", "calib")


def readme(run: Path) -> str:
    lin = read_lineage(run)
    inc = lin.last
    t = inc.hyper["train"]
    curve = json.loads((run / "curves.json").read_text()) if (run / "curves.json").is_file() else []
    last3 = [r["metrics"]["all"]["map50_95"] for r in curve[-4:]]
    moved = 100 * (max(last3) - min(last3)) if last3 else float("nan")
    m = inc.metrics["all"]
    return f"""# demo-base

The base model `cldet demo` learns from: yolov5nu ({lin.imgsz} px) trained by `cldet train` on the six white piece
classes of chess13's full training split (606 images), from the COCO backbone+neck in `../weights`.

- classes: {", ".join(lin.classes)}
- training: {t["epochs"]} epochs, batch {t["batch"]}, {t["imgsz"]} px, seed {t["seed"]}, {t["optimizer"]} lr0 {t["lr0"]},
  Ultralytics' default augmentation; {inc.seconds / 60:.0f} min on a 2-core CPU
- converged: chess13 val mAP50-95 {m["map50_95"]:.3f} (mAP50 {m["map50"]:.3f}); it moved {moved:.1f} points over the
  last 3 epochs (curves.json has every epoch)
- data fingerprints (sha256 over image names, sizes and label files): train `{inc.data["train_fingerprint"][:16]}...`,
  val `{inc.data["val_fingerprint"][:16]}...` (lineage.json has them in full)
- model.pt sha256 `{inc.artifacts["model.pt"]}` (checked by cldet whenever the run is read)

Regenerate (same settings and seed; it is also the seed-0 base of `benchmarks/protocols/chess13-2step.yaml`):

```
cldet train --data ../shared/data/chess13/data.yaml --out runs/demo-base --curves \\
    --classes {",".join(lin.classes)} \\
    --epochs {t["epochs"]} --imgsz {t["imgsz"]} --batch {t["batch"]} --seed {t["seed"]}
.venv/bin/python -m benchmarks.make_demo_base --run runs/demo-base
```

Licenses: the chess images are the public-domain Roboflow "Chess Pieces" dataset (see `../chess-mini/README.md`);
the weights derive from Ultralytics' COCO-trained YOLOv5n (AGPL-3.0, see `../weights/README.md`), as does cldet.
`model.pt` holds tensors and plain data only (read with `torch.load(weights_only=True)`). The paths inside
lineage.json are those of the machine that trained it; nothing reads them back.
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True, help="a finished `cldet train` run")
    ap.add_argument("--out", type=Path, default=DEMO_BASE, help="where the demo base goes (replaced)")
    args = ap.parse_args(argv)
    read_lineage(args.run)  # a finished run whose model.pt matches its lineage
    tmp = args.out.with_name(args.out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in KEEP:
        src = args.run / name
        if src.is_dir():
            shutil.copytree(src, tmp / name)
        elif src.is_file():
            shutil.copy2(src, tmp / name)
    (tmp / "README.md").write_text(readme(args.run))
    shutil.rmtree(args.out, ignore_errors=True)
    tmp.rename(args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
