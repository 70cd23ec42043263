"""Model construction, weights-only checkpoints, and class-head widening.

Checkpoints are plain data (tensors, lists, dicts, strings) and load with `torch.load(weights_only=True)`,
so opening one cannot run code. The network is rebuilt from the architecture yaml stored inside.
Ultralytics' own `.pt` files are pickles; cldet writes those only as scratch files for the trainer.
"""

from __future__ import annotations

import contextlib
import logging
import math
from pathlib import Path

import torch
from torch import nn

from ..core.errors import RunError
from ..core.files import atomic_path
from . import _offline  # noqa: F401  (before any ultralytics import)

__all__ = [
    "CKPT_FORMAT",
    "build_model",
    "save_checkpoint",
    "load_checkpoint",
    "widen_head",
    "load_backbone",
    "torch_predict",
    "detect_head",
    "apply_cls_width",
]

log = logging.getLogger("cldet")
CKPT_FORMAT = "cldet-ckpt/1"


@contextlib.contextmanager
def _quiet_ultralytics():
    """Ultralytics' per-layer chatter off while a model is built, its logger's level restored after (a teacher is
    built inside a running trainer, whose log must go on); the offline switch is set by `_offline` on import."""
    from ultralytics.utils import LOGGER

    level = LOGGER.level
    LOGGER.setLevel(logging.WARNING)
    try:
        yield
    finally:
        LOGGER.setLevel(level)


def detect_head(model: nn.Module) -> nn.Module:
    from ultralytics.nn.modules.head import Detect

    head = model.model[-1]
    if not isinstance(head, Detect):
        raise RunError(f"last layer is {type(head).__name__}; cldet needs an Ultralytics Detect head.")
    return head


def build_model(arch: str | dict, names: list[str], verbose: bool = False) -> nn.Module:
    """A fresh Ultralytics DetectionModel for `arch` (yaml name/path or dict) with one output per name.

    The yaml is checked (`arch.check_arch`) before Ultralytics' builder sees it: the builder evaluates some of its
    strings, so nothing but known layers, activations and literal arguments may reach it.
    """
    from ultralytics.nn.tasks import DetectionModel

    from .arch import resolve_arch

    cfg = resolve_arch(arch)
    with _quiet_ultralytics():
        model = DetectionModel(cfg, nc=len(names), verbose=verbose)
    model.names = dict(enumerate(names))
    return apply_cls_width(model)


def load_backbone(model: nn.Module, path: str | Path) -> list[str]:
    """Load a tensors-only backbone+neck state dict (e.g. the COCO yolov5nu weights); returns missing keys."""
    path = Path(path)
    if not path.is_file():
        raise RunError(f"initial weights {path} do not exist.")
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises several types for foreign pickles
        raise RunError(f"{path}: not a tensors-only state dict ({type(e).__name__}: {e}).") from None
    sd = sd.get("state_dict", sd) if isinstance(sd, dict) else sd
    own = model.state_dict()
    usable = {k: v for k, v in sd.items() if k in own and own[k].shape == v.shape}
    if not usable:
        raise RunError(f"{path}: none of its tensors fit the architecture {model.yaml.get('yaml_file', '')}.")
    missing, _ = model.load_state_dict(usable, strict=False)
    log.info("loaded %d/%d tensors from %s; %d left at init (head)", len(usable), len(own), path.name, len(missing))
    return list(missing)


def save_checkpoint(path: str | Path, model: nn.Module, names: list[str], imgsz: int, extra: dict | None = None) -> None:
    """Write a weights-only checkpoint (fp32 tensors + architecture yaml + class names)."""
    yaml_cfg = {k: v for k, v in model.yaml.items() if k != "yaml_file"}
    yaml_cfg["nc"] = len(names)
    blob = {
        "format": CKPT_FORMAT,
        "yaml": yaml_cfg,
        "names": list(names),
        "imgsz": int(imgsz),
        "state_dict": {k: v.detach().float().cpu().clone() for k, v in model.state_dict().items()},
        "extra": dict(extra or {}),
    }
    with atomic_path(path) as tmp:
        torch.save(blob, tmp)


def load_checkpoint(path: str | Path) -> tuple[nn.Module, dict]:
    """Rebuild the model from a cldet checkpoint; returns (model in eval mode, metadata without tensors)."""
    path = Path(path)
    if not path.is_file():
        raise RunError(f"checkpoint {path} does not exist.")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001
        raise RunError(
            f"{path}: cannot be read as a weights-only cldet checkpoint ({type(e).__name__}). "
            "cldet does not unpickle arbitrary objects; re-create it with `cldet train`."
        ) from None
    if not isinstance(blob, dict) or blob.get("format") != CKPT_FORMAT:
        raise RunError(f"{path}: not a cldet checkpoint (expected format {CKPT_FORMAT}).")
    names, imgsz, sd = blob.get("names"), blob.get("imgsz"), blob.get("state_dict")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise RunError(f"{path}: its class names are not a list of strings.")
    if not isinstance(imgsz, int) or isinstance(imgsz, bool) or imgsz <= 0:
        raise RunError(f"{path}: its input size {imgsz!r} is not a positive integer.")
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise RunError(f"{path}: its state_dict is not a mapping of tensors.")
    from .arch import ArchError, check_arch

    try:
        check_arch(blob.get("yaml"), f"{path}: stored architecture")
    except ArchError as e:
        raise RunError(f"{e} Refusing to build it; re-create the run with `cldet train`.") from None
    model = build_model(blob["yaml"], names)
    try:
        model.load_state_dict(blob["state_dict"], strict=True)
    except RuntimeError as e:
        raise RunError(f"{path}: weights do not fit the stored architecture ({e}).") from None
    model.eval()
    meta = {k: v for k, v in blob.items() if k != "state_dict"}
    return model, meta


