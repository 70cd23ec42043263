"""INT8 export benchmark: cldet's Q/DQ export vs Ultralytics' own ONNX INT8 export of the same model, in one run.

    .venv/bin/python -m benchmarks.export_bench --run RUN [--run RUN2] --data ../shared/data/chess13/data.yaml
    make bench-export    # the 2-step protocol's increment (run `make bench-cl` first)

For each run: FP32 + INT8 ONNX by cldet (`export_run`) and by Ultralytics (`YOLO(...).export(format="onnx",
quantize=8, data=..., split="train", fraction=N)`: calibrated on N TRAIN images, as cldet, never the eval split),
all four scored by the same evaluator (cldet.core.evaluate, ONNX Runtime CPU, the val split) and timed in the
same process by cldet.deploy.bench.alternate (2 threads, batch 1, the sessions taking turns every iteration,
median after warm-up).
Drift = FP32 minus INT8 mAP50-95 in points, per increment group. With --methods, cldet's calibration methods are
compared too (that comparison chose the default). Writes benchmarks/results/export-<dataset>-<protocol>.json/.md/.png.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import tempfile
import time
from pathlib import Path

import numpy as np

from cldet.deploy.device import cpu_int8_features

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_RUN = ROOT / "benchmarks" / "work" / "chess13-2step" / "seed0" / "ours" / "step1"
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "chess13" / "data.yaml"


def _protocol(run: Path, dataset: str) -> str:
    for part in run.resolve().parts:
        m = re.fullmatch(rf"{re.escape(dataset)}-(.+)", part)
        if m:
            return m.group(1)
    return "custom"


def _evaluate(path: Path, ds, names, imgsz, groups, batch: int, threads: int):
    from cldet.core.evaluate import evaluate
    from cldet.deploy.runtime import open_backend

    return evaluate(open_backend(path, provider="cpu", threads=threads), ds, "val", names, imgsz, groups=groups,
                    batch=batch, progress=False)


def _scores(path: Path, ds, names, imgsz, groups, batch: int, threads: int) -> dict:
    return _evaluate(path, ds, names, imgsz, groups, batch, threads).scores()


def _noise(evals: dict, names, groups: dict, draws: int) -> dict:
    """The FP32 - INT8 drift's sampling noise on this evaluation split (paired bootstrap over its images)."""
    from cldet.core.metrics import paired_bootstrap

    return paired_bootstrap(evals["fp32"].results, evals["int8"].results, names, groups, draws=draws)


def val_inputs(ds, imgsz: int) -> list[np.ndarray]:
    """The val images, letterboxed as the evaluator does, one (1, 3, S, S) array each."""
    from cldet.core.processing import letterbox, load_image

    return [letterbox(load_image(img), imgsz)[0][None] for img in ds.images("val")]


def output_change(reference: list[np.ndarray], backend, inputs: list[np.ndarray]) -> float:
    """How far `backend`'s outputs move from `reference` (FP32's outputs on `inputs`), without mAP's sampling noise:
    cldet.export.sensitivity.output_error (max class-probability change + box change / box size, at the anchors
    where FP32 sees something) per image, averaged over the images."""
    from cldet.export.sensitivity import output_error

    return float(np.mean([output_error(r, backend(x)) for r, x in zip(reference, inputs)]))


def _fidelity(fp32: Path, int8: Path, inputs: list[np.ndarray], threads: int) -> float:
    """INT8's output change against FP32 on the evaluation images (`output_change`)."""
    from cldet.deploy.runtime import open_backend

    a, b = (open_backend(p, provider="cpu", threads=threads) for p in (fp32, int8))
    return output_change([a(x) for x in inputs], b, inputs)


def _latency(paths: dict[str, Path], imgsz: int, threads: int, iters: int, warmup: int = 20) -> dict[str, float]:
    """Median ms per artifact (batch 1), timed by `cldet bench`'s alternation so load changes hit all alike."""
    from functools import partial

    from cldet.deploy.bench import alternate
    from cldet.deploy.runtime import open_backend

    x = np.random.default_rng(0).random((1, 3, imgsz, imgsz), dtype=np.float32)
    calls = [partial(open_backend(p, provider="cpu", threads=threads), x) for p in paths.values()]
    ms = alternate(calls, iters, warmup)
    return {k: float(np.median(v)) for k, v in zip(paths, ms)}


