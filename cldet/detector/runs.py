"""The detector stage behind cldet.api.train / learn / evaluate (and `cldet train`, `learn`, `eval`).

A run directory is created exclusively, filled, and only then given its `lineage.json`: a run without a
lineage is unfinished and cannot be learned from. `learn` reads the parent run and never writes into it.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ..core.data import load_dataset, resolve_classes
from ..core.assets import BACKBONE
from ..core.errors import RunError
from .config import DistillConfig, TrainConfig
from .jobs import EvalJob, LearnJob, TrainJob
from ..core.files import sha256_file, write_json_atomic
from .lineage import CHECKPOINT, Increment, Lineage, read_lineage

__all__ = ["train", "learn", "evaluate_run", "DEFAULT_INIT"]

log = logging.getLogger("cldet")
PENDING = "pending.json"
DEFAULT_INIT = BACKBONE


def _prepare_out(out: Path, resume: bool) -> bool:
    """Create `out` exclusively; with resume, accept an unfinished run. Returns True when resuming."""
    if out.exists():
        if not resume:
            raise RunError(
                f"{out} already exists; choose a new --out (nothing is overwritten), "
                "or pass --resume to continue an interrupted run there."
            )
        if (out / "lineage.json").exists():
            raise RunError(f"{out} is a finished run; nothing to resume.")
        if not (out / PENDING).exists():
            raise RunError(f"{out} is not an interrupted cldet run (no {PENDING}); refusing to write into it.")
        return True
    if resume:
        raise RunError(f"--resume given but {out} does not exist.")
    out.mkdir(parents=True)
    return False


CURVES = "curves.json"


def _curve_callback(out: Path, eval_yaml: Path, names: list[str], imgsz: int, groups: dict):
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
        m = evaluate_model(model, eval_yaml, names, imgsz, groups, progress=False, device=device)
        rows = json.loads(path.read_text()) if path.exists() else []
        rows = [r for r in rows if r["epoch"] < trainer.epoch + 1]
        rows.append({"epoch": trainer.epoch + 1, "metrics": m, "eval_seconds": round(time.time() - t0, 2)})
        write_json_atomic(path, rows)

    return on_fit_epoch_end


def _run_trainer(out: Path, init_pt: Path, staged_yaml: Path, tcfg: TrainConfig, resume: bool,
                 curve=None, verbose: bool = False) -> Path:
    from .trainer import CLTrainer

    last = out / "train" / "weights" / "last.pt"
    if resume and last.exists():
        overrides = {"resume": str(last)}
    else:
        if resume:
            shutil.rmtree(out / "train" / "weights", ignore_errors=True)
        overrides = dict(
            model=str(init_pt), data=str(staged_yaml), epochs=tcfg.epochs, imgsz=tcfg.imgsz, batch=tcfg.batch,
            lr0=tcfg.lr0, optimizer=tcfg.optimizer, seed=tcfg.seed, deterministic=True, workers=tcfg.workers,
            device=tcfg.device, freeze=tcfg.freeze or None, mosaic=tcfg.mosaic, close_mosaic=tcfg.close_mosaic,
            patience=tcfg.patience, fraction=tcfg.fraction, project=str(out.resolve()), name="train", exist_ok=True,
            plots=False, val=False, amp=False, verbose=False, save_period=-1,
        )
    from .console import training_console

    with training_console(out, verbose=verbose, label=f"{out.name}") as console:
        trainer = CLTrainer(overrides=overrides)  # inside: its constructor logs already
        console.attach(trainer)
        if curve is not None:
            trainer.add_callback("on_fit_epoch_end", curve)
        trainer.train()
    if not last.exists():
        raise RunError(f"training finished without {last}; see {console.path}.")
    return last


def _finish(out: Path, last: Path, names: list[str], imgsz: int, inc: Increment, parent: Lineage | None,
            arch: str, eval_yaml: Path | None, started: float) -> Lineage:
    """Trainer checkpoint -> weights-only model.pt, evaluation, calibration reservoir, lineage (last)."""
    from ultralytics.nn.tasks import load_checkpoint as ul_load

    from .model import build_model, save_checkpoint

    trained, _ = ul_load(str(last))  # our own scratch file, written by this run's trainer
    model = build_model(trained.yaml, names)  # the architecture the trainer trained
    model.load_state_dict(trained.float().state_dict(), strict=True)
    save_checkpoint(out / CHECKPOINT, model, names, imgsz, extra={"increment": inc.index})
    lineage = Lineage(arch=arch, imgsz=imgsz, classes=list(names), increments=[*(parent.increments if parent else []), inc])
    if eval_yaml is not None:
        inc.metrics = evaluate_model(model, eval_yaml, names, imgsz, _groups(lineage))
    _update_reservoir(out, inc, names)
    inc.seconds = round(time.time() - started, 1)
    inc.finished = datetime.now(timezone.utc).isoformat(timespec="seconds")
    inc.artifacts = {CHECKPOINT: sha256_file(out / CHECKPOINT)}
    lineage.save(out)
    (out / PENDING).unlink(missing_ok=True)
    return lineage


def _groups(lin: Lineage) -> dict[str, list[str]]:
    g = lin.groups()
    g.update(lin.old_new())
    return g


def _update_reservoir(out: Path, inc: Increment, names: list[str]) -> None:
    """Keep a small, class-balanced calibration reservoir beside the run (cldet.calib)."""
    from ..calib.reservoir import update_reservoir

    parent = Path(inc.parent["run"]) if inc.parent else None
    idx = update_reservoir(out, parent, Path(inc.data["yaml"]), names, increment=inc.index)
    inc.data["calib"] = {"images": len(idx["images"]), "bytes": idx["bytes"], "classes_missing": idx["missing"]}


def evaluate_model(model, data_yaml: Path, names: list[str], imgsz: int, groups: dict, split: str = "val",
                   progress: bool = True, device="cpu") -> dict:
    from ..core.evaluate import evaluate
    from .model import torch_predict

    data = load_dataset(data_yaml)
    return evaluate(torch_predict(model, device), data, split, names, imgsz, groups=groups, progress=progress).scores()


def _seed(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def train(job: TrainJob, tcfg: TrainConfig) -> Lineage:
    """Base model on `job.classes` of the dataset (default: all), from COCO backbone+neck weights unless no_init."""
    from .model import build_model, load_backbone
    from .staging import stage_dataset
    from .trainer import save_trainer_init

    data_yaml, classes, arch, resume = Path(job.data), job.classes, job.arch, job.resume
    init = None if job.no_init else (job.init or DEFAULT_INIT)
    data = load_dataset(data_yaml)
    ids = resolve_classes(classes, data.names) if classes else list(range(data.nc))
    names = [data.names[i] for i in ids]
    data.images("train"), data.images("val")  # fail early on missing folders
    out = Path(job.out)
    resuming = _prepare_out(out, resume)
    started = time.time()
    _seed(tcfg.seed)
    inc = Increment(
        index=0, kind="train", classes_added=names, method="base", hyper={"train": tcfg.as_dict(), "init": str(init)},
        data={"yaml": str(Path(data_yaml).resolve()), "train_fingerprint": data.fingerprint("train"),
              "val_fingerprint": data.fingerprint("val")},
    )
    init_pt = out / "train" / "init.pt"
    if not resuming:
        write_json_atomic(out / PENDING, {"command": "train", "increment": vars(inc)})
        staged = stage_dataset(data, out / "data", names, names)
        model = build_model(arch, names)
        if init:
            load_backbone(model, init)
        save_trainer_init(init_pt, model, None)
        inc.data["staged"] = staged.summary()
    ev = Path(job.eval_data or data_yaml)
    curve = _curve_callback(out, ev, names, tcfg.imgsz, {"step0": names, "all": names}) if job.curves else None
    last = _run_trainer(out, init_pt, out / "data" / "data.yaml", tcfg, resuming, curve, job.verbose)
    return _finish(out, last, names, tcfg.imgsz, inc, None, arch, ev, started)


def learn(job: LearnJob, dcfg: DistillConfig, tcfg: TrainConfig) -> Lineage:
    """Add `job.new_classes` to the model of `job.from_run`, training on `job.data` only (no old data).

    With `old_labels`, labels the new data happens to carry for already-known classes are used too;
    benchmarks switch this off so that the new data is labeled for the new classes only.
    """
    from .model import load_checkpoint, widen_head
    from .staging import stage_dataset
    from .trainer import save_trainer_init

    terms = dcfg.terms()
    from_run, out, data_yaml, resume, old_labels = Path(job.from_run), Path(job.out), Path(job.data), job.resume, \
        job.old_labels
    parent = read_lineage(from_run)  # verifies the checkpoint's sha256
    if out.resolve() == from_run.resolve() or from_run.resolve() in out.resolve().parents:
        raise RunError(f"--out {out} is inside the previous run {from_run}; learn never writes into it.")
    data = load_dataset(data_yaml)
    ids = resolve_classes(job.new_classes, data.names, what="new class")
    new = [data.names[i] for i in ids]
    known = [n for n in new if n in parent.classes]
    if known:
        raise RunError(f"classes {known} are already known to {from_run} (its classes: {', '.join(parent.classes)}).")
    data.images("train"), data.images("val")
    if tcfg.imgsz != parent.imgsz:
        log.warning("imgsz %d differs from the previous run's %d", tcfg.imgsz, parent.imgsz)
    resuming = _prepare_out(out, resume)
    started = time.time()
    _seed(tcfg.seed)
    names = parent.classes + new
    # new classes + (optionally) old classes the new data happens to label; everything else is ignored
    use = [n for n in data.names if n in new or (old_labels and n in parent.classes)]
    teacher_ckpt = (from_run / CHECKPOINT).resolve()
    inc = Increment(
        index=len(parent.increments), kind="learn", classes_added=new, method=dcfg.method,
        hyper={"train": tcfg.as_dict(), "distill": dcfg.as_dict()},
        data={"yaml": str(Path(data_yaml).resolve()), "train_fingerprint": data.fingerprint("train"),
              "val_fingerprint": data.fingerprint("val"), "labels_used": use},
        parent={"run": str(from_run.resolve()), "model_sha256": parent.last.artifacts[CHECKPOINT]},
    )
    init_pt = out / "train" / "init.pt"
    if not resuming:
        write_json_atomic(out / PENDING, {"command": "learn", "increment": vars(inc)})
        extra = _replay_buffer(from_run, out, dcfg.replay_images, tcfg.seed) if dcfg.method == "replay" else None
        staged = stage_dataset(data, out / "data", names, use, extra_train=extra)
        inc.data["staged"] = staged.summary()
        if extra:
            inc.data["replay_images"] = len(extra)
        old_model, _ = load_checkpoint(teacher_ckpt)
        model, report = widen_head(old_model, parent.classes, new)
        inc.hyper["head"] = {"copied": report["copied"], "widened": report["widened"]}
        cl_config = {"teacher": str(teacher_ckpt), "nc_old": len(parent.classes), "terms": terms, **dcfg.as_dict()}
        save_trainer_init(init_pt, model, cl_config if any(terms.values()) else None)
    ev = Path(job.eval_data or data_yaml)
    groups = _groups(Lineage(arch=parent.arch, imgsz=tcfg.imgsz, classes=names, increments=[*parent.increments, inc]))
    curve = _curve_callback(out, ev, names, tcfg.imgsz, groups) if job.curves else None
    last = _run_trainer(out, init_pt, out / "data" / "data.yaml", tcfg, resuming, curve, job.verbose)
    return _finish(out, last, names, tcfg.imgsz, inc, parent, parent.arch, ev, started)


def _replay_buffer(from_run: Path, out: Path, n: int, seed: int) -> list:
    """Method 'replay': copy up to n images (with labels) of earlier increments into this run (stores old data)."""
    from ..core.data import read_labels

    src = from_run / "data" / "train"
    pool = sorted((src / "images").glob("*"))
    if n <= 0 or not pool:
        raise RunError(f"replay needs --replay-images > 0 and the previous run's staged data ({src}).")
    buf = out / "replay"
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
    from .model import load_checkpoint

    run, data_yaml, split, joint = Path(job.run), Path(job.data), job.split, job.joint
    lin = read_lineage(run)
    model, meta = load_checkpoint(Path(run) / CHECKPOINT)
    now = evaluate_model(model, Path(data_yaml), lin.classes, lin.imgsz, _groups(lin), split)
    forgetting = {}
    for inc in lin.increments:
        g = f"step{inc.index}"
        then = inc.metrics.get(g, {}).get("map50_95")
        if then is not None and now.get(g, {}).get("map50_95") is not None:
            forgetting[g] = then - now[g]["map50_95"]
    result = {"run": str(run), "data": str(data_yaml), "split": split, "classes": lin.classes,
              "groups": _groups(lin), "metrics": now, "forgetting": forgetting}
    if joint is not None:
        jl = read_lineage(joint)
        jm, _ = load_checkpoint(Path(joint) / CHECKPOINT)
        jnow = evaluate_model(jm, Path(data_yaml), jl.classes, jl.imgsz, _groups(lin), split)
        result["joint"] = jnow
        result["ratio_to_joint"] = {
            g: (now[g]["map50_95"] / jnow[g]["map50_95"]) if jnow.get(g, {}).get("map50_95") else None for g in now
        }
    return result
