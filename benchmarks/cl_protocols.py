"""Run class-incremental protocols and write the forgetting tables.

    .venv/bin/python -m benchmarks.cl_protocols --protocol benchmarks/protocols/chess13-2step.yaml
    .venv/bin/python -m benchmarks.cl_protocols --protocol ... --quick          # CI-sized smoke run
    .venv/bin/python -m benchmarks.cl_protocols --protocol ... --seeds 3        # mean and std over seeds

Writes benchmarks/results/cl-<dataset>-<protocol>.{json,md,png}. Finished steps under --work are
reused, so an interrupted study continues where it stopped.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from cldet.protocol import load_protocol, run_protocol, summarise

from .report import write_outputs

ROOT = Path(__file__).resolve().parents[1]

QUICK = {"epochs": 1, "imgsz": 128, "batch": 8, "fraction": 0.05, "workers": 0}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--protocol", type=Path, required=True, help="protocol YAML (see benchmarks/protocols)")
    ap.add_argument("--data-root", type=Path, default=ROOT.parent / "shared" / "data", help="folder of datasets")
    ap.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "work", help="run directories")
    ap.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--seeds", type=int, default=1, help="repeat with seeds 0..N-1; mean and std reported")
    ap.add_argument("--methods", default=None, help="comma list overriding the protocol's methods")
    ap.add_argument("--quick", action="store_true", help="tiny CI-sized run (1 epoch, 128 px, 5%% of images)")
    ap.add_argument("--epochs", type=int, default=None, help="override epochs per step")
    ap.add_argument("--fraction", type=float, default=None, help="override the fraction of training images")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    p = load_protocol(args.protocol, args.data_root)
    over = dict(QUICK) if args.quick else {}
    if args.epochs:
        over["epochs"] = args.epochs
    if args.fraction:
        over["fraction"] = args.fraction
    methods = args.methods.split(",") if args.methods else None
    work = args.work / (f"{p.dataset_name}-{p.name}" + ("-quick" if args.quick else ""))
    runs = [run_protocol(p, work, seed=s, methods=methods, train_over=over) for s in range(args.seeds)]
    paths = write_outputs(summarise(p, runs), args.results, quick=args.quick)
    print(paths["md"].read_text())
    print("wrote", ", ".join(str(v) for v in paths.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
