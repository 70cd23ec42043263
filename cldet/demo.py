"""`cldet demo` / `make demo`: the main job on the bundled chess subset, in a few CPU minutes.

Base model on the six white piece classes; then the six black classes arrive, labeled only for
themselves. Fine-tuning and cldet's default method learn them from the same base, with the same data,
epochs and seed; both are scored on validation images where every piece is labeled. The result is a
small table and a bar chart; the benchmark studies (benchmarks/) report protocols in full.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .core.errors import DataError
from .core.files import write_json_atomic
from .core.options import option
from .protocol import Protocol, run_protocol, summarise

__all__ = ["DemoOptions", "run_demo", "DEMO_DATA"]

DEMO_DATA = Path(__file__).resolve().parents[1] / "data" / "chess-mini" / "data.yaml"
WHITE = ["white-bishop", "white-king", "white-knight", "white-pawn", "white-queen", "white-rook"]
BLACK = ["black-bishop", "black-king", "black-knight", "black-pawn", "black-queen", "black-rook"]
DEFAULT_EPOCHS = 12


@dataclass
class DemoOptions:
    out: Path = field(default=Path("demo-out"), metadata=option("folder for the demo's runs, table and plot"))
    epochs: int = field(default=0, metadata=option(f"epochs per step (0 = the demo's {DEFAULT_EPOCHS})",
                                                   unit="epochs", min=0))


def run_demo(opts: DemoOptions, data: Path = DEMO_DATA) -> dict:
    """Run the demo protocol into `opts.out` (finished steps are reused); returns the summary and the files written."""
    if not Path(data).is_file():
        raise DataError(f"demo data {data} is missing; it ships with the cldet source tree (data/chess-mini).")
    out = Path(opts.out)
    p = Protocol(name="demo", dataset=Path(data).resolve(), dataset_name="chess-mini", steps=[WHITE, BLACK],
                 train={"epochs": opts.epochs or DEFAULT_EPOCHS, "imgsz": 320, "batch": 8, "workers": 2},
                 methods=["finetune", "ours"])
    summary = summarise(p, [run_protocol(p, out / "runs", seed=0, joint=False)])
    stem = out / "cl-chess-mini-demo"
    files = {"json": stem.with_suffix(".json"), "md": stem.with_suffix(".md"), "png": stem.with_suffix(".png"),
             "runs": out / "runs"}
    write_json_atomic(files["json"], summary)
    files["md"].write_text(demo_table(summary))
    plot_demo(summary, files["png"])
    return {"summary": summary, "files": files}


def demo_table(s: dict) -> str:
    """Old, new and all-class mAP50-95 after the increment, and what the old classes lost in it."""
    t = s["train"]
    lines = [f"### {s['dataset']} demo: {len(s['classes'][0])} classes, then {len(s['classes'][1])} new ones "
             f"({t['epochs']} epochs per step, {t['imgsz']} px)", "",
             "| method | old mAP50-95 | new mAP50-95 | all mAP50-95 | forgetting old (pts) |", "|---|---|---|---|---|"]
    for name, m in s["methods"].items():
        f = m["final"]
        lines.append(f"| {name} | {f['old']['map50_95']:.3f} | {f['new']['map50_95']:.3f} | {f['all']['map50_95']:.3f} "
                     f"| {100 * m['forgetting']['old']:.1f} |")
    b = s["base"]["metrics"]["step0"]
    lines += ["", f"Base model (old classes, before the increment): mAP50-95 {b['map50_95']:.3f}."]
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
    ax.axhline(s["base"]["metrics"]["step0"]["map50_95"], color="k", ls="--", lw=1, label="old classes before")
    ax.set_xticks([i + width * (len(methods) - 1) / 2 for i in range(len(groups))], [f"{g} classes" for g in groups])
    ax.set_ylabel("mAP50-95 after the increment")
    ax.set_title(f"{s['dataset']}: learning new classes without the old data")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
