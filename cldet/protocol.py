"""Class-incremental protocols: a class order split into increments, run for several methods.

A protocol is a small YAML file (see benchmarks/protocols/):
    name: 2step                      # protocol name used in result file names
    dataset: chess13                 # a folder under --data-root, or a path to a dataset yaml
    steps: [[a, b, c], [d, e]]       # class names per increment; the first is the base model's
    train: {epochs: 12, imgsz: 320}  # TrainConfig fields, identical for every method
    methods: [finetune, ours, pseudo, feature, replay]
    replay_images: 20                # buffer size of the 'replay' baseline (stores old images)
    base_epochs: 24                  # optional: the base run's epochs (default: epochs)
    joint_epochs: 24                 # optional: the joint run's epochs (default: epochs x number of steps)
    arch: yolo11n.yaml               # optional: Ultralytics architecture of the base and joint runs (default yolov5nu)
    init: none                       # optional: their starting weights, 'none' (random) or a tensors-only file
                                     #   (default: the bundled COCO yolov5nu backbone+neck, for yolov5nu only)

Every method starts from the same base model (trained once per seed); the joint upper bound trains on
all classes with all labels for the same total number of epochs. The new data of an increment is
labeled for its new classes only (old-class labels present in the dataset are ignored).

`cldet demo` and the studies in benchmarks/ run protocols through this module; their tables and plots are
their own. A run directory under the work folder is reused once it has its lineage.json, so an interrupted
study continues where it stopped (`reuse`); `summarise` writes the results JSON that both read.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import yaml

from .core.errors import DataError, RunError
from .core.files import write_json_atomic
from .detector.config import DEFAULT_METHOD, METHODS, DistillConfig, TrainConfig
from .detector.jobs import LearnJob, TrainJob
from .detector.lineage import LINEAGE, read_lineage
from .detector.rundir import PENDING, RESUME_FREE

__all__ = ["Protocol", "load_protocol", "run_protocol", "joint_metrics", "summarise", "reuse", "ALIASES"]

log = logging.getLogger("cldet")
ALIASES = {"ours": DEFAULT_METHOD}


@dataclass
class Protocol:
    name: str
    dataset: Path
    dataset_name: str
    steps: list[list[str]]
    train: dict = field(default_factory=dict)
    methods: list[str] = field(default_factory=lambda: ["finetune", "ours"])
    replay_images: int = 20
    distill: dict = field(default_factory=dict)
    joint_epochs: int | None = None
    base_epochs: int | None = None
    arch: str = "yolov5nu.yaml"
    init: Path | None = None         # None: cldet's default starting weights
    no_init: bool = False            # random starting weights


def load_protocol(path: Path, data_root: Path) -> Protocol:
    raw = yaml.safe_load(Path(path).read_text())
    ds = str(raw["dataset"])
    ds_path = Path(ds) if ds.endswith((".yaml", ".yml")) else data_root / ds / "data.yaml"
    if not ds_path.is_absolute():
        ds_path = (Path(path).parent / ds_path) if ds.endswith((".yaml", ".yml")) else ds_path
    if not ds_path.is_file():
        raise DataError(f"protocol {path}: dataset {ds_path} not found (set --data-root).")
    steps = [list(s) for s in raw["steps"]]
    if len(steps) < 2:
        raise DataError(f"protocol {path}: needs at least two steps (base + one increment).")
    for m in raw.get("methods", []):
        if m not in METHODS and m not in ALIASES:
            raise DataError(f"protocol {path}: unknown method {m!r}; known: ours, {', '.join(METHODS)}")
    return Protocol(
        name=str(raw.get("name", Path(path).stem)), dataset=ds_path.resolve(),
        dataset_name=ds_path.parent.name if not ds.endswith((".yaml", ".yml")) else Path(ds).stem,
        steps=steps, train=dict(raw.get("train", {})), methods=list(raw.get("methods", ["finetune", "ours"])),
        replay_images=int(raw.get("replay_images", 20)), distill=dict(raw.get("distill", {})),
        joint_epochs=int(raw["joint_epochs"]) if raw.get("joint_epochs") else None,
        base_epochs=int(raw["base_epochs"]) if raw.get("base_epochs") else None,
        arch=str(raw.get("arch", "yolov5nu.yaml")), **_init(raw.get("init"), Path(path)),
    )


def _init(value, protocol: Path) -> dict:
    """The protocol's `init`: absent (cldet's default), 'none' (random weights) or a file, relative to the YAML."""
    if value is None:
        return {}
    if str(value).lower() == "none":
        return {"no_init": True}
    f = Path(value) if Path(value).is_absolute() else protocol.parent / value
    if not f.is_file():
        raise DataError(f"protocol {protocol}: init weights {f} not found ('none' starts from random weights).")
    return {"init": f.resolve()}


def reuse(run: Path, make) -> Path:
    """Produce the run directory `run` with `make(resume)` unless it is finished (has its lineage.json). A folder
    left by an interrupted step that had trained at least one epoch (pending.json and a weights-only state) is
    continued with `make(True)` (cldet's --resume); any other leftover is removed and the step starts again."""
    from .detector.trainer import STATE

    if not (run / LINEAGE).exists():
        if (run / PENDING).exists() and (run / "train" / STATE).exists():
            make(True)
            return run
        if run.exists():
            import shutil

            shutil.rmtree(run)
        run.parent.mkdir(parents=True, exist_ok=True)
        make(False)
    return run


def check_reused(run: Path, cfg: TrainConfig) -> None:
    """A finished run found in the work folder is reused only if it trained with these settings (those that may
    differ on --resume aside): a protocol whose epochs changed must not pick up the old runs silently."""
    done = read_lineage(run, verify=False).last.hyper.get("train", {})
    diff = [f"{k}: {done.get(k)!r} there, {v!r} now" for k, v in cfg.as_dict().items()
            if k not in RESUME_FREE and k in done and done[k] != v]
    if diff:
        raise RunError(f"{run} is a finished run with other settings ({'; '.join(diff)}); remove it, or pass another "
                       "--work folder, to train it again with these.")


def _metrics(run: Path) -> tuple[dict, float]:
    """Final metrics and training seconds (the per-epoch evaluation of the learning curve excluded)."""
    lin = read_lineage(run)
    return lin.last.metrics, lin.last.seconds - sum(r["eval_seconds"] for r in _curve(run))


def _curve(run: Path) -> list[dict]:
    path = run / "curves.json"
    return json.loads(path.read_text()) if path.exists() else []


def joint_metrics(joint: Path, p: Protocol) -> dict:
    """The joint model scored with the protocol's groups (step k, old = all but the last step, new = last)."""
    cache = joint / f"protocol-{p.name}-eval.json"
    if cache.exists():
        return json.loads(cache.read_text())
    from .detector.model import load_checkpoint
    from .detector.runs import evaluate_model

    groups = {f"step{k}": list(c) for k, c in enumerate(p.steps)}
    groups.update(old=[c for s in p.steps[:-1] for c in s], new=list(p.steps[-1]), all=[c for s in p.steps for c in s])
    model, meta = load_checkpoint(joint / "model.pt")
    m = evaluate_model(model, p.dataset, meta["names"], meta["imgsz"], groups)
    write_json_atomic(cache, m)
    return m


PARTS = ("base", "methods", "joint")


def run_protocol(p: Protocol, work: Path, seed: int = 0, methods: list[str] | None = None, train_over: dict | None = None,
                 joint: bool = True, curves: bool = True, parts: tuple[str, ...] = PARTS) -> dict:
    """Run base, joint (unless joint=False) and every method of a protocol for one seed; finished steps are reused.
    `parts` runs a subset of base, methods and joint, so that two processes can share a seed (say, one the base and
    then the joint, the other the methods once the base is done); without "base" the base must be finished."""
    from .detector.runs import learn, train

    tcfg = TrainConfig(**{**p.train, **(train_over or {}), "seed": seed})
    root = work / f"seed{seed}"
    root.mkdir(parents=True, exist_ok=True)
    res: dict = {"seed": seed, "train": tcfg.as_dict(), "methods": {}}

    def once(run: Path, fn, cfg: TrainConfig) -> tuple[dict, float]:
        reuse(run, fn)
        check_reused(run, cfg)
        return _metrics(run)

    def base_job(out: Path, classes: list[str]) -> TrainJob:
        return TrainJob(data=p.dataset, out=out, classes=",".join(classes), eval_data=p.dataset, curves=curves,
                        arch=p.arch, init=p.init, no_init=p.no_init)

    base = root / "base"
    # an explicit epochs override (--epochs, --quick) applies to every run of the protocol
    forced = (train_over or {}).get("epochs")
    bcfg = TrainConfig(**{**tcfg.as_dict(), "epochs": forced or p.base_epochs or tcfg.epochs})
    if "base" in parts or (base / LINEAGE).exists():
        m, s = once(base, lambda r: train(replace(base_job(base, p.steps[0]), resume=r), bcfg), bcfg)
        res["base"] = {"metrics": m, "seconds": s, "epochs": bcfg.epochs, "curve": _curve(base)}
    elif "methods" in parts:
        raise RunError(f"{base} is not finished; run the protocol's base part first (--parts base).")
    for method in (methods or p.methods) if "methods" in parts else []:
        real = ALIASES.get(method, method)
        dcfg = DistillConfig(method=real, replay_images=p.replay_images if real == "replay" else 0, **p.distill)
        prev, steps = base, []
        for k, classes in enumerate(p.steps[1:], 1):
            run = root / method / f"step{k}"
            job = LearnJob(from_run=prev, data=p.dataset, new_classes=",".join(classes), out=run, old_labels=False,
                           eval_data=p.dataset, curves=curves)
            m, s = once(run, lambda r: learn(replace(job, resume=r), dcfg, tcfg), tcfg)
            steps.append({"metrics": m, "seconds": s, "curve": _curve(run)})
            prev = run
        res["methods"][method] = {"method": real, "steps": steps, "exemplar_free": real != "replay"}
        write_json_atomic(root / "partial.json", res)
    # the joint upper bound last: it is the longest run, and the methods' results need only the base
    all_classes = [c for step in p.steps for c in step]
    jcfg = TrainConfig(**{**tcfg.as_dict(), "epochs": forced or p.joint_epochs or tcfg.epochs * len(p.steps)})
    if joint and "joint" in parts:
        jrun = root / "joint"
        _, s = once(jrun, lambda r: train(replace(base_job(jrun, all_classes), resume=r), jcfg), jcfg)
        res["joint"] = {"metrics": joint_metrics(jrun, p), "seconds": s, "epochs": jcfg.epochs, "curve": _curve(jrun)}
        write_json_atomic(root / "partial.json", res)
    return res


def _final(metrics: dict) -> dict:
    return {g: {"map50_95": metrics[g]["map50_95"], "map50": metrics[g]["map50"]} for g in ("old", "new", "all") if g in metrics}


def _mean_std(metrics: list[dict]) -> tuple[dict, dict]:
    """Group -> {metric: value} dicts of several seeds: their mean and their std, in the same shape."""
    first = metrics[0]
    mean = {g: {k: float(np.mean([m[g][k] for m in metrics])) for k in v} for g, v in first.items()}
    std = {g: {k: float(np.std([m[g][k] for m in metrics])) for k in v} for g, v in first.items()}
    return mean, std


def summarise(p: Protocol, runs: list[dict]) -> dict:
    """Issue-format JSON: final old/new/all, ratio to joint, forgetting, seconds per step; mean (and std) over seeds."""
    out = {"dataset": p.dataset_name, "protocol": p.name, "steps": len(p.steps), "seeds": [r["seed"] for r in runs],
           "classes": p.steps, "train": runs[0]["train"], "exemplar_free": {}, "methods": {}}
    def agg(vals):  # mean over seeds, std alongside
        return float(np.mean(vals)), float(np.std(vals))
    has_joint = "joint" in runs[0]
    names = (["joint"] if has_joint else []) + list(runs[0]["methods"].keys())
    for name in names:
        per_seed = []
        for r in runs:
            if name == "joint":
                final, step_metrics, secs = r["joint"]["metrics"], [r["joint"]["metrics"]], [r["joint"]["seconds"]]
                curves = [r["joint"].get("curve", [])]
            else:
                st = r["methods"][name]["steps"]
                final, step_metrics, secs = st[-1]["metrics"], [s["metrics"] for s in st], [s["seconds"] for s in st]
                curves = [s.get("curve", []) for s in st]
            joint_all = r["joint"]["metrics"]["all"]["map50_95"] if has_joint else None
            forgetting = {}
            if name != "joint":
                learned = {"step0": r["base"]["metrics"]["step0"]["map50_95"]}
                for k, sm in enumerate(step_metrics, 1):
                    learned.setdefault(f"step{k}", sm.get(f"step{k}", {}).get("map50_95"))
                for g, v in learned.items():
                    if v is not None and g in final:
                        forgetting[g] = v - final[g]["map50_95"]
                before = step_metrics[-2] if len(step_metrics) > 1 else r["base"]["metrics"]
                before_old = before["all"]["map50_95"] if len(step_metrics) > 1 else before["step0"]["map50_95"]
                forgetting["old"] = before_old - final["old"]["map50_95"]
            per_seed.append({"final": _final(final), "ratio_to_joint": final["all"]["map50_95"] / joint_all if joint_all else None,
                             "forgetting": forgetting, "seconds_per_step": secs, "curves": curves,
                             "per_step": [_final(sm) | {k: v for k, v in sm.items() if k.startswith("step")} for sm in step_metrics]})
        first = per_seed[0]
        entry = dict(first)
        if len(per_seed) > 1:
            entry["final"], entry["final_std"] = _mean_std([s["final"] for s in per_seed])
            entry["ratio_to_joint"], entry["ratio_to_joint_std"] = agg([s["ratio_to_joint"] for s in per_seed])
            entry["forgetting"] = {g: agg([s["forgetting"][g] for s in per_seed])[0] for g in first["forgetting"]}
            entry["seconds_per_step"] = [agg(t)[0] for t in zip(*(s["seconds_per_step"] for s in per_seed))]
            entry["per_seed"] = per_seed
        out["methods"][name] = entry
        out["exemplar_free"][name] = name != "replay" if name != "joint" else False
    base_mean, base_std = _mean_std([r["base"]["metrics"] for r in runs])
    out["base"] = {"metrics": base_mean, **({"metrics_std": base_std} if len(runs) > 1 else {}),
                   "seconds": runs[0]["base"]["seconds"],
                   "epochs": runs[0]["base"].get("epochs"), "curve": runs[0]["base"].get("curve", []),
                   "per_seed": [{"seed": r["seed"], "metrics": r["base"]["metrics"], "curve": r["base"].get("curve", [])}
                                for r in runs]}
    if has_joint:
        out["joint_epochs"] = runs[0]["joint"].get("epochs")
    ft, ours = out["methods"].get("finetune"), out["methods"].get("ours")
    if ft and ours:
        t_ft, t_ours = sum(ft["seconds_per_step"]), sum(ours["seconds_per_step"])
        t_joint = out["methods"]["joint"]["seconds_per_step"][0] if has_joint else None
        out["cost"] = {"ours_vs_finetune_time": t_ours / t_ft if t_ft else None,
                       "ours_increment_vs_joint_retrain": (t_ours / len(ours["seconds_per_step"])) / t_joint if t_joint else None}
    return out
