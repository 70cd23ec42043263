"""The detector stage behind cldet.api.train / learn / evaluate (and `cldet train`, `learn`, `eval`).

Everything is checked first (cldet.detector.plan); then the run folder is created exclusively and locked
(cldet.detector.rundir), prepared (staged data, the trainer's start checkpoint), trained (a weights-only state per
epoch), and finished: model.pt, evaluation, calibration reservoir, and `lineage.json` last. A run without a lineage
is unfinished: `--resume` completes it, and it cannot be learned from. `learn` reads the parent run and never
writes into it.
"""

from __future__ import annotations

import csv
import json
import logging
import random
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ..core.data import load_dataset
from ..core.errors import CldetError, RunError
from ..core.files import sha256_file, write_json_atomic
from .config import DistillConfig, TrainConfig
from .jobs import EvalJob, LearnJob, TrainJob
from .lineage import CHECKPOINT, Increment, Lineage, read_lineage
from .plan import DEFAULT_INIT, LearnPlan, TrainPlan, images_record, plan_learn, plan_train
from .rundir import PENDING, RunFolder, open_run

__all__ = ["train", "learn", "evaluate_run", "evaluate_model", "DEFAULT_INIT", "PENDING"]

log = logging.getLogger("cldet")
CURVES = "curves.json"
INIT = Path("train") / "init.pt"


def _read_curves(path: Path) -> list[dict]:
    """Earlier rows of curves.json (a resumed run keeps them); an unreadable file starts the curve afresh."""
    try:
        rows = json.loads(path.read_text()) if path.exists() else []
    except (json.JSONDecodeError, UnicodeDecodeError):
        return []
    ok = isinstance(rows, list) and all(isinstance(r, dict) and isinstance(r.get("epoch"), int) for r in rows)
    return rows if ok else []


def still_rising(rows: list[dict], group: str, window: int = 3, min_gain: float = 0.01) -> float | None:
    """How much a class group's validation mAP50-95 was still climbing when training ended: the mean of the last
    `window` epochs of curves.json minus the mean of the `window` before them, when that gain is above `min_gain`
    (one point of mAP50-95: about what consecutive epochs differ by on a few dozen validation images); None when
    the curve had levelled off, or is too short (fewer than 2 x window epochs) or lacks the group in some epoch."""
    vals = [r["metrics"][group]["map50_95"] for r in rows
            if isinstance(r.get("metrics"), dict) and isinstance(r["metrics"].get(group), dict)
            and isinstance(r["metrics"][group].get("map50_95"), (int, float))]
    if len(vals) != len(rows) or len(vals) < 2 * window:
        return None
    gain = sum(vals[-window:]) / window - sum(vals[-2 * window:-window]) / window
    return gain if gain > min_gain else None


def _warn_if_rising(out: Path, group: str, what: str) -> None:
    """Say so when the run ended while `group` was still learning: more --epochs may raise it."""
    rows = _read_curves(out / CURVES)
    gain = still_rising(rows, group)
    if gain is not None:
        log.warning("note: %s were still improving when training ended (validation mAP50-95 +%.1f points, mean of "
                    "the last 3 epochs over the 3 before; %s): more --epochs may raise them (on a small validation "
                    "set, check the curve first).", what, 100 * gain, out / CURVES)


def _curve_callback(out: Path, eval_yaml: Path, names: list[str], imgsz: int, groups: dict,
                    images: Path | None = None):
    """An `on_fit_epoch_end` callback: score the EMA model per class group after every epoch.

    The learning curves show whether a run has converged (a benchmark needs models that finished
    learning). Rows go to `curves.json` as they come, so a resumed run keeps its earlier epochs; the
    seconds spent evaluating are recorded so that training time can be reported without them.
    """
    path = out / CURVES

    def on_fit_epoch_end(trainer) -> None:
        from ultralytics.utils import RANK

        if RANK not in (-1, 0) or trainer.epoch >= trainer.epochs:  # final_eval calls again with epoch + 1
            return
        t0 = time.time()
        model = trainer.ema.ema if trainer.ema else trainer.model
        device = next(model.parameters()).device
        m = evaluate_model(model, eval_yaml, names, imgsz, groups, progress=False, device=device, images=images)
        rows = _read_curves(path)
        rows = [r for r in rows if r["epoch"] < trainer.epoch + 1]
        rows.append({"epoch": trainer.epoch + 1, "metrics": m, "eval_seconds": round(time.time() - t0, 2)})
        write_json_atomic(path, rows)

    return on_fit_epoch_end


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the platform tells it, else all)."""
    import os

    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def _trim_results(csv_path: Path, epochs_done: int) -> None:
    """Drop rows of results.csv past the epochs the training state holds (a kill between Ultralytics' metrics row
    and its checkpoint), so the resumed run writes each epoch once."""
    if not csv_path.exists():
        return
    with open(csv_path, newline="") as f:
        rows = list(csv.reader(f))
    if len(rows) > epochs_done + 1:
        with open(csv_path, "w", newline="") as f:
            csv.writer(f).writerows(rows[: epochs_done + 1])


def _train_to_end(run: RunFolder, tcfg: TrainConfig, curve, verbose: bool) -> dict:
    """Train from the start checkpoint, or continue from the last epoch's state; returns the final state."""
    from .trainer import STATE, read_train_state, state_finished

    out = run.out
    state_path = out / "train" / STATE
    state = read_train_state(state_path) if state_path.exists() else None
    if state is not None and state_finished(state, tcfg.epochs):
        return state
    if state is not None:
        _trim_results(out / "train" / "results.csv", state["epoch"] + 1)
        log.info("resuming %s after epoch %d of %d", out, state["epoch"] + 1, tcfg.epochs)
    _run_trainer(out, out / INIT, out / "data" / "data.yaml", tcfg, state_path if state is not None else None,
                 curve, verbose, on_epoch=lambda trainer: run.save())
    if not state_path.exists():
        raise RunError(f"training finished without {state_path}; see {out / 'train.log'}.")
    return read_train_state(state_path)


