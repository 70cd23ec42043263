"""Activation ranges for INT8 calibration: statistics collected once, every method computed from them.

Why cldet computes the ranges itself instead of leaving it to `onnxruntime.quantization.quantize_static`:
ONNX Runtime's `quantize_static` does not forward `num_bins` / `num_quantized_bins` to its entropy calibrator,
which then runs with 128 histogram bins and 128 quantized bins: a single candidate threshold, the full range,
i.e. exactly min-max (cldet's results table showed identical minmax and entropy numbers because of this). Here:

  * one pass over the calibration images: min, max and a histogram (of x, and of |x| for symmetric S8) of
    every tensor ONNX Runtime will quantize, re-binned onto 2048 bins over the observed range;
  * `minmax`: the observed range; `percentile`: the range that keeps `percentile` % of the values (the cut
    split between both tails for U8, on |x| for S8); `entropy`: TensorRT's KL-divergence threshold search
    (the clipped, quantized distribution closest to the observed one), 256 levels for U8, 128 for |x| in S8.

A Conv output that only feeds a SiLU (x * sigmoid(x)) is quantized for the SiLU's sake: the U8 range is the one that
minimizes the squared error after the SiLU (`silu_range`), not of x itself. The pre-activations of a BN-fused conv
reach far into the negatives (-115 on a chess13 model) where the SiLU is flat at 0, so min-max spent most of the 256
levels there (a 0.54 step near 0, where the SiLU bends). Measured in docs/export.md.

Per channel, the mean of every 4-D tensor is kept too: PTQ's bias correction (cldet.export.quantize) needs the mean
input of each conv.

The ranges reach the quantizer as per-tensor `rmin`/`rmax` overrides (`TensorQuantOverrides`, a documented
`quantize_static` option), so the same statistics serve every quantization variant (sensitivity analysis
builds many) without another calibration pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np

__all__ = ["RangeStats", "collect_stats", "compute_ranges", "kl_threshold", "candidate_tensors", "silu_inputs",
           "silu_range", "BINS"]

BINS = 2048


def candidate_tensors(proto, op_types: Iterable[str]) -> list[str]:
    """Float activation tensors read or written by nodes of `op_types` (the set ONNX Runtime's calibrator picks)."""
    import onnx

    from onnx import TensorProto

    inferred = onnx.shape_inference.infer_shapes(proto)
    vi = {v.name: v for v in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]}
    inits = {i.name for i in proto.graph.initializer}
    ops = set(op_types)
    out: list[str] = []
    for n in proto.graph.node:
        if n.op_type not in ops:
            continue
        for t in [*n.input, *n.output]:
            v = vi.get(t)
            if (t and t not in inits and t not in out and v is not None
                    and v.type.tensor_type.elem_type in (TensorProto.FLOAT, TensorProto.FLOAT16)):
                out.append(t)
    return out


@dataclass
class RangeStats:
    """Per tensor: observed min and max, and a histogram over [min, max] (or of |x| over [0, amax])."""

    lo: dict[str, float] = field(default_factory=dict)
    hi: dict[str, float] = field(default_factory=dict)
    hist: dict[str, np.ndarray] = field(default_factory=dict)
    abs_hist: dict[str, np.ndarray] = field(default_factory=dict)
    mean: dict[str, np.ndarray] = field(default_factory=dict)  # per channel (axis 1), 4-D tensors only
    images: int = 0
    # per conv node: its input patches' sum x x^T (GPTQ weight rounding, cldet.export.rounding); None: not collected
    hessians: dict[str, np.ndarray] | None = None
    rounded: dict = field(default_factory=dict)  # GPTQ's integer weights per (node, scales), reused across variants

    @property
    def tensors(self) -> list[str]:
        return list(self.lo)


def _augmented_session(proto, tensors: list[str], threads: int | None):
    import onnx
    import onnxruntime as ort

    m = onnx.ModelProto()
    m.CopyFrom(proto)
    have = {o.name for o in m.graph.output}
    for t in tensors:
        if t not in have:
            m.graph.output.append(onnx.helper.make_empty_tensor_value_info(t))
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # the tensors as the graph names them
    if threads:
        so.intra_op_num_threads = threads
    sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return sess, [o.name for o in sess.get_outputs()]


