"""Latency on the device: percentiles, throughput per batch size, end-to-end cost, memory, device state.

Why alternate with `--vs`: clocks, thermal state and background load drift during a run; running the
two artifacts in turn (order flipped every iteration) exposes both to the same conditions, so their
ratio is what the quantization bought, not what the board was doing. End-to-end = letterbox + infer +
postprocess on images already decoded in memory (decode cost depends on the camera, not on cldet).
Torch-free.
"""

from __future__ import annotations

import resource
import time
from functools import partial
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from tqdm import tqdm

from .device import device_info, gpu_memory_used_mb, rss_mb
from ..core.processing import letterbox, load_image, postprocess
from .backend import Backend
from .options import BenchOptions
from .runtime import open_backend

__all__ = ["bench", "alternate", "latency_stats", "format_bench", "plot_bench", "write_bench", "BENCH_FORMAT"]

BENCH_FORMAT = "cldet-bench/1"


def latency_stats(ms: list[float], batch: int) -> dict:
    """p50/p90/p99/mean/std/min in milliseconds per call, and images per second at the mean."""
    a = np.asarray(ms, dtype=np.float64)
    mean = float(a.mean())
    return {"p50": float(np.percentile(a, 50)), "p90": float(np.percentile(a, 90)), "p99": float(np.percentile(a, 99)),
            "mean": mean, "std": float(a.std()), "min": float(a.min()), "n": int(a.size),
            "throughput_ips": float(batch * 1000.0 / mean) if mean > 0 else None}


def _images(data: str | Path | None, split: str, n: int, seed: int = 0) -> tuple[list[np.ndarray], str]:
    """`n` decoded BGR images from the dataset, or synthetic 640x480 noise when no data is given."""
    if data is None:
        rng = np.random.default_rng(seed)
        return [rng.integers(0, 256, (480, 640, 3), dtype=np.uint8) for _ in range(n)], "synthetic 640x480"
    from ..core.data import load_dataset
    from ..core.validate import check_split

    ds = load_dataset(data)
    check_split(ds, split, limit=n, need_labels=False)  # timing needs images that decode, not labels
    files = ds.images(split)
    return [load_image(files[i % len(files)]) for i in range(n)], f"{data} [{split}]"


def _pre(imgs: list[np.ndarray], size: int):
    xs, lbs = zip(*(letterbox(im, size) for im in imgs))
    return np.stack(xs), lbs


def _e2e(backend: Backend, imgs: list[np.ndarray]) -> None:
    x, lbs = _pre(imgs, backend.imgsz)
    y = backend(x)
    for o, lb in zip(y, lbs):
        postprocess(o, lb, conf=0.25)


def alternate(calls: Sequence[Callable[[], object]], iters: int, warmup: int = 0, progress: bool = False,
              desc: str = "timing") -> list[list[float]]:
    """Milliseconds per call of each of `calls`, `iters` times, the calls taking turns every iteration (in reversed
    order every other one) so that load, clock and thermal changes hit all of them alike. `warmup` untimed calls
    of each come first (allocation, kernel selection, TensorRT EP engine builds)."""
    for call in calls:
        for _ in range(warmup):
            call()
    ms: list[list[float]] = [[] for _ in calls]
    for it in tqdm(range(iters), desc=desc, unit="it", disable=not progress):
        for k in (range(len(calls)) if it % 2 == 0 else reversed(range(len(calls)))):
            t = time.perf_counter()
            calls[k]()
            ms[k].append((time.perf_counter() - t) * 1000.0)
    return ms


def _skip_reason(backend: Backend, b: int) -> str | None:
    if backend.batch is not None and backend.batch != b:
        return (f"{backend.artifact.name} has a fixed batch of {backend.batch}; batch {b} not measured "
                "(export with a dynamic batch to measure it)")
    return None


def bench(opts: BenchOptions) -> dict:
    """Benchmark one artifact, or two alternated; returns the JSON-ready result."""
    paths = [Path(opts.artifact)] + ([Path(opts.vs)] if opts.vs else [])
    iters, warmup, batches, provider, threads = opts.iters, opts.warmup, opts.batch, opts.provider, opts.threads
    rss0 = rss_mb()
    backends = [open_backend(p, provider=provider, threads=threads) for p in paths]
    imgsz = {b.imgsz for b in backends}
    on_gpu = any("CPU" not in p for b in backends for p in b.providers)  # else no CUDA context is created
    gpu_mb = gpu_memory_used_mb if on_gpu else (lambda: None)
    imgs, source = _images(opts.data, opts.split, max(batches))
    entries = [{"file": str(p), "backend": b.name, "providers": list(b.providers), "imgsz": b.imgsz, "nc": b.nc,
                "batch": b.batch if b.batch is not None else "dynamic", "results": {}} for p, b in zip(paths, backends)]
    ratios: dict[str, dict] = {}
    for bsz in batches:
        reasons = [_skip_reason(b, bsz) for b in backends]
        for e, r in zip(entries, reasons):
            if r:
                e["results"][str(bsz)] = {"skipped": r}
        live = [i for i, r in enumerate(reasons) if r is None]
        if not live:
            continue
        xs = {s: _pre(imgs[:bsz], s)[0] for s in imgsz}
        calls = [partial(backends[i], xs[backends[i].imgsz]) for i in live]  # inference only
        calls += [partial(_e2e, backends[i], imgs[:bsz]) for i in live]  # letterbox + inference + NMS
        ms = alternate(calls, iters, warmup, progress=opts.progress, desc=f"bench batch {bsz}")
        for k, i in enumerate(live):
            entries[i]["results"][str(bsz)] = {"infer": latency_stats(ms[k], bsz),
                                               "e2e": latency_stats(ms[len(live) + k], bsz)}
        if len(live) == 2:
            a, b = (entries[i]["results"][str(bsz)] for i in live)
            ratios[str(bsz)] = {f"{kind}_{stat}": a[kind][stat] / b[kind][stat]
                                for kind in ("infer", "e2e") for stat in ("p50", "mean")}
        for i in live:
            gpu = gpu_mb()
            if gpu is not None:
                entries[i].setdefault("gpu_used_mb_max", 0.0)
                entries[i]["gpu_used_mb_max"] = max(entries[i]["gpu_used_mb_max"], gpu)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB
    return {
        "format": BENCH_FORMAT,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "settings": {"iters": iters, "warmup": warmup, "batches": list(batches), "threads": threads,
                     "provider": provider, "input": source, "alternated": len(backends) == 2,
                     "e2e": "letterbox + infer + postprocess (conf 0.25, NMS) on decoded images"},
        "device": device_info(),
        "artifacts": entries,
        "ratio": ratios,  # artifact / vs, per batch size
        "memory": {"rss_before_mb": rss0, "rss_after_mb": rss_mb(), "peak_rss_mb": peak,
                   "gpu_used_mb": gpu_mb()},
    }


