"""Quantization-aware fine-tuning (QAT) distilled from the FP32 model, then Q/DQ export.

Tool choice: PyTorch's own fake-quant ops (`torch.fake_quantize_per_channel_affine` /
`torch.fake_quantize_per_tensor_affine`, straight-through gradients), not NVIDIA ModelOpt: they ship with torch
and run on any CPU with nothing to install; and the Q/DQ graph is then written by the same ONNX Runtime
quantizer as PTQ, so PTQ and QAT artifacts have identical Q/DQ placement (decode float, per-channel weights,
U8S8 or S8S8 by target) and the manifest compares like with like. What QAT changes is the weights: they are
trained to sit well on the INT8 grid the exporter will use (symmetric per-channel max-abs scales, the same rule
ORT applies), while every activation tensor the Q/DQ graph quantizes is fake quantized with the scale that graph
gives it (cldet.export.qdq_emulation: the PTQ graph of the export's own calibration, whose ranges the QAT
artifact then keeps). Measured on the converged chess13 base model (docs/export.md, QAT): INT8's output change vs
FP32 0.0129 with this emulation starting from GPTQ's INT8 weights, 0.0148 starting from the FP32 weights, 0.0168
when only the conv inputs were fake quantized on ranges of QAT's own (PTQ with GPTQ: 0.0145).

Loop: student = fused copy of the model with fake-quant on the weights of the convs the Q/DQ graph quantizes (all
but the head's last convs, the DFL and, on the cpu target, the stem) and on its activations; teacher = the FP32
model. Loss on calibration images (never evaluation images): BCE between student and teacher
class probabilities + KL between their DFL box distributions. No labels needed, so it works with the reservoir.
"""

from __future__ import annotations

import copy
import logging
import random
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

__all__ = ["QATConfig", "export_qat", "qat_finetune"]

log = logging.getLogger("cldet")


@dataclass(frozen=True)
class QATConfig:
    epochs: int = 3
    images: int = 256  # cap on fine-tuning images (drawn from the calibration set)
    batch: int = 8
    lr: float = 1e-4  # measured on chess13 2-step: 1e-4 x 3 epochs beat 1e-5 x 2 (step1 drift 0.69 vs 0.82)
    target: str = "cpu"
    method: str = "percentile"
    percentile: float = 99.999
    seed: int = 0
    float_nodes: tuple[str, ...] = ()  # --keep-float regexes, kept float in the Q/DQ export as in PTQ

    def as_dict(self) -> dict:
        return {"tool": "torch fake-quant (STE) + ONNX Runtime Q/DQ writer", "epochs": self.epochs,
                "images": self.images, "batch": self.batch, "lr": self.lr, "loss": "BCE(cls probs) + KL(DFL) vs FP32",
                "seed": self.seed}


def _quant_convs(model, target: str = "cpu"):
    """Convs to fake-quantize: all but the head's last class/box convs and the DFL (they stay float in the export),
    and on the cpu target the stem conv (kept float there, see quantize.STEM_WHY)."""
    import torch.nn as nn

    head_idx = len(model.model) - 1
    head = model.model[head_idx]
    skip = {id(head.dfl.conv)} if hasattr(head, "dfl") and hasattr(head.dfl, "conv") else set()
    for branch in (getattr(head, "cv2", None), getattr(head, "cv3", None)):
        for seq in branch or []:
            last = seq[-1]
            skip.add(id(last))
    if target == "cpu":
        skip |= {id(m) for m in model.model[0].modules() if isinstance(m, nn.Conv2d)}
    return [m for m in model.modules() if isinstance(m, nn.Conv2d) and id(m) not in skip]


def _weight_fq():
    """Parametrization: symmetric per-output-channel INT8 fake quant with max-abs scales (ORT's weight rule)."""
    import torch
    from torch import nn

    class WeightFQ(nn.Module):
        def forward(self, w):
            amax = w.detach().abs().amax(dim=(1, 2, 3)).clamp(min=1e-8)
            scale = (amax / 127.0).float()
            zp = torch.zeros_like(scale, dtype=torch.int32)
            return torch.fake_quantize_per_channel_affine(w, scale, zp, 0, -127, 127)

    return WeightFQ()


