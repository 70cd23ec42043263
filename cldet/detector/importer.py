"""`cldet import`: an Ultralytics detection checkpoint becomes increment 0 of a cldet run.

An Ultralytics `.pt` is a pickle of the whole model object, and unpickling runs whatever code the file's author
put in it. So this is the one place where cldet unpickles a user's file, and only when the user says `--trust`;
without it nothing is opened. What comes out is cldet's own weights-only run (model.pt of tensors + the checked
architecture yaml + class names, lineage.json recording the source file's sha256), which every later command reads
with `torch.load(weights_only=True)`.

Everything is checked before the run folder is made: --trust, the output folder, that the file unpickles to a
detection model with a plain `Detect` head (classification, segmentation, pose, OBB and end-to-end heads are
refused, naming the file), its class names, its architecture (cldet.detector.arch), and that its weights load into
the model cldet builds from that architecture.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from ..core.errors import CldetError
from ..core.files import sha256_file
from .jobs import ImportJob
from .lineage import CHECKPOINT, Increment, Lineage
from .rundir import check_out, open_run

__all__ = ["import_checkpoint", "DEFAULT_IMGSZ"]

log = logging.getLogger("cldet")
DEFAULT_IMGSZ = 640
_TASKS = {"Classify": "a classification model", "Segment": "a segmentation model", "Segment26": "a segmentation model",
          "Pose": "a pose model", "Pose26": "a pose model", "OBB": "an oriented-box (OBB) model",
          "OBB26": "an oriented-box (OBB) model", "SemanticSegment": "a semantic segmentation model",
          "RTDETRDecoder": "an RT-DETR model", "WorldDetect": "a YOLO-World model", "YOLOEDetect": "a YOLOE model",
          "YOLOESegment": "a YOLOE segmentation model", "v10Detect": "a YOLOv10 (end-to-end) model",
          "Depth": "a depth model"}


@dataclass
class _Source:
    model: object  # the rebuilt cldet DetectionModel, weights loaded
    names: list[str]
    imgsz: int
    arch: str
    sha256: str
    info: dict


def _unpickle(path: Path) -> object:
    import torch

    from . import _offline  # noqa: F401  (before any ultralytics import)
    import ultralytics.nn.tasks  # noqa: F401  (the classes the pickle names)

    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - a pickle fails in many ways
        raise CldetError(f"{path}: cannot be loaded as an Ultralytics checkpoint ({type(e).__name__}: "
                         f"{str(e)[:200]}).") from None


def _detection_model(ckpt: object, path: Path):
    from torch import nn
    from ultralytics.nn.modules.head import Detect

    net = ckpt
    if isinstance(ckpt, dict):
        net = ckpt.get("ema") or ckpt.get("model")
    if not isinstance(net, nn.Module) or not hasattr(net, "model") or not hasattr(net, "yaml"):
        raise CldetError(f"{path}: holds no Ultralytics model (expected a checkpoint of `yolo train`, with 'model' or "
                         "'ema'); export the state as an Ultralytics checkpoint first.")
    head = net.model[-1]
    if type(head) is not Detect:
        kind = _TASKS.get(type(head).__name__, f"a model with a {type(head).__name__} head")
        raise CldetError(f"{path}: {kind}, not a detection model; cldet imports detection checkpoints (YOLOv5u, "
                         "YOLOv8, YOLO11 with a Detect head) only.")
    if getattr(head, "one2one_cv2", None) is not None:
        raise CldetError(f"{path}: its Detect head is end-to-end (one-to-one, NMS-free); cldet learns and exports "
                         "the one-to-many head of YOLOv5u/YOLOv8/YOLO11 models only.")
    return net, head


def _names(net, head, path: Path) -> list[str]:
    raw = getattr(net, "names", None)
    names = [raw[k] for k in sorted(raw)] if isinstance(raw, dict) else list(raw or [])
    if len(names) != head.nc or not all(isinstance(n, str) and n for n in names):
        raise CldetError(f"{path}: its class names {str(raw)[:200]} are not {head.nc} strings (one per class output).")
    if len(set(names)) != len(names):
        raise CldetError(f"{path}: duplicate class names {sorted({n for n in names if names.count(n) > 1})}.")
    return names


def _imgsz(ckpt: object, given: int | None, path: Path) -> int:
    if given is not None:
        if given % 32:
            raise CldetError(f"--imgsz {given}: must be a positive multiple of 32 (the detector's largest stride).")
        return given
    args = ckpt.get("train_args") if isinstance(ckpt, dict) else None
    size = args.get("imgsz") if isinstance(args, dict) else None
    if isinstance(size, (list, tuple)) and size:
        size = max(size)
    if isinstance(size, int) and not isinstance(size, bool) and size > 0 and size % 32 == 0:
        return size
    log.info("%s records no usable training size; the run uses %d px (set --imgsz)", path, DEFAULT_IMGSZ)
    return DEFAULT_IMGSZ


def read_source(job: ImportJob) -> _Source:
    """Unpickle (trusted) and check the checkpoint; rebuild it as cldet's model. Writes nothing."""
    from .arch import ArchError, check_arch
    from .model import build_model

    path = Path(job.weights)
    if not path.is_file():
        raise CldetError(f"WEIGHTS {path}: file does not exist.")
    if path.stat().st_size == 0:
        raise CldetError(f"WEIGHTS {path}: file is empty.")
    ckpt = _unpickle(path)
    net, head = _detection_model(ckpt, path)
    names = _names(net, head, path)
    yaml_cfg = {k: v for k, v in dict(net.yaml).items() if k != "yaml_file"}
    try:
        check_arch(yaml_cfg, f"{path}: architecture")
    except ArchError as e:
        raise CldetError(f"{e} cldet builds only Ultralytics' own layers.") from None
    imgsz = _imgsz(ckpt, job.imgsz, path)
    model = build_model(yaml_cfg, names)
    sd = {k: v.float() for k, v in net.state_dict().items()}
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        raise CldetError(f"{path}: its weights do not fit the architecture it declares ({str(e)[:300]}).") from None
    model.eval()
    arch = Path(str(net.yaml.get("yaml_file") or "imported.yaml")).name
    info = {"file": str(path.resolve()), "sha256": sha256_file(path), "arch": arch,
            "ultralytics_version": ckpt.get("version") if isinstance(ckpt, dict) else None,
            "epoch": ckpt.get("epoch") if isinstance(ckpt, dict) else None,
            "train_data": (ckpt.get("train_args") or {}).get("data") if isinstance(ckpt, dict) else None}
    info = {k: (v if isinstance(v, (str, int, float)) or v is None else str(v)) for k, v in info.items()}
    return _Source(model, names, imgsz, arch, info["sha256"], info)