class _Hist:
    """A fixed-width histogram that grows by whole bins when values fall outside it (halving its resolution when
    it passes 4 x BINS bins, or re-binning onto a coarser grid when the values land far outside), so one pass over
    the images suffices."""

    def __init__(self, v: np.ndarray, bins: int):
        lo, hi = float(v.min()), float(v.max())
        self.width = max(hi - lo, 1e-5 * max(1.0, abs(lo), abs(hi))) / bins  # finite bins on constant tensors
        self.lo, self.counts = lo, np.zeros(bins, np.int64)
        self.bins = bins
        self.add(v)

    @property
    def hi(self) -> float:
        return self.lo + self.width * len(self.counts)

    def add(self, v: np.ndarray) -> None:
        lo, hi = min(float(v.min()), self.lo), max(float(v.max()), self.hi)
        if (hi - lo) / self.width > 4 * self.bins:  # far outside: one coarser grid over the union, old counts moved
            width = (hi - lo) / self.bins * (1 + 1e-6)
            self.counts, self.lo, self.width = self.over(lo, lo + width * self.bins, self.bins), lo, width
        if lo < self.lo:
            k = int(np.ceil((self.lo - lo) / self.width))
            self.counts = np.concatenate([np.zeros(k, np.int64), self.counts])
            self.lo -= k * self.width
        if hi > self.hi:
            k = int(np.ceil((hi - self.hi) / self.width)) + 1
            self.counts = np.concatenate([self.counts, np.zeros(k, np.int64)])
        while len(self.counts) > 4 * self.bins:
            c = self.counts if len(self.counts) % 2 == 0 else np.append(self.counts, 0)
            self.counts, self.width = c.reshape(-1, 2).sum(1), self.width * 2
        self.counts += np.histogram(v, len(self.counts), (np.float64(self.lo), np.float64(self.hi)))[0]  # float64 edges

    def over(self, lo: float, hi: float, bins: int) -> np.ndarray:
        """The counts re-binned onto `bins` equal bins over [lo, hi] (each old bin assigned by its centre)."""
        centres = np.clip(self.lo + self.width * (np.arange(len(self.counts)) + 0.5), lo, hi)  # edge bins stay in
        return np.histogram(centres, bins, (lo, hi), weights=self.counts)[0].astype(np.int64)


def collect_stats(proto, tensors: list[str], arrays: Callable[[], Iterable[np.ndarray]] | Iterable[np.ndarray],
                  bins: int = BINS, threads: int | None = None) -> RangeStats:
    """One pass over the calibration inputs ((1, 3, S, S) arrays, or a factory of them): min, max and histograms
    of x and |x| for every tensor in `tensors`."""
    sess, names = _augmented_session(proto, tensors, threads)
    inp = sess.get_inputs()[0].name
    want = [names.index(t) for t in tensors]
    st = RangeStats()
    hs: dict[str, _Hist] = {}
    ha: dict[str, _Hist] = {}
    sums: dict[str, np.ndarray] = {}
    for x in (arrays() if callable(arrays) else arrays):
        outs = sess.run(None, {inp: x})
        st.images += 1
        for t, k in zip(tensors, want):
            if outs[k].ndim == 4:
                m = outs[k].mean(axis=(0, 2, 3), dtype=np.float64)
                sums[t] = sums[t] + m if t in sums else m
            v = outs[k].ravel()
            if t not in hs:
                hs[t], ha[t] = _Hist(v, bins), _Hist(np.abs(v), bins)
            else:
                hs[t].add(v)
                ha[t].add(np.abs(v))
            lo, hi = float(v.min()), float(v.max())
            st.lo[t] = min(st.lo.get(t, lo), lo)
            st.hi[t] = max(st.hi.get(t, hi), hi)
    st.mean = {t: v / st.images for t, v in sums.items()}
    for t in st.lo:
        lo, hi = st.lo[t], st.hi[t]
        tiny = 1e-5 * max(1.0, abs(lo), abs(hi))
        st.hist[t] = hs[t].over(lo, hi, bins) if hi - lo > tiny else np.zeros(bins, np.int64)
        amax = max(abs(lo), abs(hi))
        st.abs_hist[t] = ha[t].over(0.0, amax, bins) if amax > tiny else np.zeros(bins, np.int64)
    return st


