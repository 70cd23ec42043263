"""Post-training INT8 quantization of the FP32 ONNX into a Q/DQ ONNX (ONNX Runtime's static quantizer).

Placement choices, each one measured or forced by a runtime:
  * The head's decode (DFL conv + softmax, anchor/stride arithmetic, class sigmoid, the final Concat) stays
    float: one INT8 scale cannot span box pixels (0..S) and probabilities (0..1) in the same tensor.
  * Weights are per-channel (per output channel of each Conv), symmetric S8.
  * `target="cpu"`: U8 activations (asymmetric), S8 weights: the x86 VNNI kernels' native U8S8 path. S8S8
    runs through a slower emulation in ONNX Runtime (2.3x slower than FP32 on this machine).
  * Bias correction (Nagel et al., "Data-Free Quantization", 2019), an option (`QuantConfig.bias_correction`),
    off by default: rounding the weights shifts each output channel's mean by (W_q - W) . E[x]; the float bias
    absorbs that shift, E[x] being the conv input's per-channel mean on the calibration images. Measured
    (benchmarks/ptq_refinements.py): it brought INT8's outputs closer to FP32 on the chess13 models but not on
    deeppcb6, where it cost 0.3-0.4 points of mAP50-95 on 500 images, so it is not the default.
  * A Conv output that only feeds a SiLU gets the range that is best after the SiLU (cldet.export.ranges).
  * The INT8 weight values are GPTQ's (cldet.export.rounding), not the nearest levels: on the same per-channel
    scales, each conv's rounding minimizes its output error on the calibration images (`weight_rounding`).
  * `target="tensorrt"`: symmetric S8 activations and weights, Q/DQ only in front of Conv inputs (TensorRT's
    explicit-quantization recipe): TensorRT propagates the scales through Concat/Resize/MaxPool itself, so no
    Concat gets inputs with different scales, and unquantized layers run in FP16 when the engine allows it.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from ..core.errors import ArtifactError, CldetError
from .options import CALIB_METHODS, TARGETS, WEIGHT_ROUNDINGS
from .ranges import RangeStats, candidate_tensors, collect_stats, compute_ranges, silu_inputs

__all__ = ["QuantConfig", "quantize_ptq", "prepare", "calibrate", "float_nodes", "float_layers", "stem_nodes",
           "decode_nodes", "qdq_report", "weight_rounding", "correct_biases", "WEIGHT_ROUNDINGS"]

log = logging.getLogger("cldet")
# CPU: every op ONNX Runtime has a fused INT8 kernel for (QLinearConv, QLinearAdd/Mul, QLinearSigmoid, MaxPool,
# Resize, Concat); leaving the SiLU's Sigmoid/Mul in float would cost a DQ/Q pair around every activation.
CPU_OPS = ("Conv", "Mul", "Sigmoid", "Add", "Concat", "MaxPool", "Resize", "Split", "Slice")
TRT_OPS = ("Conv",)


@dataclass(frozen=True)
class QuantConfig:
    """What `quantize_ptq` does; every field is written into the manifest's calibration summary."""

    target: str = "cpu"
    method: str = "minmax"
    percentile: float = 99.999
    per_channel: bool = True
    reduce_range: bool = False  # 7-bit weights: no int16 saturation in the U8S8 kernels of x86 CPUs without VNNI
    float_head_convs: bool = True  # the head's last class/box convs stay float too (logit precision; 6 small convs)
    float_stem: bool | None = None  # the Conv reading the image stays float; None: for the cpu target only
    op_types: tuple[str, ...] | None = None  # None: CPU_OPS or TRT_OPS by target
    float_nodes: tuple[str, ...] = ()  # regexes of node names kept float (sensitive layers)
    float_why: tuple[str, ...] = ()  # the reason of each float_nodes entry (manifest); default: the user asked
    # fold the weights' rounding's mean shift into the biases; off: measured no better on deeppcb6 (docs/export.md)
    bias_correction: bool = False
    silu_ranges: bool = True  # SiLU inputs: the range best after the SiLU (U8 activations only)
    # INT8 weight values: "gptq" (each conv's output error minimized on the calibration images, cldet.export.rounding)
    # or "nearest" (each weight to its nearest level); the scales are the same
    weight_rounding: str = "gptq"

    def as_dict(self) -> dict:
        d = {"target": self.target, "method": self.method, "per_channel": self.per_channel,
             "op_types": list(self.ops), "activations": "S8 symmetric" if self.target == "tensorrt" else "U8",
             "weights": "S8 symmetric per-channel" if self.per_channel else "S8 symmetric per-tensor",
             "float_head_convs": self.float_head_convs, "float_nodes": list(self.float_nodes),
             "reduce_range": self.reduce_range, "float_stem": self.stem_float, "bias_correction": self.bias_correction,
             "silu_ranges": self.silu_ranges and self.target != "tensorrt", "weight_rounding": self.weight_rounding}
        if self.method == "percentile":
            d["percentile"] = self.percentile
        return d

    @property
    def stem_float(self) -> bool:
        return self.target == "cpu" if self.float_stem is None else self.float_stem

    @property
    def ops(self) -> tuple[str, ...]:
        return self.op_types or (TRT_OPS if self.target == "tensorrt" else CPU_OPS)