def import_checkpoint(job: ImportJob) -> Lineage:
    """Checkpoint -> run folder `job.out` (model.pt, lineage.json); returns the lineage."""
    from .model import save_checkpoint

    if not job.trust:
        raise CldetError(f"WEIGHTS {job.weights}: an Ultralytics .pt is a Python pickle, and loading a pickle runs any "
                         "code its author put in it; nothing was loaded. Pass --trust if the file comes from a source "
                         "you trust (e.g. your own `yolo train`).")
    out = Path(job.out)
    check_out(out, resume=False)
    src = read_source(job)
    options = {"weights": src.info["file"], "sha256": src.sha256, "imgsz": src.imgsz}
    with open_run(out, "new", "import", options) as run:
        save_checkpoint(out / CHECKPOINT, src.model, src.names, src.imgsz, extra={"increment": 0})
        inc = Increment(index=0, kind="import", classes_added=list(src.names), method="import",
                        hyper={"source": src.info}, data={}, seconds=run.seconds(),
                        finished=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                        artifacts={CHECKPOINT: sha256_file(out / CHECKPOINT)})
        lineage = Lineage(arch=src.arch, imgsz=src.imgsz, classes=list(src.names), increments=[inc])
        lineage.save(out)
        run.done()
    log.info("imported %s (%s, %d classes, %d px) into %s", job.weights, src.arch, len(src.names), src.imgsz, out)
    return lineage