def _op_profile(paths: dict[str, Path], imgsz: int, threads: int, runs: int) -> dict:
    """Where the time goes: ONNX Runtime's profiler on each artifact, the sessions taking turns for `runs`
    inferences; per node the median over the runs (robust to the other jobs' preemptions), summed per op type."""
    import onnxruntime as ort

    sessions = {}
    for k, p in paths.items():
        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
        so.enable_profiling, so.profile_file_prefix = True, str(Path(tempfile.mkdtemp()) / k)
        sessions[k] = ort.InferenceSession(str(p), so, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((1, 3, imgsz, imgsz), dtype=np.float32)
    for i in range(runs):
        for k, sess in (sessions.items() if i % 2 == 0 else reversed(sessions.items())):
            sess.run(None, {"images": x})
    out = {}
    for k, sess in sessions.items():
        f = Path(sess.end_profiling())
        per: dict = {}
        for e in json.loads(f.read_text()):
            if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
                per.setdefault((e["name"], e["args"]["op_name"]), []).append(e["dur"])
        f.unlink()
        ops: dict[str, float] = {}
        for (_, op), durs in per.items():
            ops[op] = ops.get(op, 0.0) + float(np.median(durs[len(durs) // 4:])) / 1000  # skip the warm-up quarter
        out[k] = {op: round(ms, 3) for op, ms in sorted(ops.items(), key=lambda kv: -kv[1])}
    return out


def _ultralytics_export(run: Path, work: Path, imgsz: int, data: Path, calib_images: int) -> tuple[Path, Path]:
    """FP32 and INT8 ONNX by Ultralytics' exporter from the same weights (a scratch pickle it can load)."""
    import shutil

    import torch

    from cldet.detector.model import load_checkpoint

    model, _ = load_checkpoint(run / "model.pt")
    work.mkdir(parents=True, exist_ok=True)
    pt = work / "ul.pt"
    model.args = {"imgsz": imgsz, "task": "detect"}
    torch.save({"model": model, "train_args": {"imgsz": imgsz, "task": "detect"}}, pt)
    from ultralytics import YOLO

    f32 = YOLO(str(pt)).export(format="onnx", imgsz=imgsz, device="cpu", simplify=True)
    f32 = Path(shutil.move(f32, work / "ul.fp32.onnx"))
    i8 = YOLO(str(pt)).export(format="onnx", imgsz=imgsz, device="cpu", quantize=8, data=str(data), split="train",
                              fraction=calib_images, simplify=True)
    return f32, Path(shutil.move(i8, work / "ul.int8.onnx"))


def _block(scores: dict, lat: dict, groups: list[str], extra: dict | None = None) -> dict:
    drift = {g: round(100 * (scores["fp32"][g]["map50_95"] - scores["int8"][g]["map50_95"]), 3) for g in groups}
    return {"int8_drift_max": max(drift.values()), "int8_drift": drift,
            "latency_ms": {"fp32": round(lat["fp32"], 3), "int8": round(lat["int8"], 3)},
            "latency_ratio": round(lat["int8"] / lat["fp32"], 3), "map50_95": {
                k: {g: round(v[g]["map50_95"], 4) for g in groups} for k, v in scores.items()}, **(extra or {})}


def bench_run(run: Path, data: Path, out_dir: Path, args) -> dict:
    from cldet.core.data import load_dataset
    from cldet.core.manifest import read_manifest
    from cldet.detector.lineage import read_lineage
    from cldet.export.pipeline import ExportOptions, export_run

    lin = read_lineage(run)
    ds = load_dataset(data)
    groups_map = lin.groups()
    groups = list(groups_map)
    dataset = data.parent.name
    protocol = args.name or _protocol(run, dataset)
    work = Path(tempfile.mkdtemp(prefix="cldet-exbench-"))
    t0 = time.time()
    man = export_run(run, ExportOptions(out=work / "cldet", calib_method=args.method, calib_images=args.calib_images,
                                        data=data, threads=args.threads, force=True, progress=False))
    imgsz = man["input"]["imgsz"]
    cl_man = read_manifest(work / "cldet" / "manifest.json")
    cl_paths = {k: cl_man.file_of(k) for k in ("fp32", "int8")}
    cl_scores = {k: man["artifacts"][k]["metrics"] for k in ("fp32", "int8")}
    print(f"[{run}] cldet export done in {time.time() - t0:.0f} s", flush=True)
    cl_evals = {k: _evaluate(p, ds, lin.classes, imgsz, groups_map, 8, args.threads) for k, p in cl_paths.items()}
    cl_noise = _noise(cl_evals, lin.classes, groups_map, args.bootstrap)
    inputs = val_inputs(ds, imgsz)  # read once for both exporters' output change
    cl_fid = _fidelity(cl_paths["fp32"], cl_paths["int8"], inputs, args.threads)

    methods = {}
    extra = [m for m in args.methods.split(",") if m and m != args.method]
    if extra:
        from cldet.calib.reader import calibration_arrays
        from cldet.export.pipeline import _calibration
        from cldet.export.quantize import QuantConfig, calibrate, prepare, quantize_ptq

        calib = _calibration(run, lin, lin.classes, ExportOptions(calib_images=args.calib_images), ds.images("val"))
        arrays = list(calibration_arrays(calib, imgsz, False))
        stats = calibrate(prepare(cl_paths["fp32"], work), lambda: iter(arrays), QuantConfig())  # one pass for all
        for meth in extra:
            p = quantize_ptq(cl_paths["fp32"], work / f"m_{meth}.onnx", lambda: iter(arrays), QuantConfig(method=meth),
                             stats=stats)
            s = _scores(p, ds, lin.classes, imgsz, groups_map, 8, args.threads)
            methods[meth] = {g: round(100 * (cl_scores["fp32"][g]["map50_95"] - s[g]["map50_95"]), 3) for g in groups}
            print(f"  calib {meth}: drift {methods[meth]}", flush=True)
    if methods:
        methods[args.method] = {g: round(100 * (cl_scores["fp32"][g]["map50_95"] - cl_scores["int8"][g]["map50_95"]),
                                         3) for g in groups}

    qat_scores = None
    if args.qat_epochs > 0:
        t1 = time.time()
        mq = export_run(run, ExportOptions(out=work / "qat", int8="qat", qat_epochs=args.qat_epochs,
                                           calib_method=args.method, calib_images=args.calib_images, data=data,
                                           threads=args.threads, force=True, progress=False))
        qat_path = read_manifest(work / "qat" / "manifest.json").file_of("int8")
        qat_scores = {"fp32": cl_scores["fp32"], "int8": mq["artifacts"]["int8"]["metrics"]}
        qat_info = mq["calibration"].get("qat", {})
        print(f"[{run}] cldet QAT export done in {time.time() - t1:.0f} s", flush=True)

    ul_f32, ul_i8 = _ultralytics_export(run, work / "ul", imgsz, data, args.calib_images)
    ul_evals = {k: _evaluate(p, ds, lin.classes, imgsz, groups_map, 1, args.threads)
                for k, p in (("fp32", ul_f32), ("int8", ul_i8))}
    ul_scores = {k: e.scores() for k, e in ul_evals.items()}
    ul_noise = _noise(ul_evals, lin.classes, groups_map, args.bootstrap)
    ul_fid = _fidelity(ul_f32, ul_i8, inputs, args.threads)
    print(f"[{run}] ultralytics export + eval done", flush=True)
    paths = {"cl_fp32": cl_paths["fp32"], "cl_int8": cl_paths["int8"], "ul_fp32": ul_f32, "ul_int8": ul_i8}
    if qat_scores:
        paths["qat_int8"] = qat_path
    lat = _latency(paths, imgsz, args.threads, args.iters)
    profile = _op_profile({"FP32": cl_paths["fp32"], "INT8": cl_paths["int8"]}, imgsz, args.threads,
                          args.profile_runs) if args.profile_runs else None
    cal = man["calibration"]
    result = {
        "model": f"{lin.arch} {imgsz}px, {run}",
        "run": str(run), "dataset": dataset, "protocol": protocol, "groups": groups,
        "eval": {"data": str(data), "split": "val", "images": man["eval"]["images"]},
        "cldet": _block(cl_scores, {"fp32": lat["cl_fp32"], "int8": lat["cl_int8"]}, groups, {
            "calibration": {k: cal.get(k) for k in ("mode", "method", "images", "covered", "missing", "activations",
                                                    "weights", "op_types", "sources", "auto")},
            "float_layers": [{"why": g["why"], "nodes": len(g["nodes"]), "first": g["nodes"][:3]}
                             for g in cal.get("float_layers", [])], "drift_noise": cl_noise,
            "output_error": round(cl_fid, 5)}),
        "ultralytics": _block(ul_scores, {"fp32": lat["ul_fp32"], "int8": lat["ul_int8"]}, groups, {
            "calibration": {"images": args.calib_images, "split": "train",
                            "call": f"YOLO(pt).export(format='onnx', quantize=8, data='{data}', split='train', "
                                    f"fraction={args.calib_images})"}, "drift_noise": ul_noise,
            "output_error": round(ul_fid, 5)}),
        "calib_methods_drift": methods,
        **({"cldet_qat": _block(qat_scores, {"fp32": lat["cl_fp32"], "int8": lat["qat_int8"]}, groups,
                                {"qat": qat_info})} if qat_scores else {}),
        "settings": {"runtime": "onnxruntime CPUExecutionProvider", "threads": args.threads, "batch": 1,
                     "load_average_1min_at_end": round(os.getloadavg()[0], 2),
                     "iters": args.iters, "warmup": 20, "bootstrap": args.bootstrap, "alternated": "every iteration, order reversed every other",
                     "cpu_count": os.cpu_count(), "cpu_int8": cpu_int8_features()},
        "seconds": round(time.time() - t0, 1),
        **({"op_profile": profile} if profile else {}),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = out_dir / f"export-{dataset}-{protocol}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    stem.with_suffix(".md").write_text(markdown(result))
    _plot(result, stem.with_suffix(".png"))
    print(markdown(result), flush=True)
    return result


def markdown(r: dict) -> str:
    g = r["groups"]
    lines = [f"### INT8 export, {r['dataset']} {r['protocol']} ({r['model']})", "",
             "| exporter | " + " | ".join(f"drift {x} (pts)" for x in g) + " | FP32 ms | INT8 ms | INT8/FP32 |",
             "|---|" + "---|" * (len(g) + 3)]
    for who in [w for w in ("cldet", "cldet_qat", "ultralytics") if w in r]:
        b = r[who]
        lines.append(f"| {who} | " + " | ".join(f"{b['int8_drift'][x]:+.2f}" for x in g)
                     + f" | {b['latency_ms']['fp32']:.2f} | {b['latency_ms']['int8']:.2f} | {b['latency_ratio']:.2f} |")
    lines += ["", "| exporter | precision | " + " | ".join(f"mAP50-95 {x}" for x in g) + " |",
              "|---|---|" + "---|" * len(g)]
    for who in [w for w in ("cldet", "cldet_qat", "ultralytics") if w in r]:
        for prec in ("fp32", "int8"):
            lines.append(f"| {who} | {prec} | " + " | ".join(f"{r[who]['map50_95'][prec][x]:.4f}" for x in g) + " |")
    if r.get("calib_methods_drift"):
        lines += ["", "| cldet calibration | " + " | ".join(f"drift {x}" for x in g) + " |", "|---|" + "---|" * len(g)]
        for m, d in r["calib_methods_drift"].items():
            lines.append(f"| {m} | " + " | ".join(f"{d[x]:+.2f}" for x in g) + " |")
    if r.get("op_profile"):
        prof = r["op_profile"]
        ops = sorted({o for v in prof.values() for o in v},  # ties by name: a set's order changes between runs
                     key=lambda o: (-max(v.get(o, 0) for v in prof.values()), o))
        lines += ["", "| op (ONNX Runtime, after its graph optimizer) | " + " | ".join(f"{k} ms" for k in prof) + " |",
                  "|---|" + "---|" * len(prof)]
        lines += [f"| {o} | " + " | ".join(f"{prof[k].get(o, 0):.2f}" for k in prof) + " |" for o in ops
                  if max(prof[k].get(o, 0) for k in prof) >= 0.05]
        lines += ["| total | " + " | ".join(f"{sum(prof[k].values()):.2f}" for k in prof) + " |"]
    noisy = [w for w in ("cldet", "ultralytics") if r.get(w, {}).get("drift_noise")]
    if noisy:
        lines += ["", "| exporter | " + " | ".join(f"drift {x}: 90% interval" for x in g) + " |",
                  "|---|" + "---|" * len(g)]
        lines += [f"| {w} | " + " | ".join(f"{r[w]['drift_noise'][x]['lo']:+.2f} .. {r[w]['drift_noise'][x]['hi']:+.2f}"
                                           for x in g) + " |" for w in noisy]
        lines += ["", f"Interval: the drift recomputed on {r['settings'].get('bootstrap', 200)} resamples (with "
                  "replacement) of the evaluation images, FP32 and INT8 on the same draw: the spread a second "
                  "evaluation set of this size could show."]
    if all("output_error" in r.get(w, {}) for w in ("cldet", "ultralytics")):
        lines += ["", "| exporter | INT8 output change vs FP32 |", "|---|---|"]
        lines += [f"| {w} | {r[w]['output_error']:.4f} |" for w in ("cldet", "ultralytics")]
        lines += ["", "Output change: per evaluation image, at the anchors where FP32 sees something (best class "
                  "probability > 0.05), the largest class-probability change plus the box change relative to the "
                  "box's size, averaged: how closely INT8 follows FP32, without mAP's sampling noise."]
    fl = r["cldet"].get("float_layers")
    if fl:
        lines += ["", "Kept float in cldet's INT8: " + "; ".join(f"{g['nodes']} node(s), {g['why']}" for g in fl) + "."]
    lines += ["", f"Drift = FP32 minus INT8 mAP50-95 in points on the {r['eval']['images']} images of the val split; "
              f"latency = ONNX Runtime CPU, {r['settings']['threads']} threads, batch 1, median of "
              f"{r['settings']['iters']} alternated runs. Both exporters calibrate on TRAIN images only.", ""]
    return "\n".join(lines)


def _plot(r: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    g = r["groups"]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.2))
    x = np.arange(len(g))
    for k, who in enumerate(("cldet", "ultralytics")):
        a.bar(x + 0.38 * k, [r[who]["int8_drift"][i] for i in g], 0.38, label=who)
        b.bar([k], [r[who]["latency_ratio"]], 0.6, label=who)
    a.axhline(0.5, ls="--", c="k", lw=0.8)
    a.set_xticks(x + 0.19, g)
    a.set_ylabel("INT8 drift (mAP50-95 pts)")
    a.legend()
    b.axhline(0.5, ls="--", c="k", lw=0.8)
    b.axhline(1.0, c="gray", lw=0.8)
    b.set_xticks([0, 1], ["cldet", "ultralytics"])
    b.set_ylabel("INT8 / FP32 latency")
    fig.suptitle(f"{r['dataset']} {r['protocol']}: INT8 export")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", action="append", type=Path,
                    help=f"run directory (repeatable; default {DEFAULT_RUN.relative_to(ROOT)}, made by `make bench-cl`)")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA,
                    help=f"dataset yaml (val = evaluation, train = calibration; default {DEFAULT_DATA})")
    ap.add_argument("--out-dir", type=Path, default=ROOT / "benchmarks" / "results")
    from cldet.export.options import ExportOptions

    ap.add_argument("--method", default=ExportOptions.calib_method, help="cldet calibration method for the headline "
                    "numbers (default: the export default)")
    ap.add_argument("--methods", default="", help="also compare these methods, e.g. minmax,percentile,entropy")
    ap.add_argument("--calib-images", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--bootstrap", type=int, default=200,
                    help="draws of the paired bootstrap that sizes each drift's sampling noise (images resampled)")
    ap.add_argument("--name", default=None, help="protocol label in the output file name (default: from the run path)")
    ap.add_argument("--qat-epochs", type=int, default=0, help="also export cldet QAT with this many epochs (0: skip)")
    ap.add_argument("--profile-runs", type=int, default=60, help="per-op profile of cldet's FP32 and INT8 (0: skip)")
    args = ap.parse_args()
    args.run = args.run or [DEFAULT_RUN]
    for run in args.run:
        if not (run / "lineage.json").is_file():
            ap.error(f"{run} is not a finished cldet run (no lineage.json). Train the protocol first (`make bench-cl` "
                     "writes benchmarks/work/chess13-2step) or pass --run RUN_DIR.")
    if not args.data.is_file():
        ap.error(f"dataset yaml {args.data} does not exist; pass --data DATA.yaml (its val split is scored).")
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    for run in args.run:
        bench_run(run, args.data, args.out_dir, args)


if __name__ == "__main__":
    main()
