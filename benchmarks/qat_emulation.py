"""QAT's fake quantization: the export's whole Q/DQ graph, starting from GPTQ's INT8 weights (default) or from the
FP32 weights, vs the conv inputs only (the earlier QAT), beside PTQ, measured on converged runs. Same fine-tuning images (the run's calibration set plus a class-balanced sample of
its last TRAIN split, up to 256, as `cldet export --int8 qat`), epochs and seed for both.

    .venv/bin/python -m benchmarks.qat_emulation --run RUN [--run RUN ...] [--data DATA.yaml] [--qat-epochs 3]

Per variant: INT8's output change vs FP32 on the val images (as benchmarks.ptq_refinements), the FP32 - INT8
mAP50-95 drift per class group on val (and test where the dataset has one); the JSON also keeps QAT's
distillation loss on its first and last batch. Writes benchmarks/results/qat-emulation.json/.md.
"""

from __future__ import annotations

import time
from pathlib import Path

from .ptq_refinements import Calibrated, run_study, study_parser

VARIANTS = ("PTQ, nearest rounding", "PTQ, GPTQ rounding (default)", "QAT, conv inputs only (earlier)",
            "QAT, the export's Q/DQ graph, from FP32 weights", "QAT, the export's Q/DQ graph, from GPTQ's weights (default)")


def bench_run(c: Calibrated, threads: int, epochs: int) -> dict:
    from cldet.calib.reader import calibration_arrays, from_dataset
    from cldet.core.evaluate import evaluate
    from cldet.deploy.runtime import open_backend
    from cldet.detector.lineage import read_lineage
    from cldet.detector.model import load_checkpoint
    from cldet.export.qat import QATConfig, export_qat
    from cldet.export.quantize import QuantConfig, quantize_ptq

    from .export_bench import output_change, val_inputs

    inputs = val_inputs(c.ds, c.imgsz)
    f32 = open_backend(c.fp32, provider="cpu", threads=threads)
    ref = [f32(x) for x in inputs]

    def scores(path: Path, split: str) -> dict:
        return evaluate(open_backend(path, provider="cpu", threads=threads), c.ds, split, c.names, c.imgsz,
                        groups=c.groups, progress=False).scores()

    base = {s: scores(c.fp32, s) for s in c.splits}
    lin = read_lineage(c.run)
    train = from_dataset(lin.last.data["yaml"], c.names, 256 - len(c.arrays), images=lin.last.data.get("images"))
    train_arrays = list(c.arrays) + list(calibration_arrays(train, c.imgsz, False))
    model, _ = load_checkpoint(c.run / "model.pt")
    cfg = QATConfig(epochs=epochs)
    rows = {}
    for label in VARIANTS:
        t = time.time()
        out, info = c.work / "int8.onnx", {}
        if label.startswith("PTQ"):
            rounding = "gptq" if "GPTQ" in label else "nearest"
            quantize_ptq(c.fp32, out, lambda: iter(c.arrays), QuantConfig(weight_rounding=rounding), stats=c.stats,
                         threads=threads, proto=c.proto)
        else:
            kw = dict(fp32=c.fp32, ranges=c.stats, proto=c.proto,
                      start="gptq" if "GPTQ" in label else "nearest") if "Q/DQ graph" in label else {}
            info = export_qat(model, None, c.ds, out, c.imgsz, cfg, progress=False, arrays=c.arrays,
                              train_arrays=train_arrays, **kw)
        err = output_change(ref, open_backend(out, provider="cpu", threads=threads), inputs)
        drift = {s: {g: round(100 * (base[s][g]["map50_95"] - sc[g]["map50_95"]), 2) for g in c.groups}
                 for s in c.splits for sc in [scores(out, s)]}
        rows[label] = {"output_error": round(err, 5), "drift": drift, "seconds": round(time.time() - t, 1),
                       **({"qat_loss": [round(info["loss_first"], 5), round(info["loss_last"], 5)],
                           "fake_quant": info["fake_quant"]} if info else {})}
        print(f"[{c.shown}] {label}: output change {err:.4f}, drift {drift}", flush=True)
    return {"run": c.shown, "data": str(c.data), "calibration_images": len(c.arrays), "qat_images": len(train_arrays),
            "qat_epochs": epochs, "splits": c.splits, "images": {s: len(c.ds.images(s)) for s in c.splits},
            "groups": list(c.groups), "variants": rows}


def markdown(results: list[dict]) -> str:
    lines = ["| run | variant | output change vs FP32 | worst-group loss, val (pts) | worst-group loss, test (pts) |",
             "|---|---|---|---|---|"]
    for r in results:
        for label, v in r["variants"].items():
            t = v["drift"].get("test")
            lines.append(f"| {r['run']} | {label} | {v['output_error']:.4f} | {max(v['drift']['val'].values()):+.2f} | "
                         + (f"{max(t.values()):+.2f}" if t else "n/a") + " |")
    r0 = results[0] if results else {}
    lines += ["", f"QAT: {r0.get('qat_epochs')} epochs on {r0.get('qat_images')} images (the calibration set plus a "
              "class-balanced TRAIN sample), lr 1e-4, seed 0; the fine-tuned weights are rounded to nearest. The QATs "
              "that emulate the export's graph keep the PTQ calibration's ranges; the earlier QAT calibrates again. "
              "Output change and drift as in ptq-refinements.md.", ""]
    return "\n".join(lines)


def main() -> None:
    ap = study_parser(__doc__, "qat-emulation")
    ap.add_argument("--qat-epochs", type=int, default=3)
    args = ap.parse_args()
    run_study(ap, args, lambda c: bench_run(c, args.threads, args.qat_epochs), markdown)


if __name__ == "__main__":
    main()
