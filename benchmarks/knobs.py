"""Sensitivity of the default method to its settings, on one protocol's shared base model.

    .venv/bin/python benchmarks/knobs.py --protocol benchmarks/protocols/chess13-2step.yaml --fraction 0.34

Each variant is one `learn` step from the protocol's base run (run cl_protocols.py first), with the
same data, epochs and seed as the protocol's methods. Writes benchmarks/results/knobs-<dataset>-<protocol>.{json,md}.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cldet.detector.api import learn  # noqa: E402
from cldet.detector.config import DEFAULT_METHOD, DistillConfig, TrainConfig  # noqa: E402
from cldet.detector.lineage import read_lineage, write_json_atomic  # noqa: E402
from cldet.detector.protocol import load_protocol  # noqa: E402

VARIANTS = {  # name -> DistillConfig overrides (the default method otherwise)
    "default": {},  # the protocol's own 'ours' run (same settings and seed), not trained again
    "pseudo_conf=0.3": {"pseudo_conf": 0.3},
    "pseudo_conf=0.7": {"pseudo_conf": 0.7},
    "feature_mode=channel": {"feature_mode": "channel"},
    "feature_weight=0.2": {"feature_weight": 0.2},
    "feature_weight=5": {"feature_weight": 5.0},
    "response_weight=0.3": {"response_weight": 0.3},
    "method=response": {"method": "response"},
    "method=pseudo+response": {"method": "pseudo+response"},
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--protocol", type=Path, required=True)
    ap.add_argument("--data-root", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "work")
    ap.add_argument("--fraction", type=float, default=1.0)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    p = load_protocol(args.protocol, args.data_root)
    root = args.work / f"{p.dataset_name}-{p.name}" / "seed0"
    base = root / "base"
    read_lineage(base)
    tcfg = TrainConfig(**{**p.train, "fraction": args.fraction, "seed": 0})
    rows = {}
    for name in args.variants.split(","):
        run = root / "ours" / "step1" if name == "default" else root / "knobs" / name.replace("=", "-").replace("+", "_")
        if not (run / "lineage.json").exists():
            if run.exists():
                import shutil

                shutil.rmtree(run)
            run.parent.mkdir(parents=True, exist_ok=True)
            learn(base, p.dataset, p.steps[1], run, dcfg=DistillConfig(**{"method": DEFAULT_METHOD, **VARIANTS[name]}), tcfg=tcfg,
                  eval_yaml=p.dataset, old_labels=False)
        m = read_lineage(run).last.metrics
        rows[name] = {g: m[g] for g in ("old", "new", "all")}
    out = ROOT / "benchmarks" / "results" / f"knobs-{p.dataset_name}-{p.name}"
    write_json_atomic(out.with_suffix(".json"), {"protocol": p.name, "dataset": p.dataset_name, "train": tcfg.as_dict(), "variants": rows})
    lines = [f"### Settings of `{DEFAULT_METHOD}` on {p.dataset_name} / {p.name} (mAP50-95; fraction {args.fraction})", "",
             "| variant | old | new | all |", "|---|---|---|---|"]
    lines += [f"| {n} | {r['old']['map50_95']:.3f} | {r['new']['map50_95']:.3f} | {r['all']['map50_95']:.3f} |" for n, r in rows.items()]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
