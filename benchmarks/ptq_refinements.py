"""What each PTQ refinement does, measured on converged runs: SiLU-aware pre-activation ranges, bias correction and
GPTQ weight rounding, on and off, everything else as `cldet export --int8 ptq` (min-max, stem and head float, the
run's calibration reservoir). One calibration pass per run serves every variant.

    .venv/bin/python -m benchmarks.ptq_refinements --run RUN [--run RUN ...] [--data DATA.yaml]

Per variant: INT8's output change vs FP32 on the val images (cldet.export.sensitivity.output_error: largest
class-probability change plus box change relative to the box's size, at the anchors where FP32 sees something;
no sampling noise from the mAP), and the FP32 - INT8 mAP50-95 drift per class group on val (and test where the
dataset has one). Writes benchmarks/results/ptq-refinements.json/.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator


ROOT = Path(__file__).resolve().parents[1]
# label: (SiLU-aware ranges, bias correction, weight rounding); the first row is the reference of the ratios
VARIANTS = {"plain (min-max, nearest rounding)": (False, False, "nearest"),
            "+ SiLU-aware ranges": (True, False, "nearest"),
            "+ bias correction": (False, True, "nearest"),
            "+ SiLU ranges + bias correction": (True, True, "nearest"),
            "+ GPTQ rounding": (False, False, "gptq"),
            "+ SiLU ranges + GPTQ rounding (default)": (True, False, "gptq")}


def _dataset_of(run: Path, data: Path | None) -> Path:
    if data is not None:
        return data
    shared = ROOT.parent / "shared" / "data"
    for part in run.resolve().parts:
        for name in ("chess13", "deeppcb6"):
            if part.startswith(name + "-"):
                return shared / name / "data.yaml"
    raise SystemExit(f"{run}: pass --data DATA.yaml (its val split is scored)")


@dataclass
class Calibrated:
    """A converged run exported to FP32 ONNX and calibrated as `cldet export` does: what each study quantizes."""

    run: Path
    data: Path
    names: list[str]
    groups: dict[str, list[str]]
    imgsz: int
    ds: object  # cldet.core.data.Dataset
    splits: list[str]  # val, and test where the dataset has one
    work: Path  # temporary folder, removed when the study of the run ends
    fp32: Path
    arrays: list  # letterboxed calibration images
    proto: object  # the FP32 graph after ONNX Runtime's quantization pre-processing
    stats: object  # cldet.export.ranges.RangeStats of the default QuantConfig (GPTQ Hessians included)

    @property
    def shown(self) -> str:
        """The run as the results name it: relative to the repository where it lies inside it."""
        try:
            return str(self.run.resolve().relative_to(ROOT))
        except ValueError:
            return str(self.run)


@contextmanager
def calibrated_run(run: Path, data: Path | None, threads: int) -> Iterator[Calibrated]:
    """Export `run`'s model to FP32 ONNX in a temporary folder and calibrate it on the run's calibration set (its
    reservoir, as `cldet export`), disjoint from the val and test images; the folder is removed afterwards."""
    from cldet.calib.reader import calibration_arrays
    from cldet.core.data import load_dataset
    from cldet.detector.lineage import read_lineage
    from cldet.detector.model import load_checkpoint
    from cldet.export.onnx_export import export_onnx
    from cldet.export.options import ExportOptions
    from cldet.export.pipeline import _calibration
    from cldet.export.quantize import QuantConfig, calibrate, prepare

    data = _dataset_of(run, data)
    lin = read_lineage(run)
    model, meta = load_checkpoint(run / "model.pt")
    imgsz, names = int(meta["imgsz"]), lin.classes
    ds = load_dataset(data)
    splits = [s for s in ("val", "test") if s in ds.splits]
    work = Path(tempfile.mkdtemp(prefix="cldet-ptqstudy-"))
    try:
        fp32 = work / "fp32.onnx"
        export_onnx(model, fp32, imgsz)
        calib = _calibration(run, lin, names, ExportOptions(), [p for s in splits for p in ds.images(s)])
        arrays = list(calibration_arrays(calib, imgsz, False))
        proto = prepare(fp32, work)
        stats = calibrate(proto, lambda: iter(arrays), QuantConfig(), threads=threads)
        yield Calibrated(run, data, names, lin.groups(), imgsz, ds, splits, work, fp32, arrays, proto, stats)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def bench_run(c: Calibrated, threads: int) -> dict:
    from cldet.core.evaluate import evaluate
    from cldet.deploy.runtime import open_backend
    from cldet.export.quantize import QuantConfig, quantize_ptq

    from .export_bench import output_change, val_inputs

    run, ds, splits, groups, names, imgsz = c.run, c.ds, c.splits, c.groups, c.names, c.imgsz
    inputs = val_inputs(ds, imgsz)
    f32 = open_backend(c.fp32, provider="cpu", threads=threads)
    ref = [f32(x) for x in inputs]

    def scores(path: Path, split: str) -> dict:
        res = evaluate(open_backend(path, provider="cpu", threads=threads), ds, split, names, imgsz, groups=groups,
                       progress=False)
        return res.scores()

    base = {s: scores(c.fp32, s) for s in splits}
    rows = {}
    for label, (silu, bc, rounding) in VARIANTS.items():
        cfg = QuantConfig(silu_ranges=silu, bias_correction=bc, weight_rounding=rounding)
        path = quantize_ptq(c.fp32, c.work / "int8.onnx", lambda: iter(c.arrays), cfg, stats=c.stats, threads=threads,
                            proto=c.proto)
        err = output_change(ref, open_backend(path, provider="cpu", threads=threads), inputs)
        drift = {}
        for s in splits:
            sc = scores(path, s)
            drift[s] = {g: round(100 * (base[s][g]["map50_95"] - sc[g]["map50_95"]), 2) for g in groups}
        rows[label] = {"output_error": round(err, 5), "drift": drift}
        print(f"[{run}] {label}: output change {err:.4f}, drift {drift}", flush=True)
    return {"run": c.shown, "data": str(c.data), "calibration_images": len(c.arrays), "splits": splits,
            "images": {s: len(ds.images(s)) for s in splits}, "groups": list(groups), "variants": rows}


def markdown(results: list[dict]) -> str:
    lines = ["| run | PTQ variant | output change vs FP32 | worst-group loss, val (pts) | drift per group, val (pts) "
             "| worst-group loss, test (pts) |", "|---|---|---|---|---|---|"]
    for r in results:
        plain = next(iter(r["variants"].values()))["output_error"]
        for label, v in r["variants"].items():
            d = v["drift"]["val"]
            t = v["drift"].get("test")
            lines.append(f"| {r['run']} | {label} | {v['output_error']:.4f} ({v['output_error'] / plain:.2f}x) | "
                         f"{max(d.values()):+.2f} | " + " / ".join(f"{d[g]:+.2f}" for g in r["groups"]) + " | "
                         + (f"{max(t.values()):+.2f}" if t else "n/a") + " |")
    lines += ["", "Output change: per val image, at the anchors where FP32 sees something (best class probability > "
              "0.05), the largest class-probability change plus the box change relative to the box's size, averaged "
              "(the ratio: to the first row of the run). Drift: FP32 minus INT8 mAP50-95 per class group, in the order "
              "step0, step1, ..., all classes; the test split, where the dataset has one, is a second sample of the "
              "same drift.", ""]
    return "\n".join(lines)


def study_parser(doc: str, name: str) -> argparse.ArgumentParser:
    """The options every PTQ study takes: runs, their dataset, threads, and where the results go."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", action="append", type=Path, required=True, help="finished run directory (repeatable)")
    ap.add_argument("--data", type=Path, default=None, help="dataset yaml (default: the shared dataset named in the "
                    "run's path)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / name)
    ap.add_argument("--update", action="store_true", help="replace only the given runs' rows of an existing OUT.json "
                    "and keep the other rows (runs measured earlier whose directories are gone); the JSON lists them "
                    "under kept_from_earlier")
    return ap


def merge_rows(earlier: list[dict], new: list[dict]) -> list[dict]:
    """`--update`: the earlier rows in their order, each replaced by the new row of the same run where there is one,
    then the new runs that were not there."""
    fresh = {r["run"]: r for r in new}
    rows = [fresh.pop(r["run"], r) for r in earlier]
    return rows + [r for r in new if r["run"] in fresh]


def run_study(ap: argparse.ArgumentParser, args: argparse.Namespace, bench: Callable[[Calibrated], dict],
              markdown: Callable[[list[dict]], str]) -> None:
    """Check the runs, study each one calibrated (`calibrated_run`), write OUT.json / OUT.md and print the table."""
    for run in args.run:
        if not (run / "lineage.json").is_file():
            ap.error(f"{run} is not a finished cldet run (no lineage.json)")
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    t0 = time.time()
    results = []
    for run in args.run:
        with calibrated_run(run, args.data, args.threads) as c:
            results.append(bench(c))
    out = {"seconds": round(time.time() - t0, 1)}
    if args.update and args.out.with_suffix(".json").is_file():
        measured = {r["run"] for r in results}
        results = merge_rows(json.loads(args.out.with_suffix(".json").read_text())["runs"], results)
        out["kept_from_earlier"] = [r["run"] for r in results if r["run"] not in measured]
    out = {"runs": results, **out}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(out, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(results))
    print(markdown(results))


def main() -> None:
    ap = study_parser(__doc__, "ptq-refinements")
    args = ap.parse_args()
    run_study(ap, args, lambda c: bench_run(c, args.threads), markdown)


if __name__ == "__main__":
    main()
