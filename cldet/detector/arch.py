"""Architecture descriptions that Ultralytics' builder may evaluate: resolved and checked before it sees them.

Ultralytics builds a network from a yaml dict (`parse_model`) and, on the way, `eval`s the `activation` string,
looks every layer's module name up in its own module globals (`globals()[m]`, or an attribute of `torch.nn` /
`torchvision.ops`) and calls it with the row's arguments, and resolves string arguments through its local
variables. A model.pt is plain data, but a crafted yaml inside it would run code in that builder. So every yaml
cldet hands to the builder (an `--arch` file or name, the one stored in a checkpoint, the trainer's) passes
`check_arch` first: known keys only, an activation from a fixed grammar of `torch.nn` activations with numeric
arguments, module names from Ultralytics' own model yamls (minus `TorchVision`, which downloads weights), string
arguments from the few those yamls use, and numbers within sizes a detector can have.
"""

from __future__ import annotations

import copy
import math
import re
from pathlib import Path
from typing import Any

from ..core.errors import CldetError

__all__ = ["ALLOWED_MODULES", "ALLOWED_ACTIVATIONS", "check_arch", "resolve_arch", "ArchError"]


class ArchError(CldetError):
    """An architecture yaml that cldet refuses to hand to the model builder (usage error unless re-raised)."""


# every module name used by the model yamls shipped with the pinned Ultralytics, except TorchVision (it loads
# torchvision models and their weights, i.e. a download); tests/detector/test_arch.py keeps this list in step
ALLOWED_MODULES = frozenset({
    "A2C2f", "AConv", "ADown", "AIFI", "Bottleneck", "C2", "C2PSA", "C2f", "C2fAttn", "C2fCIB", "C3", "C3Ghost",
    "C3k2", "CBFuse", "CBLinear", "Classify", "Concat", "Conv", "DWConv", "Depth", "Detect", "ELAN1", "GhostConv",
    "HGBlock", "HGStem", "ImagePoolingAttn", "OBB", "OBB26", "PSA", "Pose", "Pose26", "RTDETRDecoder", "RepC3",
    "RepNCSPELAN4", "ResNetLayer", "SCDown", "SPP", "SPPELAN", "SPPF", "Segment", "Segment26", "SemanticSegment",
    "WorldDetect", "YOLOEDetect", "YOLOESegment", "YOLOESegment26", "nn.ConvTranspose2d", "nn.Identity",
    "nn.MaxPool2d", "nn.Upsample", "nn.ZeroPad2d", "v10Detect",
})
# string arguments the builder resolves (its local `nc`, `kpt_shape`) or keeps ('nearest'; 'None' -> None)
ALLOWED_STRING_ARGS = frozenset({"None", "nearest", "nc", "kpt_shape"})
ALLOWED_ACTIVATIONS = ("SiLU", "ReLU", "ReLU6", "LeakyReLU", "Hardswish", "GELU", "Mish", "ELU", "Sigmoid", "Tanh",
                       "Identity")
_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_ACT = re.compile(rf"^(?:torch\.)?nn\.(?:{'|'.join(ALLOWED_ACTIVATIONS)})\(\s*(?:{_NUM}\s*)?"
                  rf"(?:,?\s*inplace\s*=\s*(?:True|False)\s*)?\)$")
# keys the builder reads (nc, scales, scale, depth/width multiples, activation, backbone/head, reg_max, end2end,
# kpt_shape), the bookkeeping ones Ultralytics adds (yaml_file, channels, ch), and cldet's cls_width (the class
# branch width a widened head keeps, cldet.detector.model.apply_cls_width)
ALLOWED_KEYS = frozenset({"nc", "scales", "scale", "depth_multiple", "width_multiple", "activation", "backbone", "head",
                          "reg_max", "end2end", "kpt_shape", "yaml_file", "channels", "ch", "cls_width"})
MAX_LAYERS, MAX_REPEATS, MAX_INT, MAX_MULTIPLE = 512, 64, 1 << 16, 8.0


def _num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _check_arg(a: Any, where: str, depth: int = 0) -> None:
    if depth > 4:
        raise ArchError(f"{where}: arguments nested too deeply.")
    if isinstance(a, list):
        for x in a:
            _check_arg(x, where, depth + 1)
    elif isinstance(a, str):
        if a not in ALLOWED_STRING_ARGS:
            raise ArchError(f"{where}: string argument {a!r} is not allowed (allowed: {', '.join(sorted(ALLOWED_STRING_ARGS))}).")
    elif a is None or isinstance(a, bool):
        return
    elif _num(a):
        if abs(a) > MAX_INT:
            raise ArchError(f"{where}: argument {a} is out of range (|x| <= {MAX_INT}).")
    else:
        raise ArchError(f"{where}: argument of type {type(a).__name__} is not allowed.")


def _check_row(row: Any, where: str) -> None:
    if not isinstance(row, list) or len(row) != 4:
        raise ArchError(f"{where}: a layer must be [from, repeats, module, args].")
    f, n, m, args = row
    froms = f if isinstance(f, list) else [f]
    if not froms or not all(_int(x) and abs(x) <= MAX_LAYERS for x in froms):
        raise ArchError(f"{where}: 'from' must be a layer index or a list of them, got {f!r}.")
    if not _int(n) or not 1 <= n <= MAX_REPEATS:
        raise ArchError(f"{where}: repeats must be an integer in 1..{MAX_REPEATS}, got {n!r}.")
    if not isinstance(m, str) or m not in ALLOWED_MODULES:
        shown = m if isinstance(m, str) and len(m) < 80 else f"{str(m)[:80]}..."
        raise ArchError(f"{where}: module {shown!r} is not an allowed layer (Ultralytics' own layers only).")
    if not isinstance(args, list):
        raise ArchError(f"{where}: args must be a list.")
    _check_arg(args, where)


