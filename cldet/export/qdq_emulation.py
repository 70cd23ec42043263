"""Fake quantization in torch at exactly the tensors, and with exactly the scales, of a Q/DQ ONNX model.

QAT trains the weights for the graph it simulates. ONNX Runtime's Q/DQ graph of a YOLO model quantizes far more
than the conv inputs: every conv's pre-activation, the SiLU's sigmoid and product, the C3 blocks' residual sums and
concatenations, SPPF's max-pools, the neck's upsamples and concatenations, each with its own calibrated scale.
`emulate` reads every activation QuantizeLinear (tensor, scale, zero point, integer range) of such a model and
attaches a fake quantizer with those parameters to the torch module that computes that tensor, found from the ONNX
name's module scope (torch.onnx names nodes after the module path: `/model.2/cv1/conv/Conv` is `model.2.cv1.conv`).
A tensor with no such module (another architecture's ops) raises `Unsupported`, and the caller falls back to
fake quantizing conv inputs only.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import numpy as np

__all__ = ["activation_params", "int8_conv_weights", "module_of", "emulate", "Unsupported"]


class Unsupported(Exception):
    """A quantized tensor that this emulation cannot attach to a torch module."""


def activation_params(qdq) -> dict[str, tuple[float, int, int, int]]:
    """Tensor name -> (scale, zero point, qmin, qmax) of every per-tensor activation QuantizeLinear of the Q/DQ
    model (a path or a ModelProto)."""
    import onnx
    from onnx import numpy_helper

    q = onnx.load(str(qdq)) if isinstance(qdq, (str, Path)) else qdq
    inits = {i.name: numpy_helper.to_array(i) for i in q.graph.initializer}
    out = {}
    for n in q.graph.node:
        if n.op_type != "QuantizeLinear" or n.input[0] in inits:
            continue
        scale = inits[n.input[1]]
        zp = inits[n.input[2]] if len(n.input) > 2 else np.zeros((), np.uint8)
        if scale.size != 1:
            raise Unsupported(f"{n.input[0]}: per-channel activation quantization")
        info = np.iinfo(zp.dtype)
        out[n.input[0]] = (float(scale.reshape(())), int(zp.reshape(())), int(info.min), int(info.max))
    return out


def int8_conv_weights(qdq) -> dict[str, np.ndarray]:
    """Conv node name -> its dequantized weights (INT8 values times their scales), for every Conv whose weights are
    INT8 behind a DequantizeLinear in the Q/DQ model (a path or a ModelProto)."""
    import onnx
    from onnx import numpy_helper

    q = onnx.load(str(qdq)) if isinstance(qdq, (str, Path)) else qdq
    inits = {i.name: i for i in q.graph.initializer}
    producer = {o: n for n in q.graph.node for o in n.output}
    out = {}
    for n in q.graph.node:
        dq = producer.get(n.input[1]) if n.op_type == "Conv" and len(n.input) > 1 else None
        if dq is None or dq.op_type != "DequantizeLinear":
            continue
        ints, scale = (numpy_helper.to_array(inits[t]).astype(np.float32) for t in dq.input[:2])
        out[n.name] = ints * scale.reshape(-1, *[1] * (ints.ndim - 1))
    return out


def module_of(name: str, modules: dict) -> tuple[str, str, int]:
    """(torch module path, ONNX op type, call index) of an ONNX node or tensor name such as
    `/model.24/cv2.0/cv2.0.0/conv/Conv_output_0` (-> `model.24.cv2.0.0.conv`, `Conv`, 0) or `/model.9/m_1/MaxPool`
    (-> `model.9.m`, `MaxPool`, 1: the module's second call in one forward pass)."""
    parts = name.strip("/").split("/")
    op = re.sub(r"(_output)?_\d+$", "", parts[-1])
    segs: list[str] = []
    for s in parts[:-1]:
        if segs and s.startswith(segs[-1] + "."):  # a ModuleList/Sequential child named with its parent's prefix
            segs[-1] = s
        else:
            segs.append(s)
    path, call = ".".join(segs), 0
    if path not in modules and segs:
        m = re.fullmatch(r"(.+)_(\d+)", segs[-1])
        if m and ".".join([*segs[:-1], m.group(1)]) in modules:
            path, call = ".".join([*segs[:-1], m.group(1)]), int(m.group(2))
    if path not in modules:
        raise Unsupported(f"{name}: no module {path!r}")
    return path, op, call


def _fq(x, p):
    import torch

    scale, zp, qmin, qmax = p
    return torch.fake_quantize_per_tensor_affine(x, scale, zp, qmin, qmax)


def emulate(model, params: dict[str, tuple[float, int, int, int]]) -> list:
    """Attach fake quantizers to the fused detection `model` (in place) at every tensor of `params`
    (`activation_params`); returns handles whose `remove()` undoes each (hooks, and the SiLUs replaced by fake
    quantized ones). Raises `Unsupported` before changing anything when a tensor cannot be placed."""
    import torch.nn as nn

    modules = dict(model.named_modules(remove_duplicate=False))  # Ultralytics shares one SiLU between convs
    post: dict[str, dict[int, tuple]] = {}  # module path -> call index -> params, on the module's output
    pre: dict[str, tuple] = {}  # module path -> params, on its first input
    silu: dict[str, dict[str, tuple]] = {}  # SiLU module path -> {"Sigmoid": p, "Mul": p}
    for tensor, p in params.items():
        path, op, call = module_of(tensor, modules)
        mod = modules[path]
        kind = type(mod).__name__
        if op in ("Sigmoid", "Mul") and isinstance(mod, nn.SiLU):
            silu.setdefault(path, {})[op] = p
        elif (op == "Conv" and isinstance(mod, nn.Conv2d)) or (op == "Add" and getattr(mod, "add", False)) or \
                (op == "Concat" and kind == "Concat") or (op == "MaxPool" and isinstance(mod, nn.MaxPool2d)) or \
                (op == "Resize" and isinstance(mod, nn.Upsample)):
            post.setdefault(path, {})[call] = p
        elif op == "Concat" and kind in ("C3", "SPPF"):  # concatenated inside forward, then read by one conv
            reader = f"{path}.cv3" if kind == "C3" else f"{path}.cv2"
            pre[reader] = p
        else:
            raise Unsupported(f"{tensor}: {op} in a {kind} module")
    calls: dict[str, int] = {}
    handles = [model.register_forward_pre_hook(lambda m, a: calls.clear())]

    def post_hook(path):
        def hook(_m, _inp, out):
            k = calls.get(path, 0)
            calls[path] = k + 1
            p = post[path].get(k)
            return _fq(out, p) if p is not None else out
        return hook

    for path in post:
        handles.append(modules[path].register_forward_hook(post_hook(path)))
    for path, p in pre.items():
        handles.append(modules[path].register_forward_pre_hook(lambda m, a, p=p: (_fq(a[0], p), *a[1:])))
    for path, ps in silu.items():
        parent, _, attr = path.rpartition(".")
        handles.append(_Swap(modules[parent], attr, _fq_silu()(ps.get("Sigmoid"), ps.get("Mul"))))
    return handles


class _Swap:
    """A module attribute replaced until `remove()` puts the original back (a hook handle's interface)."""

    def __init__(self, owner, attr: str, new):
        self.owner, self.attr, self.old = owner, attr, getattr(owner, attr)
        setattr(owner, attr, new)

    def remove(self) -> None:
        setattr(self.owner, self.attr, self.old)


@functools.lru_cache(maxsize=None)
def _fq_silu():
    """The fake-quantized SiLU module class, built once on first use (importing this module needs no torch)."""
    import torch
    import torch.nn as nn

    class FQSiLU(nn.Module):
        """x * sigmoid(x) with the sigmoid and the product fake quantized, as ONNX Runtime's Sigmoid and Mul."""

        def __init__(self, sig, mul):
            super().__init__()
            self.sig, self.mul = sig, mul

        def forward(self, x):
            s = torch.sigmoid(x)
            if self.sig is not None:
                s = _fq(s, self.sig)
            y = x * s
            return _fq(y, self.mul) if self.mul is not None else y

    return FQSiLU