def _run_trainer(out: Path, init_pt: Path, staged_yaml: Path, tcfg: TrainConfig, resume: Path | None,
                 curve=None, verbose: bool = False, on_epoch=None) -> None:
    from .console import training_console
    from .trainer import CLTrainer

    overrides = dict(
        model=str(init_pt), data=str(staged_yaml), epochs=tcfg.epochs, imgsz=tcfg.imgsz, batch=tcfg.batch,
        lr0=tcfg.lr0, optimizer=tcfg.optimizer, seed=tcfg.seed, deterministic=True, workers=tcfg.workers,
        device=tcfg.device, freeze=tcfg.freeze or None, mosaic=tcfg.mosaic, close_mosaic=tcfg.close_mosaic,
        patience=tcfg.patience, fraction=tcfg.fraction, project=str(out.resolve()), name="train", exist_ok=True,
        plots=False, val=False, amp=False, verbose=False, save_period=-1, resume=str(resume) if resume else False,
    )
    with training_console(out, verbose=verbose, label=f"{out.name}") as console:
        trainer = CLTrainer(overrides=overrides)  # inside: its constructor logs already
        if trainer.device.type == "cpu":  # after Ultralytics' select_device set its own count
            import torch

            torch.set_num_threads(tcfg.threads or usable_cores())
        console.attach(trainer)
        if curve is not None:
            trainer.add_callback("on_fit_epoch_end", curve)
        if on_epoch is not None:
            trainer.add_callback("on_model_save", on_epoch)
        trainer.train()


def _finish(run: RunFolder, state: dict, names: list[str], imgsz: int, inc: Increment, parent: Lineage | None,
            arch: str, eval_yaml: Path | None, eval_images: Path | None = None) -> Lineage:
    """Training state -> weights-only model.pt, evaluation, calibration reservoir, lineage (last)."""
    from .model import build_model, save_checkpoint

    out = run.out
    if list(state.get("names") or []) != list(names):
        raise RunError(f"{out}: the training state's classes {state.get('names')} are not the run's {names}.")
    model = build_model(state["yaml"], names)  # the architecture the trainer trained (checked again)
    try:
        model.load_state_dict(state["ema"], strict=True)
    except RuntimeError as e:
        raise RunError(f"{out}: the training state does not fit its architecture ({e}).") from None
    save_checkpoint(out / CHECKPOINT, model, names, imgsz, extra={"increment": inc.index})
    lineage = Lineage(arch=arch, imgsz=imgsz, classes=list(names), increments=[*(parent.increments if parent else []), inc])
    if eval_yaml is not None:
        inc.metrics = evaluate_model(model, eval_yaml, names, imgsz, _groups(lineage), images=eval_images)
    _update_reservoir(out, inc, names)
    inc.seconds = run.seconds()
    inc.finished = datetime.now(timezone.utc).isoformat(timespec="seconds")
    inc.artifacts = {CHECKPOINT: sha256_file(out / CHECKPOINT)}
    lineage.save(out)
    run.done()
    if parent is None:
        _warn_if_rising(out, "all", "the classes")
    else:
        _warn_if_rising(out, "new", "the new classes")
    return lineage


def _groups(lin: Lineage) -> dict[str, list[str]]:
    g = lin.groups()
    g.update(lin.old_new())
    return g


