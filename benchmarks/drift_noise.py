"""How large a per-group mAP50-95 drift can an evaluation split show from output changes of INT8's size alone?

For a converged run, the default INT8 (as `cldet export --int8 ptq` makes it) is compared with FP32 on the val images
at the anchors where FP32 sees something (best class probability > 0.05): the spread (std) of the class-logit change
and of the box change relative to the box's size. Then the FP32 outputs are perturbed `--seeds` times with random,
independent noise of exactly that spread (both, boxes only, logits only), and each perturbed model is scored like
INT8: FP32 minus perturbed mAP50-95 per class group. The distribution of the worst-group loss says what a drift
tolerance can resolve on this split: where perturbations of INT8's size routinely lose more than the tolerance, a
per-group drift goal asks for outputs closer to FP32 than INT8's; the half-spread mode says how much closer.

    .venv/bin/python -m benchmarks.drift_noise --run RUN [--run RUN ...] [--data DATA.yaml] [--seeds 20]

Writes benchmarks/results/drift-noise.json/.md.
"""

from __future__ import annotations

import numpy as np

MIN_PROB = 0.05  # anchors where FP32 sees something (as cldet.export.sensitivity.output_error)
MODES = ("boxes and logits", "boxes only", "logits only", "both at half INT8's spread")


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return np.log(p / (1 - p))


def change_spread(ref: np.ndarray, out: np.ndarray) -> tuple[float, float]:
    """(std of the class-logit change, std of the box change / box size) at anchors where `ref` (N, 4 + nc, A)
    has a class probability above MIN_PROB."""
    sel = ref[:, 4:].max(1) > MIN_PROB
    dl = (_logit(out[:, 4:]) - _logit(ref[:, 4:])).transpose(0, 2, 1)[sel]
    size = np.sqrt(np.clip(ref[:, 2] * ref[:, 3], 1e-6, None))
    db = ((out[:, :4] - ref[:, :4]) / size[:, None]).transpose(0, 2, 1)[sel]
    return float(dl.std()), float(db.std())


def perturb(out: np.ndarray, rng: np.random.Generator, logit_std: float, box_std: float) -> np.ndarray:
    """`out` (N, 4 + nc, A) with independent Gaussian noise: on every class logit, and on every box coordinate in
    units of the box's size."""
    o = out.copy()
    if logit_std > 0:
        o[:, 4:] = 1 / (1 + np.exp(-(_logit(o[:, 4:]) + rng.normal(0, logit_std, o[:, 4:].shape))))
    if box_std > 0:
        size = np.sqrt(np.clip(o[:, 2] * o[:, 3], 1e-6, None))[:, None]
        o[:, :4] = o[:, :4] + rng.normal(0, box_std, o[:, :4].shape) * size
    return o


class _Cached:
    """A backend whose outputs are computed once per input batch (every perturbed evaluation reads the same)."""

    def __init__(self, backend):
        self.backend, self.memo = backend, {}

    def __call__(self, x: np.ndarray) -> np.ndarray:
        key = hash(x.tobytes())
        if key not in self.memo:
            self.memo[key] = np.concatenate([self.backend(a[None]) for a in x])
        return self.memo[key]


def bench_run(c, seeds: int, threads: int) -> dict:
    """`c`: the run exported and calibrated (benchmarks.ptq_refinements.calibrated_run)."""
    from cldet.core.evaluate import evaluate
    from cldet.deploy.runtime import open_backend
    from cldet.export.quantize import QuantConfig, quantize_ptq

    from .export_bench import val_inputs

    run, ds, groups, names, imgsz = c.run, c.ds, c.groups, c.names, c.imgsz
    int8 = quantize_ptq(c.fp32, c.work / "int8.onnx", lambda: iter(c.arrays), QuantConfig(), stats=c.stats,
                        threads=threads, proto=c.proto)
    f32 = _Cached(open_backend(c.fp32, provider="cpu", threads=threads))
    i8 = _Cached(open_backend(int8, provider="cpu", threads=threads))
    inputs = val_inputs(ds, imgsz)
    ref = np.concatenate([f32.backend(x) for x in inputs])
    logit_std, box_std = change_spread(ref, np.concatenate([i8.backend(x) for x in inputs]))

    def score(predict) -> dict:
        return evaluate(predict, ds, "val", names, imgsz, groups=groups, progress=False).scores()

    base = score(f32)

    def drift(sc: dict) -> dict:
        return {g: round(100 * (base[g]["map50_95"] - sc[g]["map50_95"]), 2) for g in groups}

    int8_drift = drift(score(i8))
    print(f"[{run}] INT8 change spread: logit std {logit_std:.4f}, box std {box_std:.5f}; drift {int8_drift}",
          flush=True)
    modes = {}
    spreads = ((logit_std, box_std), (0.0, box_std), (logit_std, 0.0), (logit_std / 2, box_std / 2))
    for mode, (ls, bs) in zip(MODES, spreads):
        worst, per = [], []
        for s in range(seeds):
            rng = np.random.default_rng(s)
            d = drift(score(lambda x: perturb(f32(x), rng, ls, bs)))
            per.append(d)
            worst.append(max(d.values()))
        w = np.array(worst)
        modes[mode] = {"worst_loss": [round(float(v), 2) for v in w], "median": round(float(np.median(w)), 2),
                       "share_over_0.5": round(float((w > 0.5).mean()), 2), "drift": per}
        print(f"[{run}] {mode}: worst-group loss median {np.median(w):.2f}, share > 0.5 {(w > 0.5).mean():.2f}",
              flush=True)
    return {"run": c.shown, "data": str(c.data), "val_images": len(ds.images("val")), "groups": list(groups),
            "seeds": seeds, "int8": {"logit_std": round(logit_std, 5), "box_std": round(box_std, 6),
                                     "drift": int8_drift, "worst_loss": max(int8_drift.values())},
            "perturbed": modes}


def markdown(results: list[dict]) -> str:
    lines = ["| run (val images) | INT8: logit / box change std | INT8 worst-group loss (pts) | "
             + " | ".join(f"perturbed, {m}: median worst loss, share > 0.5" for m in MODES) + " |",
             "|---|---|---|" + "---|" * len(MODES)]
    for r in results:
        i = r["int8"]
        lines.append(f"| {r['run']} ({r['val_images']}) | {i['logit_std']:.3f} / {i['box_std']:.4f} | "
                     f"{i['worst_loss']:+.2f} | " + " | ".join(
                         f"{r['perturbed'][m]['median']:.2f}, {100 * r['perturbed'][m]['share_over_0.5']:.0f}%"
                         for m in MODES) + " |")
    lines += ["", f"INT8: cldet's default PTQ. Change std: over the val anchors where FP32 sees something (class "
              f"probability > {MIN_PROB}), the class-logit change and the box change relative to the box's size. "
              f"Perturbed: FP32's outputs plus independent Gaussian noise of INT8's spread, "
              f"{results[0]['seeds'] if results else 0} seeds each; worst-group loss = the largest FP32 minus "
              "perturbed mAP50-95 over the class groups, in points.", ""]
    return "\n".join(lines)


def main() -> None:
    from .ptq_refinements import run_study, study_parser

    ap = study_parser(__doc__, "drift-noise")
    ap.add_argument("--seeds", type=int, default=20, help="random perturbations per mode")
    args = ap.parse_args()
    if args.seeds < 1:
        ap.error("--seeds must be at least 1")
    run_study(ap, args, lambda c: bench_run(c, args.seeds, args.threads), markdown)


if __name__ == "__main__":
    main()