def decode_nodes(proto, with_head_convs: bool = False) -> list[str]:
    """Names of the head's decode nodes (kept float): every node that depends on the DFL softmax or on the class
    scores after the last class conv, i.e. everything downstream of the last Conv of each head branch.

    Found on the graph, not by name: nodes reachable from the graph output going backwards until a Conv whose
    output reaches a Reshape (the head's per-level flatten) is met.
    """
    nodes = list(proto.graph.node)
    producer = {o: n for n in nodes for o in n.output}
    outputs = {o.name for o in proto.graph.output}
    # the head's last convs: Conv nodes whose output flows into a Reshape/Concat chain without another Conv except
    # the DFL conv (its input is a Softmax). Walk back from the outputs, stop at Convs fed by non-Softmax nodes.
    decode: dict[str, object] = {}
    boundary: list[str] = []
    stack = [producer[o] for o in outputs if o in producer]
    while stack:
        n = stack.pop()
        if n.name in decode:
            continue
        if n.op_type == "Conv":
            src = producer.get(n.input[0])
            is_dfl = src is not None and (src.op_type == "Softmax" or
                                          (src.op_type == "Transpose" and producer.get(src.input[0]) is not None
                                           and producer[src.input[0]].op_type == "Softmax"))
            if not is_dfl:
                boundary.append(n.name)  # a head branch's last conv: the walk stops here
                continue
        decode[n.name] = n
        stack += [producer[i] for i in n.input if i in producer]
    if not any(n.op_type == "Sigmoid" for n in decode.values()):
        raise ArtifactError("could not find the head's decode (no class Sigmoid before the output); is this a "
                            "cldet/Ultralytics Detect export?")
    return list(decode) + (sorted(set(boundary)) if with_head_convs else [])


def _check_no_quantized_decode(proto, decode: list[str]) -> None:
    """No tensor computed by the decode is ever quantized (its inputs, the head convs' logits, may be)."""
    names = set(decode)
    producer = {o: n for n in proto.graph.node for o in n.output}
    bad = sorted({producer[n.input[0]].name for n in proto.graph.node
                  if n.op_type == "QuantizeLinear" and n.input[0] in producer and producer[n.input[0]].name in names})
    if bad:
        raise ArtifactError(f"INT8 graph quantizes decode nodes {bad[:5]}; the head's decode must stay float.")


def _dq_to_conv_only(proto) -> int:
    """TensorRT target: a Q/DQ pair shared by a Conv and a Concat/Add (ORT shares one DQ between consumers) would
    put INT8 tensors with unrelated scales at Concat inputs, which makes TensorRT insert reformats. Rewire every
    non-Conv consumer of an activation DQ back to the float tensor, so Q/DQ sits only in front of Conv inputs."""
    inits = {i.name for i in proto.graph.initializer}
    producer = {o: n for n in proto.graph.node for o in n.output}
    float_of = {}
    for n in proto.graph.node:
        if n.op_type == "DequantizeLinear" and n.input[0] not in inits:
            q = producer.get(n.input[0])
            if q is not None and q.op_type == "QuantizeLinear":
                float_of[n.output[0]] = q.input[0]
    moved = 0
    for n in proto.graph.node:
        if n.op_type in ("Conv", "QuantizeLinear", "DequantizeLinear"):
            continue
        for k, i in enumerate(n.input):
            if i in float_of:
                n.input[k] = float_of[i]
                moved += 1
    return moved


