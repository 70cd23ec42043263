"""`cldet demo` / `make demo`: the main job on the bundled chess data, in a few CPU minutes.

A base model that knows the six white piece classes ships with cldet (trained to convergence on the full
chess13 split; cldet/assets/demo-base/README.md says how). The six black classes then arrive in 72 new
photos, labeled only for themselves. Fine-tuning and cldet's default method learn them from the same base,
with the same data, epochs and seed; both are scored on 24 other photos where every piece is labeled. Out
come a table (old / new / all-class mAP50-95 and time per method), a bar chart, and one photo with the base,
fine-tuned and cldet predictions side by side. The benchmark studies (benchmarks/) report protocols in full.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from .core.assets import CHESS_MINI, DEMO_BASE
from .core.errors import DataError, RunError
from .core.files import write_json_atomic
from .core.options import option
from .protocol import ALIASES, reuse

__all__ = ["DemoOptions", "run_demo", "demo_table", "DEMO_DATA"]

log = logging.getLogger("cldet")
DEMO_DATA = CHESS_MINI
WHITE = ["white-bishop", "white-king", "white-knight", "white-pawn", "white-queen", "white-rook"]
BLACK = ["black-bishop", "black-king", "black-knight", "black-pawn", "black-queen", "black-rook"]
DEFAULT_EPOCHS = 12
METHODS = ("finetune", "ours")
SCENE_CONF = 0.25  # the usual display threshold of a detector


@dataclass
class DemoOptions:
    out: Path = field(default=Path("demo-out"), metadata=option(
        "folder for the demo's runs, table and pictures (finished runs in it are reused, nothing is overwritten)"))
    epochs: int = field(default=0, metadata=option(f"epochs per method (0 = the demo's {DEFAULT_EPOCHS})",
                                                   unit="epochs", min=0))


def run_demo(opts: DemoOptions, data: Path = DEMO_DATA, base: Path = DEMO_BASE) -> dict:
    """Learn the black pieces from the bundled base with each method; returns the summary and the files written."""
    from .detector.config import DistillConfig, TrainConfig
    from .detector.jobs import LearnJob
    from .detector.lineage import read_lineage
    from .detector.runs import learn

    if not Path(data).is_file():
        raise DataError(f"demo data {data} is missing; it ships inside the cldet package (cldet/assets/chess-mini).")
    if not (Path(base) / "lineage.json").is_file():
        raise RunError(f"demo base model {base} is missing; it ships inside the cldet package (cldet/assets/demo-base).")
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    tcfg = TrainConfig(epochs=opts.epochs or DEFAULT_EPOCHS, imgsz=read_lineage(base).imgsz, batch=8, workers=2)
    summary = {"dataset": "chess-mini", "classes": [WHITE, BLACK], "train": tcfg.as_dict(), "base": {},
               "methods": {}}
    summary["base"]["metrics"] = _base_metrics(base, data, out)
    for k, name in enumerate(METHODS, 1):
        run = out / "runs" / name
        job = LearnJob(from_run=base, data=data, new_classes=",".join(BLACK), out=run, old_labels=False,
                       eval_data=data)
        log.info("[%d/%d] %s: learning the 6 black piece classes from the white-piece model", k, len(METHODS), name)
        t0 = time.time()
        reuse(run, lambda r: learn(replace(job, resume=r), DistillConfig(method=ALIASES.get(name, name)), tcfg))
        inc = read_lineage(run).last
        final = {g: inc.metrics[g] for g in ("old", "new", "all")}
        summary["methods"][name] = {
            "method": inc.method, "final": final, "seconds": inc.seconds,
            "forgetting": {"old": summary["base"]["metrics"]["old"]["map50_95"] - final["old"]["map50_95"]},
            "reused": time.time() - t0 < 0.5 * inc.seconds,
        }
    stem = out / "cl-chess-mini-demo"
    files = {"json": stem.with_suffix(".json"), "md": stem.with_suffix(".md"), "png": stem.with_suffix(".png"),
             "scene": out / "demo-scene.jpg", "runs": out / "runs"}
    summary["scene"] = draw_scene(base, [out / "runs" / m for m in METHODS], data, files["scene"])
    write_json_atomic(files["json"], summary)
    files["md"].write_text(demo_table(summary))
    plot_demo(summary, files["png"])
    return {"summary": summary, "files": files}


def _base_metrics(base: Path, data: Path, out: Path) -> dict:
    """The base model scored on the demo's validation photos (cached in OUT)."""
    cache = out / "base-eval.json"
    if cache.is_file():
        return json.loads(cache.read_text())
    from .detector.model import load_checkpoint
    from .detector.runs import evaluate_model

    model, meta = load_checkpoint(base / "model.pt")
    m = evaluate_model(model, data, meta["names"], meta["imgsz"], {"old": WHITE}, progress=False)
    write_json_atomic(cache, m)
    return m