def apply_cls_width(model: nn.Module) -> nn.Module:
    """Give the head the class-branch width its yaml's `cls_width` asks for (a widened head keeps its parent's).

    Ultralytics sizes the class branch of a Detect head (YOLOv5u, YOLOv8, YOLO11) max(first-level channels,
    min(classes, 100)) wide: an n model (64 channels) with 80 COCO classes has an 80-wide branch, and the same
    architecture built for 81 classes an 81-wide one, into which none of the trained branch fits. `widen_head`
    records the parent's width as `cls_width`; here the branch is rebuilt at that width by Ultralytics' own Detect
    constructor (asked for the class count that yields it), with a final conv of one output per class.
    """
    width = model.yaml.get("cls_width")
    head = detect_head(model)
    if width is None or head.cv3[0][-1].in_channels == width:
        return model
    from ultralytics.nn.modules.conv import Conv
    from ultralytics.nn.modules.head import Detect

    ch = [seq[0].conv.in_channels for seq in head.cv2]
    legacy = isinstance(head.cv3[0][0], Conv)  # v3/v5/v8/v9: Conv, Conv, Conv2d; YOLO11: DWConv+Conv pairs
    saved = Detect.legacy
    Detect.legacy = legacy  # what Ultralytics' parse_model sets before it builds a Detect
    try:
        with _quiet_ultralytics():
            donor = Detect(nc=width if width > ch[0] else 1, reg_max=head.reg_max, ch=ch)
    finally:
        Detect.legacy = saved
    if donor.cv3[0][-1].in_channels != width:
        raise RunError(f"cls_width {width} cannot be built for first-level channels {ch[0]}.")
    for seq in donor.cv3:
        seq[-1] = nn.Conv2d(width, head.nc, 1)
    head.cv3 = donor.cv3
    return model


def widen_head(old: nn.Module, old_names: list[str], new_names: list[str]) -> tuple[nn.Module, dict]:
    """A copy of `old` whose class head has old_names + new_names outputs.

    Everything but the last class conv of each level is copied exactly; old class rows are copied; new rows
    keep the constructor's weight init with the detector's prior bias (log of a ~1% object rate), so new classes
    start quiet instead of firing everywhere. Returns (model, report of what was copied/initialised).
    """
    names = list(old_names) + list(new_names)
    cfg = {k: v for k, v in old.yaml.items() if k != "cls_width"}
    src = detect_head(old)
    width, ch0 = src.cv3[0][-1].in_channels, src.cv2[0][0].conv.in_channels
    if max(ch0, min(len(names), 100)) != width:  # Ultralytics would size the branch anew: keep the parent's
        cfg["cls_width"] = width
    model = build_model(cfg, names)
    src_head, dst_head = src, detect_head(model)
    report = {"copied": 0, "widened": [], "skipped": []}
    src_sd, dst_sd = old.state_dict(), model.state_dict()
    head_prefix = f"model.{len(model.model) - 1}."
    final_cls = {f"{head_prefix}cv3.{i}.{len(dst_head.cv3[i]) - 1}." for i in range(dst_head.nl)}
    for k, v in dst_sd.items():
        if k not in src_sd:
            report["skipped"].append(k)
            continue
        if any(k.startswith(p) for p in final_cls):
            n_old = src_sd[k].shape[0]
            if src_sd[k].shape[1:] != v.shape[1:]:
                raise RunError(f"cannot widen {k}: {tuple(src_sd[k].shape)} -> {tuple(v.shape)}")
            v[:n_old] = src_sd[k]
            if k.endswith("bias"):
                level = int(k[len(head_prefix) + 4 :].split(".")[0])
                stride = float(dst_head.stride[level])
                v[n_old:] = math.log(5 / max(len(names), 1) / (640 / stride) ** 2)
            report["widened"].append(k)
        elif src_sd[k].shape == v.shape:
            v.copy_(src_sd[k])
            report["copied"] += 1
        else:
            raise RunError(
                f"cannot widen the head: {k} changes shape {tuple(src_sd[k].shape)} -> {tuple(v.shape)} "
                f"(the class branch width depends on the class count above {src_head.cv3[0][0][-1].conv.in_channels if hasattr(src_head.cv3[0][0][-1], 'conv') else '?'} classes)."
            )
    model.load_state_dict(dst_sd)
    log.info(
        "head widened %d -> %d classes: %d tensors copied, %d class convs widened (new rows: default init, prior bias)",
        len(old_names), len(names), report["copied"], len(report["widened"]),
    )
    return model, report


def torch_predict(model: nn.Module, device: str | torch.device = "cpu"):
    """A `predict(np.ndarray) -> np.ndarray` callable for cldet.core.evaluate (same I/O as the ONNX)."""
    import numpy as np

    model = model.to(device).eval()

    @torch.no_grad()
    def predict(x: np.ndarray) -> np.ndarray:
        y = model(torch.from_numpy(x).to(device))
        y = y[0] if isinstance(y, (tuple, list)) else y
        return y.float().cpu().numpy()

    return predict