class _Reader:
    """ONNX Runtime's CalibrationDataReader protocol over an iterator of (1, 3, S, S) arrays."""

    def __init__(self, arrays: Iterable[np.ndarray], input_name: str = "images"):
        self._it = iter(arrays)
        self._name = input_name

    def get_next(self):
        x = next(self._it, None)
        return None if x is None else {self._name: x}

    def rewind(self):  # the calibrator reads once
        pass


def prepare(fp32_onnx: str | Path, work: Path):
    """ONNX Runtime's quantization pre-processing (shape inference), returned as a proto; the file is removed."""
    import onnx
    from onnxruntime.quantization.shape_inference import quant_pre_process

    pre = work / f".{Path(fp32_onnx).stem}.pre.onnx"
    try:
        quant_pre_process(str(fp32_onnx), str(pre), skip_optimization=True, skip_symbolic_shape=True)
        return onnx.load(str(pre))
    finally:
        pre.unlink(missing_ok=True)


STEM_WHY = ("reads the image (3 channels): ONNX Runtime's x86 U8S8 kernels without VNNI add pairs of u8*s8 "
            "products in int16, which saturates on full-range pixels (measured: 8 points of mAP50-95 lost), and a "
            "3-channel QLinearConv is slower than the float one (2.7 vs 1.9 ms at 320 px)")
DECODE_WHY = "head decode (DFL softmax + integral, anchors, strides, class sigmoid): one INT8 scale cannot span box pixels and probabilities"
FLOAT_SILU_WHY = (" (with the SiLU after each conv: a float conv between Q/DQ nodes gets per-tensor INT8 weights from "
                  "ONNX Runtime's optimizer)")
HEAD_WHY = "last box/class conv of each head level: logit precision (6 small 1x1 convs)"


def stem_nodes(proto) -> list[str]:
    """Conv nodes that read a graph input directly (the image)."""
    inputs = {i.name for i in proto.graph.input}
    return [n.name for n in proto.graph.node if n.op_type == "Conv" and n.input and n.input[0] in inputs]


def float_layers(proto, config: QuantConfig) -> list[dict]:
    """Every node kept float, with the reason: what the manifest records (`calibration.float_layers`)."""
    import re

    decode = decode_nodes(proto, with_head_convs=False)
    head = [n for n in decode_nodes(proto, with_head_convs=True) if n not in decode] if config.float_head_convs else []
    groups = [{"nodes": decode, "why": DECODE_WHY}]
    if head:
        groups.append({"nodes": head, "why": HEAD_WHY})
    taken = set(decode) | set(head)
    if config.stem_float:
        stem = [n for n in stem_nodes(proto) if n not in taken]
        groups.append({"nodes": stem, "why": STEM_WHY})
        taken |= set(stem)
    silu = silu_inputs(proto)
    readers: dict[str, list[str]] = {}
    for n in proto.graph.node:
        for i in n.input:
            readers.setdefault(i, []).append(n.name)
    for pat, why in zip(config.float_nodes, [*config.float_why, *[None] * len(config.float_nodes)]):
        hit = [n.name for n in proto.graph.node if n.name not in taken and re.search(pat, n.name)]
        # a float Conv keeps its SiLU float too: between a DequantizeLinear and a QuantizeLinear, ONNX Runtime's
        # optimizer (WeightBiasQuantization) would quantize its weights itself, per tensor (measured: worse than INT8)
        acts = [r for n in proto.graph.node if n.name in hit and n.op_type == "Conv" and n.output[0] in silu
                for r in readers[n.output[0]] if r not in taken and r not in hit]
        groups.append({"nodes": hit + acts, "why": (why or f"--keep-float {pat!r}") + (FLOAT_SILU_WHY if acts else "")})
        hit += acts
        taken |= set(hit)
    return [g for g in groups if g["nodes"]]