def _calibrate_inputs(model, convs, arrays: list[np.ndarray], percentile: float) -> dict[int, tuple[float, float]]:
    """Per-conv input range (lo, hi): the percentile of |values| over the calibration batches, as the ORT calibrator."""
    import torch

    samples: dict[int, list[np.ndarray]] = {id(c): [] for c in convs}
    hooks = [c.register_forward_pre_hook(
        lambda m, inp: samples[id(m)].append(inp[0].detach().flatten()[::7].numpy())) for c in convs]
    with torch.no_grad():
        for x in arrays:
            model(torch.from_numpy(x))
    for h in hooks:
        h.remove()
    ranges = {}
    for k, v in samples.items():
        allv = np.concatenate(v)
        lo, hi = np.percentile(allv, 100 - percentile), np.percentile(allv, percentile)
        ranges[k] = (min(float(lo), 0.0), max(float(hi), 1e-6))
    return ranges


def _act_hook(lo: float, hi: float, symmetric: bool):
    import torch

    if symmetric:
        amax = max(abs(lo), abs(hi))
        scale, zp, qmin, qmax = amax / 127.0, 0, -128, 127
    else:
        scale = (hi - lo) / 255.0
        zp, qmin, qmax = int(round(-lo / scale)), 0, 255

    def hook(_module, inp):
        return (torch.fake_quantize_per_tensor_affine(inp[0], scale, zp, qmin, qmax),)

    return hook


def _head_raw(model, x):
    """Raw head outputs (box distribution logits, class logits): the Detect head in training mode."""
    out = model(x)
    return out["one2many"] if isinstance(out, dict) and "one2many" in out else out


def qat_finetune(model, arrays: list[np.ndarray], cfg: QATConfig, progress: bool = True, qdq=None,
                 init_weights: bool = False):
    """Return a fused FP32 copy of `model` whose weights were fine-tuned under INT8 fake quantization.

    `qdq` (a Q/DQ ONNX model of the same network, path or ModelProto): fake quantize exactly its activation tensors
    with its scales, and the weights of exactly its INT8 convs (cldet.export.qdq_emulation), so the fine-tuning
    sees the graph that will be deployed. Without it, or for a network the emulation cannot place, every quantized
    conv's input is fake quantized on ranges of its own (`_calibrate_inputs`)."""
    import torch
    import torch.nn.functional as F
    from torch.nn.utils import parametrize
    from tqdm import tqdm

    torch.manual_seed(cfg.seed)
    teacher = copy.deepcopy(model).float().eval().fuse()
    student = copy.deepcopy(teacher)
    hooks, convs, emulated = None, None, None
    if qdq is not None:
        import onnx
        import torch

        from .qdq_emulation import Unsupported, activation_params, emulate, int8_conv_weights, module_of

        q = onnx.load(str(qdq)) if isinstance(qdq, (str, Path)) else qdq  # read once
        try:
            mods = dict(student.named_modules(remove_duplicate=False))
            weights = sorted(int8_conv_weights(q).items())
            convs = [mods[module_of(n, mods)[0]] for n, _ in weights]
            if init_weights:  # start from the graph's INT8 weights
                with torch.no_grad():
                    for c, (_, w) in zip(convs, weights):
                        c.weight.copy_(torch.from_numpy(w))
            params = activation_params(q)
            hooks = emulate(student, params)
            emulated = len(params)
        except Unsupported as e:
            log.warning("QAT: fake quantization at the conv inputs only (%s)", e)
            student, hooks, convs = copy.deepcopy(teacher), None, None
    if hooks is None:
        convs = _quant_convs(student, cfg.target)
        ranges = _calibrate_inputs(student, convs, arrays[: min(len(arrays), 32)], cfg.percentile)
        hooks = [c.register_forward_pre_hook(_act_hook(*ranges[id(c)], cfg.target == "tensorrt")) for c in convs]
    for c in convs:
        parametrize.register_parametrization(c, "weight", _weight_fq())
    head = student.model[-1]
    reg_max = int(getattr(head, "reg_max", 16))
    params = [p for p in student.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=cfg.lr)
    rng = random.Random(cfg.seed)
    data = arrays[: cfg.images]
    student.train()
    teacher.train()  # fused: no BatchNorm left, so train() only makes the Detect head return raw logits
    losses = []
    for epoch in range(cfg.epochs):
        order = list(range(len(data)))
        rng.shuffle(order)
        bar = tqdm(range(0, len(order), cfg.batch), desc=f"qat epoch {epoch + 1}/{cfg.epochs}", unit="batch",
                   disable=not progress)
        for s in bar:
            x = torch.from_numpy(np.concatenate([data[i] for i in order[s: s + cfg.batch]]))
            if rng.random() < 0.5:
                x = x.flip(-1)
            with torch.no_grad():
                t = _head_raw(teacher, x)
            o = _head_raw(student, x)
            b = x.shape[0]
            ts, os_ = t["scores"], o["scores"]
            tb = t["boxes"].view(b, 4, reg_max, -1)
            ob = o["boxes"].view(b, 4, reg_max, -1)
            loss = F.binary_cross_entropy_with_logits(os_, ts.sigmoid()) + F.kl_div(
                F.log_softmax(ob, 2), F.log_softmax(tb, 2), log_target=True, reduction="batchmean") / (4 * ob.shape[-1])
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
            bar.set_postfix(loss=f"{np.mean(losses[-10:]):.4f}")
    for h in hooks:
        h.remove()
    for c in convs:  # bake the INT8-grid weights so the exporter's per-channel max-abs scales reproduce them
        parametrize.remove_parametrizations(c, "weight", leave_parametrized=True)
    student.eval()
    for p in student.parameters():
        p.requires_grad_(False)
    log.info("QAT: %d epochs on %d images, distillation loss %.4f -> %.4f", cfg.epochs, len(data),
             losses[0] if losses else float("nan"), losses[-1] if losses else float("nan"))
    return student, {"loss_first": losses[0] if losses else None, "loss_last": losses[-1] if losses else None,
                     "steps": len(losses), "quantized_convs": len(convs),
                     "fake_quant": f"the export's Q/DQ graph: {emulated} activation tensors, its scales"
                     if emulated is not None else "conv inputs, ranges of its own"}