def kl_threshold(hist: np.ndarray, levels: int, stride: int | None = None) -> int:
    """TensorRT's entropy calibration: the number of histogram bins i (levels <= i <= len(hist)) to keep so that
    the distribution clipped at bin i (outliers folded into its last bin), P, is closest in KL divergence to Q,
    the same slice without the outliers, merged into `levels` bins and spread back over its non-empty bins."""
    hist = np.asarray(hist, np.float64)
    n = len(hist)
    if n <= levels or hist.sum() == 0:
        return n
    stride = stride or max(1, (n - levels) // 128)
    tail = np.concatenate([np.cumsum(hist[::-1])[::-1], [0.0]])  # tail[i] = sum(hist[i:])
    best, best_i = np.inf, n
    for i in range(levels, n + 1, stride):
        sl = hist[:i]
        p = sl.copy()
        p[-1] += tail[i]
        idx = (np.arange(i) * levels) // i
        nz = sl > 0
        qsum = np.bincount(idx, weights=sl, minlength=levels)
        cnt = np.bincount(idx, weights=nz, minlength=levels)
        q = np.where(nz, qsum[idx] / np.maximum(cnt[idx], 1), 0.0)
        ps, qs = p.sum(), q.sum()
        if qs == 0:
            continue
        p, q = p / ps, q / qs
        m = p > 0
        qm = np.where(q[m] > 0, q[m], 1e-12)  # P mass where Q has none: heavily penalised
        kl = float(np.sum(p[m] * np.log(p[m] / qm)))
        if kl < best:
            best, best_i = kl, i
    return best_i


def silu_inputs(proto) -> set[str]:
    """Tensors whose only consumers are the Sigmoid and the Mul of one SiLU, x * sigmoid(x) (Ultralytics' Conv
    block: BN-fused conv -> SiLU)."""
    producer = {o: n for n in proto.graph.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in proto.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    out = set()
    for n in proto.graph.node:
        if n.op_type != "Mul" or len(n.input) != 2:
            continue
        for x, s in ((n.input[0], n.input[1]), (n.input[1], n.input[0])):
            sig = producer.get(s)
            if sig is not None and sig.op_type == "Sigmoid" and sig.input[0] == x \
                    and {id(c) for c in consumers.get(x, [])} == {id(sig), id(n)}:
                out.add(x)
    return out


def _silu(x: np.ndarray) -> np.ndarray:
    return x / (1.0 + np.exp(-x))


def silu_range(hist: np.ndarray, lo: float, hi: float, levels: int = 256) -> tuple[float, float]:
    """The U8 range [a, b] of a SiLU's input x (histogram `hist` over [lo, hi]) that minimizes the expected squared
    error of silu(quantized x): inside [a, b] the rounding error (step^2 / 12) times silu'(x)^2, outside it the
    clipping error silu(a or b) - silu(x). The lower end is searched on a geometric grid from -0.5 to lo (the SiLU
    is flat below about -8), the upper end between the 1e-7 and 1e-2 upper tail quantiles and hi."""
    w = np.asarray(hist, np.float64)
    if lo >= 0 or hi <= 0 or not w.any():
        return lo, hi
    n = len(w)
    c = lo + (hi - lo) * (np.arange(n) + 0.5) / n  # bin centres
    sig = 1.0 / (1.0 + np.exp(-c))
    slope2 = (sig * (1.0 + c * (1.0 - sig))) ** 2
    y = _silu(c)
    cands_a = np.unique(np.concatenate([[lo], -np.geomspace(0.5, max(-lo, 0.5), 48)]))
    cands_a = cands_a[cands_a >= lo]
    cdf = np.cumsum(w) / w.sum()
    cands_b = np.unique([hi, *(c[min(int(np.searchsorted(cdf, 1.0 - q)), n - 1)] for q in np.logspace(-7, -2, 24))])
    best, best_ab = np.inf, (lo, hi)
    for b in cands_b[cands_b > 0]:
        above = np.where(c > b, (_silu(np.float64(b)) - y) ** 2, 0.0)
        for a in cands_a:
            step2 = ((b - a) / (levels - 1)) ** 2
            err = np.where(c < a, (_silu(np.float64(a)) - y) ** 2, np.where(c > b, above, slope2 * step2 / 12.0))
            e = float(w @ err)
            if e < best:
                best, best_ab = e, (float(a), float(b))
    return best_ab


def compute_ranges(st: RangeStats, method: str, symmetric: bool, percentile: float = 99.999,
                   silu: set[str] | frozenset = frozenset()) -> dict[str, tuple[float, float]]:
    """(rmin, rmax) per tensor for `method` (minmax | percentile | entropy); symmetric: S8 around zero. Tensors in
    `silu` (inputs of a SiLU only, see `silu_inputs`) get `silu_range` instead (U8 only)."""
    out: dict[str, tuple[float, float]] = {}
    for t in st.tensors:
        lo, hi = st.lo[t], st.hi[t]
        amax = max(abs(lo), abs(hi))
        if t in silu and not symmetric and st.hist[t].any():
            out[t] = silu_range(st.hist[t], lo, hi)
            continue
        if method == "minmax" or not st.hist[t].any() or (symmetric and not st.abs_hist[t].any()):
            r = (-amax, amax) if symmetric else (lo, hi)
        elif symmetric:
            h = st.abs_hist[t]
            edges = np.linspace(0.0, amax, len(h) + 1)
            if method == "percentile":
                i = int(np.searchsorted(np.cumsum(h) / max(h.sum(), 1), percentile / 100.0)) + 1
            else:
                i = kl_threshold(h, 128)
            a = float(edges[min(i, len(h))])
            r = (-a, a)
        else:
            h = st.hist[t]
            edges = np.linspace(lo, hi, len(h) + 1)
            if method == "percentile":
                cdf = np.cumsum(h) / max(h.sum(), 1)
                cut = (100.0 - percentile) / 200.0
                il = int(np.searchsorted(cdf, cut))
                ir = int(np.searchsorted(cdf, 1.0 - cut)) + 1
                r = (float(edges[il]), float(edges[min(ir, len(h))]))
            else:
                i = kl_threshold(h, 256)
                r = (lo, float(edges[min(i, len(h))]))
        out[t] = (float(r[0]), float(r[1]))
    return out
