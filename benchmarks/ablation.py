"""Ablation of the default method: each component switched off (or changed) alone, on a protocol's shared base.

    .venv/bin/python -m benchmarks.ablation --protocol benchmarks/protocols/chess13-2step.yaml
    .venv/bin/python -m benchmarks.ablation --protocol ... --variants no-feature,focus-all --seed 0

Each variant learns every increment of the protocol from the protocol's base run (run cl_protocols first: it
trains the base, the joint model and the finetune/ours reference runs), with the same data, epochs and seed.
Finished runs are reused (cldet.protocol.reuse). Writes benchmarks/results/ablation-<dataset>-<protocol>.{json,md}
(-seed<N> added for another seed than 0)
with old/new/all mAP50-95, the ratio to joint, new classes against fine-tuning's and old classes against the base.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from cldet import api
from cldet.core.files import write_json_atomic
from cldet.detector.config import DEFAULT_METHOD, TrainConfig
from cldet.detector.lineage import read_lineage
from cldet.protocol import joint_metrics, load_protocol, reuse

ROOT = Path(__file__).resolve().parents[1]

# key -> (table row, run folder under seed<N>, learn settings over the default method's)
FINETUNE_RUN = "<the finetune run of the same step>"  # resolved per step by run_variant
VARIANTS: dict[str, tuple[str, str, dict]] = {
    "default": ("default (ours)", "ours", {}),
    "focus-all": ("feature KD at every position (feature_focus=all)", "abl-focus-all", {"feature_focus": "all"}),
    "no-soft": ("hard background targets for old classes (soft_targets=false)", "abl-no-soft", {"soft_targets": False}),
    "no-feature": ("no feature KD (method pseudo+response)", "abl-no-feature", {"method": "pseudo+response"}),
    "no-response": ("no response KD, no soft targets (method pseudo+feature)", "abl-no-response", {"method": "pseudo+feature"}),
    "no-pseudo": ("no pseudo labels (method feature+response)", "abl-no-pseudo", {"method": "feature+response"}),
    "box": ("+ box-distribution KD (box_weight=1)", "abl-box", {"box_weight": 1.0}),
    "split": ("task loss split per class group (task_split=true)", "abl-split", {"task_split": True}),
    "split-no-response": ("task_split, no response KD (method pseudo+feature)", "abl-split-no-response",
                          {"task_split": True, "method": "pseudo+feature"}),
    "split-box": ("task_split + box-distribution KD (box_weight=1)", "abl-split-box",
                  {"task_split": True, "box_weight": 1.0}),
    "finetune": ("fine-tuning (lower bound)", "finetune", {"method": "finetune"}),
    # the second teacher of each step is the protocol's fine-tuning run of that step (run it first): its cost is that
    # run's on top of this one's
    "second-teacher": ("+ second teacher: the fine-tuning run's new classes distilled (new_teacher)",
                       "abl-second-teacher", {"new_teacher": FINETUNE_RUN}),
    # not a method (it reads the old classes' real labels, which an increment does not have): what perfect pseudo
    # labels would give in the same epochs from the same base, the ceiling of anything that labels the old objects
    "oracle": ("oracle: fine-tuning with the old classes' real labels (not exemplar-free)", "abl-oracle",
               {"method": "finetune", "old_labels": True}),
}
# runs made by earlier code, shown when present (not reproducible by this code)
RECORDED = {"v1": "previous default (v1; code 197be3b: KD counted 3x, feature KD everywhere, hard targets)"}


def run_variant(p, root: Path, folder: str, settings: dict) -> Path:
    prev = root / "base"
    settings = {"old_labels": False, **settings}  # an increment has only the new classes' labels, unless told
    for k, classes in enumerate(p.steps[1:], 1):
        run = root / folder / f"step{k}"
        finetuned = root / "finetune" / f"step{k}"
        if FINETUNE_RUN in settings.values() and not (finetuned / "lineage.json").exists():
            raise SystemExit(f"{finetuned} is not finished: run the finetune variant (or the protocol's finetune "
                             "method) before second-teacher")
        step = {key: str(finetuned) if v == FINETUNE_RUN else v for key, v in settings.items()}
        reuse(run, lambda r: api.learn(from_run=prev, data=p.dataset, new_classes=",".join(classes), out=run,
                                       eval_data=p.dataset, curves=True, resume=r, **step))
        prev = run
    return prev


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--protocol", type=Path, required=True)
    ap.add_argument("--data-root", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "work")
    ap.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--variants", default=",".join(VARIANTS), help=f"comma list of: {', '.join(VARIANTS)}")
    ap.add_argument("--threads", type=int, default=None, help="CPU training threads (default: every core)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    p = load_protocol(args.protocol, args.data_root)
    root = args.work / f"{p.dataset_name}-{p.name}" / f"seed{args.seed}"
    base = read_lineage(root / "base")
    tcfg = TrainConfig(**{**p.train, "seed": args.seed, "threads": args.threads})
    rows = {}
    for key in args.variants.split(","):
        name, folder, over = VARIANTS[key]
        last = run_variant(p, root, folder, {**tcfg.as_dict(), "method": DEFAULT_METHOD, **over})
        rows[name] = {"run": folder, "settings": over, "metrics": read_lineage(last).last.metrics}
    for folder, name in RECORDED.items():
        last = root / folder / f"step{len(p.steps) - 1}"
        if (last / "lineage.json").exists():
            rows[name] = {"run": folder, "settings": None, "metrics": read_lineage(last).last.metrics}
    joint = joint_metrics(root / "joint", p) if (root / "joint" / "lineage.json").exists() else None
    summary = {"protocol": p.name, "dataset": p.dataset_name, "seed": args.seed, "train": tcfg.as_dict(),
               "base": base.last.metrics, "joint": joint, "rows": rows}
    seed = f"-seed{args.seed}" if args.seed else ""  # seed 0 keeps the name of the first study
    stem = args.results / f"ablation-{p.dataset_name}-{p.name}{seed}"
    summary["rows"] = merged_rows(stem.with_suffix(".json"), summary)
    print(write_results(summary, stem))
    return 0


def merged_rows(path: Path, summary: dict) -> dict:
    """This run's rows added to those of an earlier table of the same study (same protocol, dataset, seed and
    training settings), so that running one more variant never drops the rows measured before; a row run again
    is replaced, in its place."""
    rows = summary["rows"]
    if not path.is_file():
        return rows
    old = json.loads(path.read_text())

    def settings(s: dict) -> tuple:  # how a run computes, not how fast (threads, workers, device)
        train = {k: v for k, v in (s.get("train") or {}).items() if k not in ("threads", "workers", "device")}
        return s.get("protocol"), s.get("dataset"), s.get("seed"), train

    if settings(old) != settings(summary):
        print(f"{path}: an earlier table with other settings is replaced", file=sys.stderr)
        return rows
    return {**old.get("rows", {}), **rows}


def write_results(summary: dict, stem: Path) -> str:
    """The study's JSON and its markdown table at `stem`.{json,md}; returns the table."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(stem.with_suffix(".json"), summary)
    table = ablation_table(summary)
    stem.with_suffix(".md").write_text(table)
    return table


