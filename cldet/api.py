"""The Python API: one function per `cldet` command, with the same keywords and defaults as its flags.

    from cldet import api

    api.train(data="base.yaml", out="runs/base", classes="white-king,white-queen", epochs=12)
    api.learn(from_run="runs/base", data="new.yaml", new_classes="black-king", out="runs/step1")
    manifest = api.export(run="runs/step1", int8="ptq")
    report = api.check(artifact="runs/step1/export/model.int8.onnx",
                       manifest="runs/step1/export/manifest.json", data="val.yaml")

Every keyword is declared once, as a dataclass field with its help text (cldet.detector.config,
cldet.detector.jobs, cldet.export.options, cldet.deploy.options, cldet.demo); `cldet COMMAND --help` and
`help(cldet.api.COMMAND)` show the same text, and the CLI is generated from `COMMANDS`. The functions return
result objects and print nothing; errors are CldetError subclasses whose `exit_code` the CLI uses.
Nothing heavy is imported until a function runs, so the board (no torch) imports this module too.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from .core.errors import MissingRuntimeError
from .core.options import api_doc, api_signature, bind
from .demo import DemoOptions
from .deploy.options import BenchOptions, CheckOptions, PredictOptions
from .detector.config import DistillConfig, TrainConfig
from .detector.jobs import EvalJob, ImportJob, LearnJob, TrainJob
from .export.options import ExportJob, ExportOptions

if TYPE_CHECKING:
    from .deploy.check import CheckReport
    from .deploy.predict import PredictResult
    from .detector.lineage import Lineage

__all__ = ["train", "learn", "evaluate", "demo", "export", "check", "bench", "predict", "import_weights", "COMMANDS", "Command"]


@dataclass(frozen=True)
class Command:
    """A command of the API and the CLI: its function and the dataclasses that declare its options."""

    name: str
    fn: Callable[..., Any]
    options: tuple[type, ...]


COMMANDS: dict[str, Command] = {}


def _command(name: str, *options: type) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Turn `impl(*option_instances)` into the public keyword function and register it as command `name`."""

    def wrap(impl: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(impl)
        def fn(*args: Any, **kwargs: Any) -> Any:
            return impl(*bind(options, args, kwargs))

        del fn.__wrapped__  # inspect.signature must report the generated keywords, not impl's parameters
        fn.__signature__ = api_signature(options)  # type: ignore[attr-defined]
        fn.__doc__ = api_doc(impl.__doc__ or name, options)
        COMMANDS[name] = Command(name, fn, options)
        return fn

    return wrap


def _need(*modules: str) -> None:
    """MissingRuntimeError naming the extra to install when a training-stack module is absent (e.g. on the board)."""
    import importlib.util

    def absent(m: str) -> bool:
        try:
            return importlib.util.find_spec(m) is None
        except (ImportError, ValueError):  # an import hook that refuses it, or a module set to None
            return True

    missing = [m for m in modules if absent(m)]
    if missing:
        raise MissingRuntimeError(
            f"this command needs the 'train' extra ({', '.join(missing)} missing): pip install 'cldet[train]' "
            "(or run `make install` in a checkout)."
        )


@_command("train", TrainJob, TrainConfig)
def train(job: TrainJob, cfg: TrainConfig) -> Lineage:
    """Train the base model on the first classes (increment 0); returns the run's lineage."""
    _need("torch", "ultralytics")
    from .detector.runs import train as run

    return run(job, cfg)


@_command("learn", LearnJob, DistillConfig, TrainConfig)
def learn(job: LearnJob, dcfg: DistillConfig, tcfg: TrainConfig) -> Lineage:
    """Add new classes to a trained model without the old data (pseudo-label + feature distillation); returns the
    new run's lineage."""
    _need("torch", "ultralytics")
    from .detector.runs import learn as run

    return run(job, dcfg, tcfg)


@_command("eval", EvalJob)
def evaluate(job: EvalJob) -> dict:
    """mAP50-95 / mAP50 per class group and increment (pycocotools), and forgetting over the lineage."""
    _need("torch", "ultralytics")
    from .detector.runs import evaluate_run

    return evaluate_run(job)


@_command("demo", DemoOptions)
def demo(opts: DemoOptions) -> dict:
    """The main job on the bundled chess subset: base on white pieces, learn black pieces; finetune vs ours.
    Returns {"summary": results JSON, "files": what was written}."""
    _need("torch", "ultralytics")
    from pathlib import Path

    from .core.errors import RunError
    from .demo import run_demo

    if Path(opts.out).exists() and not Path(opts.out).is_dir():
        raise RunError(f"--out {opts.out} is a file; the demo writes its runs, table and pictures into a folder.")

    return run_demo(opts)


@_command("export", ExportJob, ExportOptions)
def export(job: ExportJob, opts: ExportOptions) -> dict:
    """Export a run to ONNX (FP32, optional FP16/NMS) and INT8 Q/DQ ONNX, score each on the host, write
    manifest.json; returns the manifest."""
    _need("torch", "ultralytics", "onnx")
    from .export.pipeline import export_run

    return export_run(job.run, opts)


@_command("check", CheckOptions)
def check(opts: CheckOptions) -> CheckReport:
    """Verify an artifact on this device: sha256, classes and input size against the manifest, then mAP per
    increment's class group vs the host references. `report.passed` is False when a group drifts past the
    tolerance (the CLI then exits with code 1)."""
    from .deploy.check import check as run

    return run(opts)


@_command("bench", BenchOptions)
def bench(opts: BenchOptions) -> dict:
    """Latency of an artifact on this device: p50/p90/p99/mean per batch size, throughput, inference-only and
    end-to-end (letterbox + infer + NMS), peak memory, device state (Jetson power mode, clocks, L4T, TensorRT)."""
    from .deploy.bench import bench as run

    return run(opts)


@_command("predict", PredictOptions)
def predict(opts: PredictOptions) -> PredictResult:
    """Detect objects on an image, a folder or a video with a run's model (PyTorch) or an exported ONNX artifact
    (ONNX Runtime, no torch: works on the board); writes the drawn images/videos, YOLO-txt labels and
    predictions.json into --out, and returns every image's detections. Nothing is written when an input is bad."""
    from .deploy.predict import Model, check_options, list_sources
    from .deploy.predict import predict as run

    check_options(opts)
    if opts.run is None:
        return run(opts)
    list_sources(opts.source)  # a bad source is named before the model loads
    _need("torch", "ultralytics")
    from .detector.lineage import CHECKPOINT, read_lineage
    from .detector.model import load_checkpoint, torch_predict

    lin = read_lineage(opts.run)
    net, _ = load_checkpoint(opts.run / CHECKPOINT)
    device = f"cuda:{opts.device}" if opts.device.isdigit() else opts.device
    return run(opts, Model(fn=torch_predict(net, device), names=lin.classes, imgsz=lin.imgsz, label=str(opts.run)))


@_command("import", ImportJob)
def import_weights(job: ImportJob) -> Lineage:
    """Turn an Ultralytics detection checkpoint (YOLOv5u, YOLOv8, YOLO11) into increment 0 of a cldet run: class
    names from the checkpoint, cldet's weights-only model.pt, lineage.json with the source file's sha256. Needs
    --trust: an Ultralytics .pt is a pickle, which can run code when loaded. Then `learn --from` the run."""
    _need("torch", "ultralytics")
    from .detector.importer import import_checkpoint

    return import_checkpoint(job)