def check_arch(cfg: Any, where: str = "architecture") -> dict:
    """A deep copy of `cfg` after checking every field the builder evaluates; ArchError naming the field else."""
    if not isinstance(cfg, dict):
        raise ArchError(f"{where}: an architecture must be a mapping, got {type(cfg).__name__}.")
    unknown = sorted(str(k) for k in cfg if k not in ALLOWED_KEYS)
    if unknown:
        raise ArchError(f"{where}: unknown architecture keys {unknown} (allowed: {', '.join(sorted(ALLOWED_KEYS))}).")
    act = cfg.get("activation")
    if act is not None and (not isinstance(act, str) or len(act) > 64 or not _ACT.match(act)):
        raise ArchError(f"{where}: activation {str(act)[:80]!r} is not allowed; use one of "
                        f"nn.{'(), nn.'.join(ALLOWED_ACTIVATIONS)}() (numeric arguments only).")
    nc = cfg.get("nc")
    if nc is not None and (not _int(nc) or not 1 <= nc <= MAX_INT):
        raise ArchError(f"{where}: nc must be a positive integer, got {nc!r}.")
    for key in ("depth_multiple", "width_multiple"):
        v = cfg.get(key, 1.0)
        if not _num(v) or not 0 < v <= MAX_MULTIPLE:
            raise ArchError(f"{where}: {key} must be a number in (0, {MAX_MULTIPLE:g}], got {v!r}.")
    scales = cfg.get("scales")
    if scales is not None:
        if not isinstance(scales, dict) or not scales:
            raise ArchError(f"{where}: scales must be a mapping of scale name -> [depth, width, max_channels].")
        for k, v in scales.items():
            if not isinstance(k, str) or not isinstance(v, list) or len(v) != 3 or not all(_num(x) and x > 0 for x in v) \
                    or v[0] > MAX_MULTIPLE or v[1] > MAX_MULTIPLE or v[2] > MAX_INT:
                raise ArchError(f"{where}: scale {k!r} must be [depth, width, max_channels] of positive numbers.")
    scale = cfg.get("scale")
    if scale not in (None, "") and (not isinstance(scale, str) or (scales is not None and scale not in scales)):
        raise ArchError(f"{where}: scale {str(scale)[:20]!r} is not one of the yaml's scales.")
    if cfg.get("reg_max") is not None and (not _int(cfg["reg_max"]) or not 1 <= cfg["reg_max"] <= 64):
        raise ArchError(f"{where}: reg_max must be an integer in 1..64.")
    if cfg.get("end2end") is not None and not isinstance(cfg["end2end"], bool):
        raise ArchError(f"{where}: end2end must be true or false.")
    if cfg.get("cls_width") is not None and (not _int(cfg["cls_width"]) or not 1 <= cfg["cls_width"] <= MAX_INT):
        raise ArchError(f"{where}: cls_width must be a positive integer.")
    for key in ("channels", "ch"):
        if cfg.get(key) is not None and (not _int(cfg[key]) or not 1 <= cfg[key] <= 16):
            raise ArchError(f"{where}: {key} must be an integer in 1..16.")
    if cfg.get("kpt_shape") is not None:
        _check_arg(cfg["kpt_shape"], f"{where}: kpt_shape")
    if cfg.get("yaml_file") is not None and not isinstance(cfg["yaml_file"], str):
        raise ArchError(f"{where}: yaml_file must be a string.")
    rows = []
    for part in ("backbone", "head"):
        layers = cfg.get(part)
        if not isinstance(layers, list) or not layers:
            raise ArchError(f"{where}: '{part}' must be a non-empty list of layers.")
        rows += [(f"{where}: {part}[{i}]", r) for i, r in enumerate(layers)]
    if len(rows) > MAX_LAYERS:
        raise ArchError(f"{where}: {len(rows)} layers (at most {MAX_LAYERS}).")
    for w, r in rows:
        _check_row(r, w)
    return copy.deepcopy(cfg)


def resolve_arch(arch: str | Path | dict) -> dict:
    """An `--arch` value (a yaml file, an Ultralytics model name such as 'yolov5nu.yaml', or a dict) as a checked
    dict. Nothing is downloaded: URLs and names that are neither a file nor one of Ultralytics' yamls are refused."""
    if isinstance(arch, dict):
        return check_arch(arch)
    text = str(arch)
    if "://" in text:
        raise ArchError(f"--arch {text!r}: URLs are not fetched; pass a yaml file or an Ultralytics model name.")
    if not text.endswith((".yaml", ".yml")):
        raise ArchError(f"--arch {text!r}: expected a .yaml file or an Ultralytics model yaml name such as "
                        "'yolov5nu.yaml' or 'yolov8n.yaml'.")
    path = Path(text)
    if not path.is_file() and ("/" in text or "\\" in text):
        raise ArchError(f"--arch {text}: file does not exist.")
    from . import _offline  # noqa: F401
    from ultralytics.nn.tasks import yaml_model_load

    try:
        cfg = yaml_model_load(path)  # safe YAML; a bare name is looked up in Ultralytics' cfg/models
    except (FileNotFoundError, OSError):
        raise ArchError(f"--arch {text}: no such file and no Ultralytics model yaml of that name "
                        "(e.g. yolov5nu.yaml, yolov8n.yaml, yolo11n.yaml).") from None
    except Exception as e:  # noqa: BLE001 - a yaml that does not parse
        raise ArchError(f"--arch {text}: not a readable yaml ({type(e).__name__}: {e}).") from None
    return check_arch(cfg, f"--arch {text}")