def float_nodes(proto, config: QuantConfig) -> tuple[list[str], list[str]]:
    """(decode nodes, every node kept float)."""
    decode = decode_nodes(proto, with_head_convs=config.float_head_convs)
    exclude = [n for g in float_layers(proto, config) for n in g["nodes"]]
    return decode, exclude


def weight_rounding(w: np.ndarray, per_channel: bool, reduce_range: bool) -> np.ndarray:
    """`w` as ONNX Runtime's quantizer rounds it: symmetric S8 (7-bit with reduce_range), one scale per output channel
    (or per tensor), scale = max|w| / qmax."""
    qmax = 64 if reduce_range else 127
    axes = tuple(range(1, w.ndim)) if per_channel else None
    amax = np.abs(w).max(axis=axes, keepdims=per_channel)
    scale = np.where(amax > 0, amax / qmax, 1.0)
    return np.clip(np.round(w / scale), -qmax, qmax) * scale


def correct_biases(proto, stats: RangeStats, exclude: set[str], config: QuantConfig) -> int:
    """Bias correction, in place on `proto`: for every Conv the quantizer will quantize, bias -= (W_q - W) . E[x]
    (summed over the kernel window; E[x] per input channel from `stats`). A Conv without a bias gets one. Returns
    how many convs were corrected."""
    from onnx import numpy_helper

    inits = {i.name: i for i in proto.graph.initializer}
    done = 0
    for n in proto.graph.node:
        if n.op_type != "Conv" or n.name in exclude or n.input[0] not in stats.mean or n.input[1] not in inits:
            continue
        w = numpy_helper.to_array(inits[n.input[1]]).astype(np.float64)
        mean = np.asarray(stats.mean[n.input[0]], np.float64)
        group = next((a.i for a in n.attribute if a.name == "group"), 1)
        dw = (weight_rounding(w, config.per_channel, config.reduce_range) - w).sum(axis=(2, 3))  # (O, I / group)
        per = dw.shape[0] // group
        shift = np.concatenate([dw[g * per:(g + 1) * per] @ mean[g * dw.shape[1]:(g + 1) * dw.shape[1]]
                                for g in range(group)])
        if len(n.input) > 2 and n.input[2] in inits:
            b = numpy_helper.to_array(inits[n.input[2]]).astype(np.float64)
            inits[n.input[2]].CopyFrom(numpy_helper.from_array((b - shift).astype(np.float32), n.input[2]))
        else:
            name = f"{n.name}.bias_correction"
            proto.graph.initializer.append(numpy_helper.from_array((-shift).astype(np.float32), name))
            del n.input[2:]
            n.input.append(name)
        done += 1
    return done


def calibrate(proto, arrays: Callable[[], Iterable[np.ndarray]], config: QuantConfig,
              threads: int | None = None) -> RangeStats:
    """Range statistics of every tensor the quantizer may touch (`config.ops`), from the calibration images; with
    GPTQ rounding, also each conv's input Hessian."""
    from .rounding import conv_hessians

    stats = collect_stats(proto, candidate_tensors(proto, config.ops), arrays, threads=threads)
    if config.weight_rounding == "gptq":
        stats.hessians = conv_hessians(proto, arrays, threads=threads)
    return stats


