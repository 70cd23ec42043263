"""CLI commands of the detector stage: train, learn, eval, demo.

Torch-free at import: each command imports the training stack when it runs, so the board's CLI
(deploy set only) still loads and `cldet check` works there.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Optional

import typer

from ..errors import MissingRuntimeError
from .config import DEFAULT_METHOD, METHODS, DistillConfig, TrainConfig

__all__ = ["COMMANDS", "format_table"]

_METHOD_HELP = f"one of: {', '.join(METHODS)}. Default {DEFAULT_METHOD} (the best measured, see README)."


def _setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")


def _need_train_stack() -> None:
    try:
        import torch  # noqa: F401
        import ultralytics  # noqa: F401
    except ImportError:
        raise MissingRuntimeError(
            "training needs the 'train' extra (torch, torchvision, ultralytics): pip install 'cldet[train]' "
            "(or run `make install` in a checkout)."
        ) from None


def format_table(metrics: dict, title: str = "") -> str:
    """Group -> mAP table for the terminal."""
    rows = [f"{title}" if title else "", f"{'group':<10} {'mAP50-95':>9} {'mAP50':>7}"]
    for g, m in metrics.items():
        f = lambda v: "   -" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"  # noqa: E731
        rows.append(f"{g:<10} {f(m.get('map50_95')):>9} {f(m.get('map50')):>7}")
    return "\n".join(r for r in rows if r)


# Training options shared by `train` and `learn` (one definition, same defaults as TrainConfig).
EPOCHS = typer.Option(12, help="training epochs")
IMGSZ = typer.Option(320, help="square input size (an increment keeps the previous run's)")
BATCH = typer.Option(16, help="batch size")
SEED = typer.Option(0, help="random seed")
DEVICE = typer.Option("cpu", help="'cpu', '0', or '0,1' for multi-GPU (Ultralytics DDP)")
WORKERS = typer.Option(2, help="data-loader workers")
FRACTION = typer.Option(1.0, help="fraction of training images to use")
FREEZE = typer.Option(0, help="freeze the first N layers")


def _tcfg(epochs, imgsz, batch, seed, device, workers, fraction, freeze) -> TrainConfig:
    return TrainConfig(epochs=epochs, imgsz=imgsz, batch=batch, seed=seed, device=device, workers=workers,
                       fraction=fraction, freeze=freeze)


def train(
    data: Path = typer.Option(..., "--data", help="dataset yaml (YOLO format) with train and val splits"),
    out: Path = typer.Option(..., "--out", help="new run directory (refused if it exists, unless --resume)"),
    classes: Optional[str] = typer.Option(None, "--classes", help="comma list of class names or ids to learn (default: all)"),
    init: Optional[Path] = typer.Option(None, "--init", help="tensors-only backbone+neck weights (default: the bundled COCO yolov5nu weights)"),
    no_init: bool = typer.Option(False, "--no-init", help="start from random weights"),
    arch: str = typer.Option("yolov5nu.yaml", "--arch", help="Ultralytics architecture yaml"),
    epochs: int = EPOCHS,
    imgsz: int = IMGSZ,
    batch: int = BATCH,
    seed: int = SEED,
    device: str = DEVICE,
    workers: int = WORKERS,
    fraction: float = FRACTION,
    freeze: int = FREEZE,
    eval_data: Optional[Path] = typer.Option(None, "--eval-data", help="dataset yaml to score the result on (default: --data)"),
    resume: bool = typer.Option(False, "--resume", help="continue an interrupted run in --out"),
) -> None:
    """Train the base model on the first classes (increment 0)."""
    _need_train_stack()
    _setup_logging()
    from .api import DEFAULT_INIT, train as _train

    lin = _train(data, out, classes=classes, init=None if no_init else (init or DEFAULT_INIT), arch=arch,
                 tcfg=_tcfg(epochs, imgsz, batch, seed, device, workers, fraction, freeze), eval_yaml=eval_data, resume=resume)
    typer.echo(format_table(lin.last.metrics, f"\n{out}: increment 0, {len(lin.classes)} classes, {lin.last.seconds:.0f} s"))


def learn(
    from_run: Path = typer.Option(..., "--from", help="previous run directory (its model becomes the frozen teacher)"),
    data: Path = typer.Option(..., "--data", help="dataset yaml of the NEW data (labeled for the new classes)"),
    new_classes: str = typer.Option(..., "--new-classes", help="comma list of class names (or ids) in --data to add"),
    out: Path = typer.Option(..., "--out", help="new run directory; the previous run is never written to"),
    method: str = typer.Option(DEFAULT_METHOD, "--method", help=_METHOD_HELP),
    pseudo_conf: float = typer.Option(0.5, help="teacher score above which an old-class box becomes a label"),
    feature_weight: float = typer.Option(1.0, help="weight of the neck-feature distillation term"),
    response_weight: float = typer.Option(1.0, help="weight of the old-class score distillation term"),
    feature_mode: str = typer.Option("mse", help="'mse' (relative L2) or 'channel' (channel-wise KL)"),
    replay_images: int = typer.Option(0, help="method 'replay': old images to store and mix in"),
    old_labels: bool = typer.Option(True, "--old-labels/--no-old-labels", help="use labels of already-known classes present in the new data"),
    epochs: int = EPOCHS,
    imgsz: int = IMGSZ,
    batch: int = BATCH,
    seed: int = SEED,
    device: str = DEVICE,
    workers: int = WORKERS,
    fraction: float = FRACTION,
    freeze: int = FREEZE,
    eval_data: Optional[Path] = typer.Option(None, "--eval-data", help="dataset yaml with ALL classes labeled, to score old and new classes (default: --data)"),
    resume: bool = typer.Option(False, "--resume", help="continue an interrupted run in --out"),
) -> None:
    """Add new classes to a trained model without the old data (pseudo-label + feature distillation)."""
    _need_train_stack()
    _setup_logging()
    from .api import learn as _learn

    if method not in METHODS:
        raise typer.BadParameter(f"unknown method {method!r}; {_METHOD_HELP}", param_hint="--method")
    dcfg = DistillConfig(method=method, pseudo_conf=pseudo_conf, feature_weight=feature_weight,
                         response_weight=response_weight, feature_mode=feature_mode, replay_images=replay_images)
    lin = _learn(from_run, data, new_classes, out, dcfg=dcfg, tcfg=_tcfg(epochs, imgsz, batch, seed, device, workers, fraction, freeze),
                 eval_yaml=eval_data, resume=resume, old_labels=old_labels)
    typer.echo(format_table(lin.last.metrics, f"\n{out}: increment {lin.last.index} ({method}), "
                                              f"+{len(lin.last.classes_added)} classes, {lin.last.seconds:.0f} s"))


def eval_(
    run: Path = typer.Option(..., "--run", help="run directory"),
    data: Path = typer.Option(..., "--data", help="dataset yaml with the classes to score labeled"),
    split: str = typer.Option("val", help="split to evaluate"),
    joint: Optional[Path] = typer.Option(None, "--joint", help="a joint model's run, for the ratio to joint"),
    out: Optional[Path] = typer.Option(None, "--out", help="JSON report path (default RUN/eval-<split>.json; never overwritten)"),
) -> None:
    """mAP50-95 / mAP50 per class group and increment (pycocotools), and forgetting over the lineage."""
    _need_train_stack()
    _setup_logging()
    from .api import evaluate_run
    from .lineage import write_json_atomic

    res = evaluate_run(run, data, split, joint)
    typer.echo(format_table(res["metrics"], f"\n{run} on {data} [{split}]"))
    if res["forgetting"]:
        typer.echo("forgetting (mAP50-95 points since learned): " + ", ".join(f"{g} {100 * v:+.1f}" for g, v in res["forgetting"].items()))
    if "ratio_to_joint" in res:
        typer.echo("ratio to joint: " + ", ".join(f"{g} {v:.2f}" for g, v in res["ratio_to_joint"].items() if v is not None))
    path = out or Path(run) / f"eval-{split}.json"
    k = 1
    while path.exists() and out is None:
        path, k = Path(run) / f"eval-{split}-{k}.json", k + 1
    write_json_atomic(path, json.loads(json.dumps(res, default=float)))
    typer.echo(f"wrote {path}")


def demo(
    out: Path = typer.Option(Path("demo-out"), "--out", help="folder for the demo's runs, table and plot"),
    epochs: int = typer.Option(0, help="epochs per step (0 = the demo's default)"),
) -> None:
    """The main job on the bundled chess subset: base on white pieces, learn black pieces; finetune vs ours."""
    _need_train_stack()
    _setup_logging()
    from .demo import run_demo

    run_demo(out, epochs=epochs or None)


COMMANDS = {"train": train, "learn": learn, "eval": eval_, "demo": demo}