def export_qat(model, calib, ds, out: Path, imgsz: int, cfg: QATConfig, progress: bool = True,
               train_set=None, arrays: list[np.ndarray] | None = None, fp32: Path | None = None,
               ranges=None, proto=None, train_arrays: list[np.ndarray] | None = None,
               start: str = "gptq") -> dict:
    """QAT-finetune `model` on `train_set` (default: the calibration images), export it, and write its Q/DQ ONNX to
    `out` (`arrays`: the calibration images already letterboxed; `train_arrays`: the fine-tuning images, letterboxed).

    With `fp32` (the model's FP32 ONNX) and `ranges` (its calibration, cldet.export.ranges.RangeStats; `proto`: its
    pre-processed graph), the fine-tuning fake quantizes the Q/DQ graph PTQ writes from that calibration, and the
    fine-tuned model is quantized with the same activation scales: what QAT trained for is what is deployed. The
    fine-tuning starts from that graph's INT8 weights, GPTQ-rounded (`start`; "nearest": from the FP32 weights).
    Without them, the activation ranges are calibrated again on the fine-tuned model."""
    from ..calib.reader import calibration_arrays
    from .onnx_export import export_onnx
    from .quantize import QuantConfig, quantize_ptq

    arrays = arrays if arrays is not None else list(calibration_arrays(calib, imgsz, progress))
    train = train_arrays if train_arrays is not None else \
        list(calibration_arrays(train_set, imgsz, progress)) if train_set is not None else arrays
    # nearest rounding, no bias correction: the fine-tuning sees the weights' nearest rounding (fake quant) and its
    # weights and biases absorb it
    qcfg = QuantConfig(target=cfg.target, method=cfg.method, percentile=cfg.percentile, float_nodes=cfg.float_nodes,
                       bias_correction=False, weight_rounding="nearest")
    reference = out.with_name(f".{out.stem}.qat-reference.onnx")
    student_fp32 = out.with_name(f".{out.stem}.qat-fp32.onnx")
    try:
        qdq = None
        if fp32 is not None and ranges is not None:
            qdq = quantize_ptq(fp32, reference, lambda: iter(arrays), replace(qcfg, weight_rounding=start),
                               stats=ranges, proto=proto)
        student, stats = qat_finetune(model, train, cfg, progress, qdq=qdq, init_weights=start != "nearest")
        stats["train_images"] = len(train)
        export_onnx(student, student_fp32, imgsz)
        quantize_ptq(student_fp32, out, lambda: iter(arrays), qcfg, stats=ranges if qdq is not None else None)
    finally:
        student_fp32.unlink(missing_ok=True)
        reference.unlink(missing_ok=True)
    if qdq is not None:
        stats["start_weights"] = f"the Q/DQ graph's INT8 weights ({start} rounding)" if start != "nearest" else "FP32"
    return {**cfg.as_dict(), **stats}