def ablation_table(s: dict) -> str:
    """Markdown: old/new/all mAP50-95 per variant, ratio to joint, new vs fine-tuning's, old vs the base."""
    def g(m, k):
        return m[k]["map50_95"] if m and k in m else None

    fmt = lambda v, spec=".3f": "-" if v is None else format(v, spec)  # noqa: E731
    ft = next((r["metrics"] for r in s["rows"].values() if r["run"] == "finetune"), None)
    base_old, joint_all = g(s["base"], "all"), g(s["joint"], "all")
    lines = [f"### Ablation on {s['dataset']} / {s['protocol']} (seed {s['seed']}; mAP50-95; {s['train']['epochs']} "
             f"epochs per increment)", "",
             "| variant | old | new | all | all / joint | new / fine-tuning's new | old - base (pts) |",
             "|---|---|---|---|---|---|---|"]
    if joint_all is not None:
        lines.append(f"| joint training (upper bound) | {fmt(g(s['joint'], 'old'))} | {fmt(g(s['joint'], 'new'))} | "
                     f"{fmt(joint_all)} | 1.000 | - | - |")
    for name, r in s["rows"].items():
        m = r["metrics"]
        old, new, all_ = g(m, "old"), g(m, "new"), g(m, "all")
        lines.append(f"| {name} | {fmt(old)} | {fmt(new)} | {fmt(all_)} | "
                     f"{fmt(all_ / joint_all if joint_all else None)} | {fmt(new / g(ft, 'new') if ft else None)} | "
                     f"{fmt(100 * (old - base_old) if old is not None and len(s['base']) else None, '+.1f')} |")
    lines += ["", f"Base model: {fmt(base_old)} on the step-0 classes."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