def _update_reservoir(out: Path, inc: Increment, names: list[str]) -> None:
    """Keep a small, class-balanced calibration reservoir beside the run (cldet.calib)."""
    from ..calib.reservoir import update_reservoir

    parent = Path(inc.parent["run"]) if inc.parent else None
    idx = update_reservoir(out, parent, Path(inc.data["yaml"]), names, increment=inc.index,
                           images=inc.data.get("images"))
    inc.data["calib"] = {"images": len(idx["images"]), "bytes": idx["bytes"], "classes_missing": idx["missing"]}


def evaluate_model(model, data_yaml: Path, names: list[str], imgsz: int, groups: dict, split: str = "val",
                   progress: bool = True, device="cpu", full: bool = False, images: Path | None = None):
    """Group -> {"map50_95", "map50"}; with `full`, the whole cldet.core.evaluate.EvalResult (detections too).
    `images`: the --images folder of a COCO .json."""
    from ..core.evaluate import evaluate
    from .model import torch_predict

    data = load_dataset(data_yaml, images)
    res = evaluate(torch_predict(model, device), data, split, names, imgsz, groups=groups, progress=progress)
    return res if full else res.scores()


def _seed(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _fresh(out: Path, *names: str) -> None:
    """Remove what an earlier, interrupted session prepared, so it is prepared again from the inputs alone."""
    for name in names:
        p = out / name
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        elif p.exists() or p.is_symlink():
            p.unlink()


def train(job: TrainJob, tcfg: TrainConfig) -> Lineage:
    """Base model on `job.classes` of the dataset (default: all), from COCO backbone+neck weights unless no_init."""
    plan = plan_train(job, tcfg)
    with open_run(plan.out, plan.mode, "train", plan.options) as run:
        return _train(plan, run, job)


def _train(plan: TrainPlan, run: RunFolder, job: TrainJob) -> Lineage:
    from .model import build_model, load_backbone
    from .staging import stage_dataset
    from .trainer import write_trainer_start

    out, data, names, tcfg = plan.out, plan.data, plan.names, plan.tcfg
    _seed(tcfg.seed)
    inc = Increment(
        index=0, kind="train", classes_added=names, method="base",
        hyper={"train": tcfg.as_dict(), "init": str(plan.init)},
        data={"yaml": str(data.yaml_path), "train_fingerprint": data.fingerprint("train"),
              "val_fingerprint": data.fingerprint("val"), **images_record(data)},
    )
    _fresh(out, "data", str(INIT))
    staged = stage_dataset(data, out / "data", names, names)
    inc.data["staged"] = staged.summary()
    model = build_model(plan.arch_cfg, names)
    if plan.init:
        load_backbone(model, plan.init)
    write_trainer_start(out / INIT, model, names, tcfg.imgsz, None)
    curve = _curve_callback(out, plan.eval_yaml, names, tcfg.imgsz, {"step0": names, "all": names},
                            plan.eval_images) if job.curves else None
    state = _train_to_end(run, tcfg, curve, job.verbose)
    return _finish(run, state, names, tcfg.imgsz, inc, None, plan.arch, plan.eval_yaml, plan.eval_images)


def learn(job: LearnJob, dcfg: DistillConfig, tcfg: TrainConfig) -> Lineage:
    """Add `job.new_classes` to the model of `job.from_run`, training on `job.data` only (no old data).

    With `old_labels`, labels the new data happens to carry for already-known classes are used too;
    benchmarks switch this off so that the new data is labeled for the new classes only.
    """
    plan = plan_learn(job, dcfg, tcfg)
    with open_run(plan.out, plan.mode, "learn", plan.options) as run:
        return _learn(plan, run, job)


def _learn(plan: LearnPlan, run: RunFolder, job: LearnJob) -> Lineage:
    from .model import load_checkpoint, widen_head
    from .staging import stage_dataset
    from .trainer import write_trainer_start

    out, data, parent, from_run, tcfg, dcfg = plan.out, plan.data, plan.parent, plan.parent_dir, plan.tcfg, plan.dcfg
    terms = dcfg.terms()
    _seed(tcfg.seed)
    names = plan.names
    teacher_ckpt = (from_run / CHECKPOINT).resolve()
    inc = Increment(
        index=len(parent.increments), kind="learn", classes_added=plan.new, method=dcfg.method,
        hyper={"train": tcfg.as_dict(), "distill": dcfg.as_dict()},
        data={"yaml": str(data.yaml_path), "train_fingerprint": data.fingerprint("train"),
              "val_fingerprint": data.fingerprint("val"), "labels_used": plan.use, **images_record(data)},
        parent={"run": str(from_run.resolve()), "model_sha256": parent.last.artifacts[CHECKPOINT]},
    )
    _fresh(out, "data", "replay", str(INIT))
    extra = _replay_buffer(from_run, out, dcfg.replay_images, tcfg.seed) if dcfg.method == "replay" else None
    staged = stage_dataset(data, out / "data", names, plan.use, extra_train=extra)
    inc.data["staged"] = staged.summary()
    if extra:
        inc.data["replay_images"] = len(extra)
    old_model, _ = load_checkpoint(teacher_ckpt)
    model, report = widen_head(old_model, parent.classes, plan.new)
    inc.hyper["head"] = {"copied": report["copied"], "widened": report["widened"]}
    cl_config = {"teacher": str(teacher_ckpt), "nc_old": len(parent.classes), "terms": terms, **dcfg.as_dict()}
    write_trainer_start(out / INIT, model, names, tcfg.imgsz, cl_config if any(terms.values()) else None)
    groups = _groups(Lineage(arch=parent.arch, imgsz=tcfg.imgsz, classes=names, increments=[*parent.increments, inc]))
    curve = _curve_callback(out, plan.eval_yaml, names, tcfg.imgsz, groups, plan.eval_images) if job.curves else None
    state = _train_to_end(run, tcfg, curve, job.verbose)
    return _finish(run, state, names, tcfg.imgsz, inc, parent, parent.arch, plan.eval_yaml, plan.eval_images)


def _replay_buffer(from_run: Path, out: Path, n: int, seed: int) -> list:
    """Method 'replay': copy up to n images (with labels) of earlier increments into this run (stores old data)."""
    from ..core.data import read_labels

    src = from_run / "data" / "train"
    pool = sorted((src / "images").glob("*"))
    if n <= 0 or not pool:
        raise RunError(f"replay needs --replay-images > 0 and the previous run's staged data ({src}).")
    buf = out / "replay"
    shutil.rmtree(buf, ignore_errors=True)  # a resumed run samples the same images again
    (buf / "images").mkdir(parents=True)
    rng = random.Random(seed)
    pick = rng.sample(pool, min(n, len(pool)))
    extra = []
    for p in pick:
        dst = buf / "images" / p.name
        shutil.copy2(p.resolve(), dst)
        rows = read_labels(src / "labels" / f"{p.stem}.txt", 10_000)
        extra.append((dst, rows))
    return extra


def evaluate_run(job: EvalJob) -> dict:
    """mAP per class group of every increment; forgetting = drop since each group was learned."""
    from .checks import check_eval_data
    from .model import load_checkpoint

    run, data_yaml, split, joint = Path(job.run), Path(job.data), job.split, job.joint
    if job.detections is not None:
        det = Path(job.detections)
        if det.exists() or det.is_symlink():
            raise RunError(f"--detections {det} already exists; eval never overwrites it. Choose another path.")
        if det.is_dir() or not det.absolute().parent.is_dir():
            raise CldetError(f"--detections {det}: folder {det.absolute().parent} does not exist.")
    lin = read_lineage(run)
    model, meta = load_checkpoint(Path(run) / CHECKPOINT)
    jl = jm = None
    if joint is not None:
        jl = read_lineage(joint)
        jm, _ = load_checkpoint(Path(joint) / CHECKPOINT)
    check_eval_data(data_yaml, lin.classes + [c for c in (jl.classes if jl else []) if c not in lin.classes], split,
                    source=f"{run}" + (f" and {joint}" if joint else ""), images=job.images)
    full = evaluate_model(model, Path(data_yaml), lin.classes, lin.imgsz, _groups(lin), split, full=True,
                          images=job.images)
    now = full.scores()
    forgetting = {}
    for inc in lin.increments:
        g = f"step{inc.index}"
        then = inc.metrics.get(g, {}).get("map50_95")
        if then is not None and now.get(g, {}).get("map50_95") is not None:
            forgetting[g] = then - now[g]["map50_95"]
    result = {"run": str(run), "data": str(data_yaml), "split": split, "classes": lin.classes,
              "groups": _groups(lin), "metrics": now, "forgetting": forgetting}
    if job.images is not None:
        result["images"] = str(job.images)
    if job.detections is not None:
        write_json_atomic(job.detections, full.detections)
        result["detections"] = str(job.detections)
    if joint is not None:
        jnow = evaluate_model(jm, Path(data_yaml), jl.classes, jl.imgsz, _groups(lin), split, images=job.images)
        result["joint"] = jnow
        result["ratio_to_joint"] = {
            g: (now[g]["map50_95"] / jnow[g]["map50_95"]) if jnow.get(g, {}).get("map50_95") else None for g in now
        }
    return result
