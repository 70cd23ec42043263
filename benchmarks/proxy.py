"""A cheap proxy of the ablation, in CPU minutes: the demo's setting (bundled base, bundled chess photos).

    .venv/bin/python -m benchmarks.proxy --variants default,finetune,no-feature,no-response
    .venv/bin/python -m benchmarks.proxy --variants ... --seed 1 --epochs 12

Each variant of benchmarks.ablation learns the six black piece classes from the shipped demo base (six white
classes, converged on the full chess13 split) on the 72 bundled photos, 12 epochs, 320 px, and is scored on the
24 bundled validation photos. A run takes 2-3 minutes on 2 CPU cores, against 12-15 for one increment of the
full protocol: use it to sort hypotheses, then confirm the survivors on the converged protocols (benchmarks.ablation).
With 24 validation photos, differences of a few points are within noise. Writes
benchmarks/results/proxy-chess-mini-seed<N>.{json,md}; finished runs under --work are reused.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from cldet import api
from cldet.core.assets import CHESS_MINI, DEMO_BASE
from cldet.demo import BLACK
from cldet.detector.config import DEFAULT_METHOD, TrainConfig
from cldet.detector.lineage import read_lineage
from cldet.protocol import reuse

from .ablation import VARIANTS, write_results

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "work" / "proxy-chess-mini")
    ap.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=12, help="epochs per increment (the demo's 12)")
    ap.add_argument("--variants", default="default,finetune", help=f"comma list of: {', '.join(VARIANTS)}")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    tcfg = TrainConfig(epochs=args.epochs, imgsz=read_lineage(DEMO_BASE).imgsz, batch=8, workers=2, seed=args.seed)
    root = args.work / f"seed{args.seed}-e{args.epochs}"
    rows = {}
    for key in args.variants.split(","):
        name, folder, over = VARIANTS[key]
        run = root / folder
        settings = {**tcfg.as_dict(), "method": DEFAULT_METHOD, **over}
        reuse(run, lambda: api.learn(from_run=DEMO_BASE, data=CHESS_MINI, new_classes=",".join(BLACK), out=run,
                                     eval_data=CHESS_MINI, old_labels=False, **settings))
        inc = read_lineage(run).last
        rows[name] = {"run": folder, "settings": over, "metrics": inc.metrics, "seconds": inc.seconds}
    base = read_lineage(DEMO_BASE)
    from cldet.detector.model import load_checkpoint
    from cldet.detector.runs import evaluate_model

    model, meta = load_checkpoint(DEMO_BASE / "model.pt")
    base_m = evaluate_model(model, CHESS_MINI, meta["names"], meta["imgsz"], {"all": base.classes}, progress=False)
    summary = {"protocol": "demo", "dataset": "chess-mini", "seed": args.seed, "train": tcfg.as_dict(), "base": base_m,
               "joint": None, "rows": rows}
    print(write_results(summary, args.results / f"proxy-chess-mini-seed{args.seed}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
