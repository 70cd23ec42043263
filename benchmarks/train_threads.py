"""CPU training speed: Ultralytics' own thread count (min(8, cores - 1)) against every core (`--threads`).

    .venv/bin/python -m benchmarks.train_threads [--epochs 2] [--repeats 2] [--imgsz 320]

Trains the same base model (the white pieces of the bundled chess photos, same seed, same epochs) with the default
and with `--threads <cores>`, alternated (default, all, default, all, ...) so that a change of machine load hits
both alike, and reports the median wall seconds of each and their ratio. Run it on an otherwise idle machine: with
other work on the cores it measures the sharing, not the threads. Writes benchmarks/results/train-threads.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WHITE = "white-bishop,white-king,white-knight,white-pawn,white-queen,white-rook"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=2, help="epochs per training (default 2)")
    ap.add_argument("--repeats", type=int, default=2, help="trainings per setting, alternated (default 2)")
    ap.add_argument("--imgsz", type=int, default=320, help="input size in px (default 320)")
    ap.add_argument("--batch", type=int, default=16, help="batch size in images (default 16)")
    ap.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results", help="output folder")
    args = ap.parse_args(argv)

    import torch

    from cldet import train
    from cldet.core.assets import CHESS_MINI

    cores = os.cpu_count() or 1
    settings = {"default": None, "all cores": cores}
    seconds: dict[str, list[float]] = {k: [] for k in settings}
    threads_used: dict[str, int] = {}
    before = torch.get_num_threads()
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.repeats):
            for name, threads in settings.items():
                t0 = time.perf_counter()
                train(data=CHESS_MINI, out=Path(tmp) / f"{rep}-{name.replace(' ', '-')}", classes=WHITE,
                      epochs=args.epochs, imgsz=args.imgsz, batch=args.batch, threads=threads, curves=False)
                seconds[name].append(time.perf_counter() - t0)
                threads_used[name] = torch.get_num_threads()
                torch.set_num_threads(before)
    med = {k: statistics.median(v) for k, v in seconds.items()}
    res = {"cores": cores, "threads": threads_used, "epochs": args.epochs, "imgsz": args.imgsz, "batch": args.batch,
           "repeats": args.repeats, "seconds": seconds, "median_seconds": med,
           "speedup_all_cores": med["default"] / med["all cores"]}
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "train-threads.json").write_text(json.dumps(res, indent=2) + "\n")
    print(f"{cores} cores; median s per training: default ({threads_used['default']} threads) {med['default']:.1f}, "
          f"all cores ({threads_used['all cores']}) {med['all cores']:.1f}; speed-up {res['speedup_all_cores']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
