"""Tables and plots of class-incremental protocol results (the JSON that cldet.protocol.summarise writes).

The README's result tables are these markdown files; `update_readme` copies them in. Only what is in the
results JSON is read here, so JSON written by earlier versions of the harness renders the same.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cldet.core.files import write_json_atomic

__all__ = ["write_outputs", "markdown_table", "plot_steps", "plot_curves", "convergence"]


def write_outputs(summary: dict, results_dir: Path, quick: bool = False) -> dict[str, Path]:
    """JSON, a markdown table and a PNG of mAP per class group across steps."""
    results_dir.mkdir(parents=True, exist_ok=True)
    stem = f"cl-{summary['dataset']}-{summary['protocol']}" + ("-quick" if quick else "")
    paths = {"json": results_dir / f"{stem}.json", "md": results_dir / f"{stem}.md", "png": results_dir / f"{stem}.png",
             "curves": results_dir / f"{stem}-curves.png"}
    write_json_atomic(paths["json"], summary)
    paths["md"].write_text(markdown_table(summary))
    plot_steps(summary, paths["png"])
    if not plot_curves(summary, paths["curves"]):
        del paths["curves"]
    return paths


def _all_curve(curve: list[dict]) -> list[float]:
    return [r["metrics"]["all"]["map50_95"] for r in curve if "all" in r.get("metrics", {})]


def convergence(curve: list[dict], last: int = 3) -> float | None:
    """Points of val mAP50-95 (all classes) the run moved over its last `last` epochs (max - min of the last
    last + 1 values); < 1 point is the protocols' convergence criterion."""
    ys = _all_curve(curve)
    if len(ys) < last + 1:
        return None
    tail = ys[-(last + 1):]
    return 100 * (max(tail) - min(tail))