def quantize_ptq(fp32_onnx: str | Path, out: str | Path, arrays: Iterable[np.ndarray] | Callable,
                 config: QuantConfig = QuantConfig(), stats: RangeStats | None = None,
                 threads: int | None = None, proto=None) -> Path:
    """Calibrate `fp32_onnx` on `arrays` (letterboxed inputs; an iterable or a factory of iterables) and write
    the Q/DQ model to `out`. `stats` (from `calibrate`) skips the calibration passes; `proto` (from `prepare`)
    the pre-processing."""
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    if config.target not in TARGETS:
        raise CldetError(f"unknown target {config.target!r}; choose one of {', '.join(TARGETS)}.")
    if config.method not in CALIB_METHODS:
        raise CldetError(f"unknown calibration method {config.method!r}; choose one of {', '.join(CALIB_METHODS)}.")
    if config.weight_rounding not in WEIGHT_ROUNDINGS:
        raise CldetError(f"unknown weight rounding {config.weight_rounding!r}; choose one of "
                         f"{', '.join(WEIGHT_ROUNDINGS)}.")
    if config.weight_rounding == "gptq" and config.bias_correction:
        raise CldetError("bias correction models nearest rounding; GPTQ already minimizes each conv's output error "
                         "(its mean included): use one or the other.")
    out = Path(out)
    if not callable(arrays):
        kept = list(arrays)
        arrays = lambda: iter(kept)  # noqa: E731 - two calibration passes read them
    proto = proto if proto is not None else prepare(fp32_onnx, out.parent)
    decode, exclude = float_nodes(proto, config)
    if stats is None:
        stats = calibrate(proto, arrays, config, threads)
    elif config.weight_rounding == "gptq" and stats.hessians is None:  # ranges from a nearest-rounding calibration
        from .rounding import conv_hessians

        stats.hessians = conv_hessians(proto, arrays, threads=threads)
    ranges = compute_ranges(stats, config.method, config.target == "tensorrt", config.percentile,
                            silu=silu_inputs(proto) if config.silu_ranges else frozenset())
    extra = {"WeightSymmetric": True, "ActivationSymmetric": config.target == "tensorrt",
             "QDQKeepRemovableActivations": False,
             # the ranges computed above, for every tensor (see cldet.export.ranges for why not ORT's calibrators)
             "TensorQuantOverrides": {t: [{"rmin": np.float32(lo), "rmax": np.float32(hi)}]
                                      for t, (lo, hi) in ranges.items()}}
    if config.target == "tensorrt":  # Q/DQ on Conv inputs only: TensorRT fuses Conv+SiLU and places the rest itself
        extra["OpTypesToExcludeOutputQuantization"] = list(config.ops)
        extra["QuantizeBias"] = False  # TensorRT's parser rejects INT32 DequantizeLinear; biases stay float
    pre = out.with_name(f".{out.stem}.pre.onnx")
    tmp = out.with_name(f".{out.name}.tmp")
    if config.bias_correction:
        corrected = onnx.ModelProto()
        corrected.CopyFrom(proto)  # the caller's graph serves further variants (auto's tries) unchanged
        n = correct_biases(corrected, stats, set(exclude), config)
        log.debug("bias correction: %d convs", n)
        proto = corrected
    onnx.save(proto, str(pre))
    try:
        quantize_static(
            str(pre), str(tmp), _Reader(itertools.islice(arrays(), 1)),  # ranges come from the overrides
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(config.ops),
            per_channel=config.per_channel,
            reduce_range=config.reduce_range,
            activation_type=QuantType.QInt8 if config.target == "tensorrt" else QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=exclude,
            extra_options=extra,
        )
    finally:
        pre.unlink(missing_ok=True)
        for aux in out.parent.glob("augmented_model*.onnx"):
            aux.unlink(missing_ok=True)
    q = onnx.load(str(tmp))
    if config.weight_rounding == "gptq":
        from .rounding import apply_gptq

        n = apply_gptq(q, proto, stats.hessians, qmax=64 if config.reduce_range else 127, cache=stats.rounded)
        log.debug("GPTQ weight rounding: %d convs", n)
    if config.target == "tensorrt":
        _dq_to_conv_only(q)
    _check_no_quantized_decode(q, decode)
    import json

    from .onnx_export import save_checked

    return save_checked(q, tmp, out, {"quantization": json.dumps(config.as_dict())})


def qdq_report(path: str | Path) -> dict:
    """Counts that say how a Q/DQ model is quantized (used in tests and the manifest)."""
    import onnx

    proto = onnx.load(str(path))
    ops = [n.op_type for n in proto.graph.node]
    inits = {i.name: i for i in proto.graph.initializer}
    act_types = set()
    for n in proto.graph.node:
        if n.op_type == "QuantizeLinear" and len(n.input) > 2 and n.input[2] in inits:
            act_types.add(onnx.helper.tensor_dtype_to_np_dtype(inits[n.input[2]].data_type).name)
    return {"QuantizeLinear": ops.count("QuantizeLinear"), "DequantizeLinear": ops.count("DequantizeLinear"),
            "Conv": ops.count("Conv"), "activation_types": sorted(act_types)}
