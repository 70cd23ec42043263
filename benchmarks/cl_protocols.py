"""Run class-incremental protocols and write the forgetting tables.

    .venv/bin/python -m benchmarks.cl_protocols --protocol benchmarks/protocols/chess13-2step.yaml
    .venv/bin/python -m benchmarks.cl_protocols --protocol ... --quick          # CI-sized smoke run
    .venv/bin/python -m benchmarks.cl_protocols --protocol ... --seeds 3        # mean and std over seeds

Two processes can share a seed on a machine whose training does not scale to every core: one runs
`--parts base,joint --threads 1`, the other `--parts methods --threads 1` once the base has its lineage.json;
a last run without --parts reuses both and writes the tables.

Writes benchmarks/results/cl-<dataset>-<protocol>.{json,md,png}. Finished steps under --work are
reused, so an interrupted study continues where it stopped.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from cldet.protocol import PARTS, load_protocol, run_protocol, summarise

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
    ap.add_argument("--parts", default=",".join(PARTS),
                    help="comma list of base, methods, joint to run (default all); with fewer, no tables are "
                         "written, so that two processes can share the work of a seed (the methods need a finished base)")
    ap.add_argument("--threads", type=int, default=None,
                    help="CPU training threads per run (default: every core; 1 when two studies share 2 cores)")
    args = ap.parse_args(argv)
    parts = tuple(x.strip() for x in args.parts.split(",") if x.strip())
    if not parts or set(parts) - set(PARTS):
        ap.error(f"--parts: a comma list of {', '.join(PARTS)}")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    p = load_protocol(args.protocol, args.data_root)
    over = dict(QUICK) if args.quick else {}
    if args.epochs:
        over["epochs"] = args.epochs
    if args.fraction:
        over["fraction"] = args.fraction
    if args.threads:
        over["threads"] = args.threads
    methods = args.methods.split(",") if args.methods else None
    work = args.work / (f"{p.dataset_name}-{p.name}" + ("-quick" if args.quick else ""))
    runs = [run_protocol(p, work, seed=s, methods=methods, train_over=over, parts=parts) for s in range(args.seeds)]
    if set(parts) != set(PARTS):
        print(f"ran {', '.join(parts)} of {work}; run without --parts to write the tables")
        return 0
    paths = write_outputs(summarise(p, runs), args.results, quick=args.quick)
    print(paths["md"].read_text())
    print("wrote", ", ".join(str(v) for v in paths.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