def plot_curves(s: dict, path: Path) -> bool:
    """Learning curves (val mAP50-95 after every epoch) of the base, the joint model and each method's increments,
    one after the other on one epoch axis: the evidence that the models compared had finished learning."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    base = s["base"].get("curve") or []
    if not base:
        return False
    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    xb = [r["epoch"] for r in base]
    ax.plot(xb, _all_curve(base), color="k", label="base (step-0 classes)")
    joint = s["methods"].get("joint", {}).get("curves", [[]])[0]
    if joint:
        ax.plot([r["epoch"] for r in joint], _all_curve(joint), color="k", ls="--", label="joint (all classes)")
    for name, m in s["methods"].items():
        if name == "joint":
            continue
        x0 = xb[-1]
        for k, c in enumerate(m.get("curves") or []):
            if not c:
                continue
            ax.plot([x0 + r["epoch"] for r in c], _all_curve(c), label=f"{name} (all classes so far)" if k == 0 else None,
                    color=f"C{list(s['methods']).index(name)}")
            x0 += c[-1]["epoch"]
    ax.set_xlabel("epoch (increments continue after the base)")
    ax.set_ylabel("val mAP50-95")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(f"{s['dataset']} / {s['protocol']}: learning curves")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _max_known(values) -> float | None:
    known = [v for v in values if v is not None]
    return max(known) if known else None


def markdown_table(s: dict) -> str:
    t = s["train"]
    lines = [f"### {s['dataset']} / {s['protocol']} ({s['steps']} steps; {t['epochs']} epochs per step, {t['imgsz']} px, "
             f"fraction {t['fraction']}, seeds {s['seeds']})", "",
             "| method | exemplar-free | old mAP50-95 | new mAP50-95 | all mAP50-95 | all mAP50 | ratio to joint | forgetting old (pts) | s / step |",
             "|---|---|---|---|---|---|---|---|---|"]
    seeds = len(s["seeds"]) > 1  # values are means over the seeds, with their std after the +-

    def pm(mean: float, std: float | None, fmt: str = ".3f") -> str:
        return f"{mean:{fmt}}" + (f" ± {std:{fmt}}" if seeds and std is not None else "")

    for name, m in s["methods"].items():
        f, sd = m["final"], m.get("final_std", {})
        def v(g, k="map50_95"):
            return pm(f[g][k], sd.get(g, {}).get(k)) if g in f else "-"
        fo = m["forgetting"].get("old")
        ratio = "-" if m["ratio_to_joint"] is None else pm(m["ratio_to_joint"], m.get("ratio_to_joint_std"))
        lines.append(f"| {name} | {'yes' if s['exemplar_free'].get(name) else ('n/a' if name == 'joint' else 'no')} | {v('old')} | {v('new')} | "
                     f"{v('all')} | {v('all', 'map50')} | {ratio} | {'' if fo is None else f'{100 * fo:.1f}'} | "
                     f"{np.mean(m['seconds_per_step']):.0f} |")
    b, bsd = s["base"]["metrics"]["step0"], s["base"].get("metrics_std", {}).get("step0", {})
    lines += ["", f"Base model (step 0 classes, {s['base'].get('epochs', '?')} epochs): mAP50-95 "
              f"{pm(b['map50_95'], bsd.get('map50_95'))}, mAP50 {pm(b['map50'], bsd.get('map50'))}."]
    if seeds:
        lines.append(f"Mean ± std over seeds {s['seeds']}; forgetting and seconds are means.")
    # convergence: the largest move over the seeds' last 3 epochs
    base_curves = [r.get("curve") or [] for r in s["base"].get("per_seed", [])] or [s["base"].get("curve") or []]
    moved = {"base": _max_known(convergence(c) for c in base_curves)}
    if "joint" in s["methods"]:
        j = s["methods"]["joint"]
        moved["joint"] = _max_known(convergence(r["curves"][0]) for r in j.get("per_seed", [j]) if r.get("curves"))
    known = {k: v for k, v in moved.items() if v is not None}
    if known:
        lines.append(("Convergence (val mAP50-95 moved over the last 3 epochs, the most of any seed): " if seeds else
                      "Convergence (val mAP50-95 moved over the last 3 epochs): ")
                     + ", ".join(f"{k} {v:.1f} pts" for k, v in known.items())
                     + (f"; joint trained {s['joint_epochs']} epochs." if s.get("joint_epochs") else "."))
    if "cost" in s:
        c = s["cost"]
        fmt = lambda v: "-" if v is None else f"{v:.2f}x"  # noqa: E731
        lines.append(f"Cost: ours / finetune time per increment {fmt(c['ours_vs_finetune_time'])}; "
                     f"one increment of ours / joint retraining {fmt(c['ours_increment_vs_joint_retrain'])}.")
    return "\n".join(lines) + "\n"


def plot_steps(s: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = [f"step{k}" for k in range(s["steps"])] + ["all"]
    fig, axes = plt.subplots(1, len(groups), figsize=(3.2 * len(groups), 3.2), sharey=True)
    for ax, g in zip(np.atleast_1d(axes), groups):
        for name, m in s["methods"].items():
            if name == "joint":
                jv = m["per_step"][0].get(g, m["final"].get(g, {})).get("map50_95") if m.get("per_step") else None
                if jv is not None:
                    ax.axhline(jv, color="k", ls="--", lw=1, label="joint")
                continue
            base = s["base"]["metrics"]
            xs = list(range(len(m["per_step"]) + 1))
            ys = [base.get(g, {}).get("map50_95", np.nan) if g != "all" else base["all"]["map50_95"]]
            ys += [ps.get(g, {}).get("map50_95", np.nan) for ps in m["per_step"]]
            ax.plot(xs, ys, marker="o", label=name)
        ax.set_xticks(range(s["steps"]))
        ax.set_xlim(-0.3, s["steps"] - 0.7)
        ax.set_title(f"{g} classes" if g != "all" else "all classes")
        ax.set_xlabel("after step")
        ax.grid(alpha=0.3)
    np.atleast_1d(axes)[0].set_ylabel("mAP50-95")
    np.atleast_1d(axes)[-1].legend(fontsize=7)
    fig.suptitle(f"{s['dataset']} / {s['protocol']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
