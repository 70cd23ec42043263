"""Sensitivity of the default method to its settings, on one protocol's shared base model.

    .venv/bin/python -m benchmarks.knobs --protocol benchmarks/protocols/chess13-2step.yaml --fraction 0.34

Each variant is one `learn` step (cldet.api.learn) from the protocol's base run (run cl_protocols first), with
the same data, epochs and seed as the protocol's methods; finished variants are reused the way the protocol
harness reuses its steps (cldet.protocol.reuse). Writes benchmarks/results/knobs-<dataset>-<protocol>.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from cldet import api
from cldet.core.files import write_json_atomic
from cldet.detector.config import DEFAULT_METHOD, TrainConfig
from cldet.detector.lineage import read_lineage
from cldet.protocol import load_protocol, reuse

ROOT = Path(__file__).resolve().parents[1]

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
        settings = {**tcfg.as_dict(), "method": DEFAULT_METHOD, **VARIANTS[name]}
        reuse(run, lambda: api.learn(from_run=base, data=p.dataset, new_classes=",".join(p.steps[1]), out=run,
                                     eval_data=p.dataset, old_labels=False, **settings))
        m = read_lineage(run).last.metrics
        rows[name] = {g: m[g] for g in ("old", "new", "all")}
    out = ROOT / "benchmarks" / "results" / f"knobs-{p.dataset_name}-{p.name}"
    write_json_atomic(out.with_suffix(".json"), {"protocol": p.name, "dataset": p.dataset_name, "train": tcfg.as_dict(), "variants": rows})
    table = knobs_table(json.loads(out.with_suffix(".json").read_text()))
    out.with_suffix(".md").write_text(table)
    print(table)
    return 0


def knobs_table(r: dict) -> str:
    """Markdown table of a knobs JSON: mAP50-95 of old, new and all classes per variant."""
    lines = [f"### Settings of `{DEFAULT_METHOD}` on {r['dataset']} / {r['protocol']} (mAP50-95; fraction "
             f"{r['train']['fraction']})", "", "| variant | old | new | all |", "|---|---|---|---|"]
    lines += [f"| {n} | {v['old']['map50_95']:.3f} | {v['new']['map50_95']:.3f} | {v['all']['map50_95']:.3f} |"
              for n, v in r["variants"].items()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