def format_bench(result: dict) -> str:
    """Terminal table: one line per artifact and batch size (ms per call; images/s)."""
    lines = [f"{'artifact':<26} {'batch':>5} {'p50':>8} {'p90':>8} {'p99':>8} {'mean':>8} {'img/s':>8} {'e2e p50':>8}"]
    for e in result["artifacts"]:
        for bsz, r in e["results"].items():
            name = Path(e["file"]).name[:26]
            if "skipped" in r:
                lines.append(f"{name:<26} {bsz:>5}  skipped: {r['skipped']}")
                continue
            s, t = r["infer"], r["e2e"]
            lines.append(f"{name:<26} {bsz:>5} {s['p50']:>8.2f} {s['p90']:>8.2f} {s['p99']:>8.2f} {s['mean']:>8.2f} "
                         f"{s['throughput_ips']:>8.1f} {t['p50']:>8.2f}")
    for bsz, r in result.get("ratio", {}).items():
        lines.append(f"ratio artifact/vs at batch {bsz}: inference p50 {r['infer_p50']:.3f}, end-to-end p50 {r['e2e_p50']:.3f}")
    isa = result.get("device", {}).get("cpu_int8")
    if isa and isa.get("int8_dot_product") is not None:
        lines.append(f"CPU INT8 features: {' '.join(isa['flags']) or 'none listed'} ("
                     + ("8-bit dot product present" if isa["int8_dot_product"] else
                        "no 8-bit dot product instruction: the CPU's integer kernels do half the multiply-adds per "
                        "instruction of a CPU that has one")
                     + ")")
    lines.append(f"peak RSS {result['memory']['peak_rss_mb']:.0f} MB"
                 + (f", GPU used {result['memory']['gpu_used_mb']:.0f} MB" if result["memory"]["gpu_used_mb"] else ""))
    return "\n".join(lines)


def plot_bench(result: dict, path: str | Path) -> Path:
    """Bar chart of p50 latency (whiskers p90) per batch size, inference-only and end-to-end."""
    import matplotlib

    matplotlib.use("Agg")  # headless; matplotlib's bundled DejaVu font, nothing fetched
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=False)
    arts = result["artifacts"]
    batches = [str(b) for b in result["settings"]["batches"]]
    width = 0.8 / max(len(arts), 1)
    for ax, kind, title in zip(axes, ("infer", "e2e"), ("inference only", "end-to-end (pre + infer + post)")):
        for k, e in enumerate(arts):
            xs, p50, err = [], [], []
            for j, bsz in enumerate(batches):
                r = e["results"].get(bsz, {})
                if kind in r:
                    xs.append(j + k * width)
                    p50.append(r[kind]["p50"])
                    err.append(r[kind]["p90"] - r[kind]["p50"])
            ax.bar(xs, p50, width, yerr=[np.zeros(len(err)), err], capsize=3, label=Path(e["file"]).name)
        ax.set_xticks([j + width * (len(arts) - 1) / 2 for j in range(len(batches))], batches)
        ax.set_xlabel("batch size")
        ax.set_ylabel("latency per call, ms (bar p50, whisker p90)")
        ax.set_title(title)
        ax.legend(fontsize=8)
    dev = result["device"]
    title = f"cldet bench on {dev.get('model') or dev.get('machine')} ({dev.get('cpu_count')} cores)"
    ratio = result.get("ratio", {})
    if ratio:
        a, b = (Path(e["file"]).name for e in arts)
        title += f"; {a} / {b} p50: " + ", ".join(f"{r['infer_p50']:.2f} (b{k})" for k, r in ratio.items())
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_bench(result: dict, out: str | Path) -> tuple[Path, Path]:
    """bench.json and bench.png in `out`."""
    from ..core.files import write_json_atomic

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "bench.json", result)
    return out / "bench.json", plot_bench(result, out / "bench.png")