def draw_scene(base: Path, runs: list[Path], data: Path, path: Path) -> dict:
    """One validation photo with the most pieces of both colours, predicted by the base and each method."""
    import cv2

    from .core.data import label_path_for, load_dataset, read_labels
    from .core.draw import draw_detections, side_by_side
    from .core.processing import letterbox, load_image, postprocess
    from .detector.model import load_checkpoint, torch_predict

    ds = load_dataset(data)
    white = {ds.names.index(n) for n in WHITE}
    black = {ds.names.index(n) for n in BLACK}

    def both(p: Path) -> tuple[int, int]:
        rows = read_labels(label_path_for(p), ds.nc)
        cls = [int(r[0]) for r in rows]
        return min(sum(c in white for c in cls), sum(c in black for c in cls)), len(cls)

    image = max(ds.images("val"), key=both)
    img = load_image(image)
    colors = [(40, 200, 40)] * len(WHITE) + [(0, 140, 255)] * len(BLACK)  # old classes green, new orange
    panels, titles, counts = [], [], {}
    for label, run in [("base (white pieces only)", base)] + [(f"{r.name} (+ black pieces)", r) for r in runs]:
        model, meta = load_checkpoint(run / "model.pt")
        x, lb = letterbox(img, meta["imgsz"])
        det = postprocess(torch_predict(model)(x[None])[0], lb, conf=SCENE_CONF)
        panels.append(draw_detections(img, det, meta["names"], colors, scale=512 / max(img.shape[:2])))
        titles.append(f"{label}: {len(det)} boxes")
        counts[run.name if run != base else "base"] = {
            "old": int(sum(int(c) < len(WHITE) for c in det.classes)),
            "new": int(sum(int(c) >= len(WHITE) for c in det.classes))}
    cv2.imwrite(str(path), side_by_side(panels, titles), [cv2.IMWRITE_JPEG_QUALITY, 88])
    return {"image": image.name, "conf": SCENE_CONF, "boxes": counts}


def demo_table(s: dict) -> str:
    """Old, new and all-class mAP50-95 after the increment, what the old classes lost, and the time taken."""
    t = s["train"]
    base_old = s["base"]["metrics"]["old"]["map50_95"]
    lines = [f"### {s['dataset']} demo: {len(s['classes'][0])} white piece classes, then {len(s['classes'][1])} "
             f"black ones ({t['epochs']} epochs, {t['imgsz']} px, 72 new photos)", "",
             "| method | old mAP50-95 | new mAP50-95 | all mAP50-95 | forgetting old (pts) | time (s) |",
             "|---|---|---|---|---|---|",
             f"| base (before) | {base_old:.3f} | - | - | - | - |"]
    for name, m in s["methods"].items():
        f = m["final"]
        lines.append(f"| {name} | {f['old']['map50_95']:.3f} | {f['new']['map50_95']:.3f} | {f['all']['map50_95']:.3f} "
                     f"| {100 * m['forgetting']['old']:.1f} | {m['seconds']:.0f} |")
    lines += ["", "mAP50-95 on 24 validation photos with every piece labeled; old = the 6 white classes, "
              "new = the 6 black ones. Time = one increment on this machine (training + scoring)."]
    return "\n".join(lines) + "\n"


def plot_demo(s: dict, path: Path) -> None:
    """Grouped bars per class group (old, new, all), one bar per method; the base model's old-class level dashed."""
    import matplotlib

    matplotlib.use("Agg")  # headless; matplotlib's bundled font, nothing fetched
    import matplotlib.pyplot as plt

    groups = ["old", "new", "all"]
    methods = list(s["methods"])
    width = 0.8 / len(methods)
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for k, name in enumerate(methods):
        vals = [s["methods"][name]["final"][g]["map50_95"] for g in groups]
        bars = ax.bar([i + k * width for i in range(len(groups))], vals, width, label=name)
        ax.bar_label(bars, fmt="%.3f", fontsize=7)
    ax.axhline(s["base"]["metrics"]["old"]["map50_95"], color="k", ls="--", lw=1, label="old classes before")
    ax.set_xticks([i + width * (len(methods) - 1) / 2 for i in range(len(groups))], [f"{g} classes" for g in groups])
    ax.set_ylabel("mAP50-95 after the increment")
    ax.set_title(f"{s['dataset']}: learning new classes without the old data")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
