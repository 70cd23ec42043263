"""Calibration ranges: one statistics pass, methods that really differ (entropy was min-max in disguise), and the
ranges reaching the Q/DQ graph."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")

from cldet.export.ranges import collect_stats, compute_ranges, kl_threshold  # noqa: E402


def _tiny_graph():
    """images -> Conv(1x1, 3->4) -> Relu -> out: two calibrated tensors (conv in/out) with a long-tailed output."""
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1]], np.float32)[:, :, None, None], "w")
    nodes = [helper.make_node("Conv", ["images", "w"], ["c"], name="conv"),
             helper.make_node("Relu", ["c"], ["out"], name="relu")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 8, 8])],
                          [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 4, 8, 8])], [w])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def _inputs(n=20, seed=0):
    rng = np.random.default_rng(seed)
    xs = [rng.normal(0, 1, (1, 3, 8, 8)).astype(np.float32) for _ in range(n)]
    xs[3][0, 0, 0, 0] = 40.0  # one outlier: min-max keeps it, percentile and entropy clip it
    return xs


def test_stats_and_methods_differ():
    xs = _inputs()
    st = collect_stats(_tiny_graph(), ["images", "c"], lambda: iter(xs))
    assert st.images == 20 and st.hi["images"] == pytest.approx(40.0)
    assert st.hist["c"].sum() == 20 * 4 * 64 and st.abs_hist["images"].sum() == 20 * 3 * 64
    mm = compute_ranges(st, "minmax", symmetric=False)
    pc = compute_ranges(st, "percentile", symmetric=False, percentile=99.9)
    en = compute_ranges(st, "entropy", symmetric=False)
    assert mm["images"][1] == pytest.approx(40.0)
    assert pc["images"][1] < 10 and en["images"][1] < 10  # the outlier is clipped, unlike min-max
    assert en["images"] != mm["images"] and en["images"] != pc["images"]
    s8 = compute_ranges(st, "entropy", symmetric=True)
    assert s8["images"][0] == -s8["images"][1] and 2 < s8["images"][1] < 10


def test_ranges_grow_across_images():
    """The histogram grows when later images go past the first image's range (one pass, no rescan)."""
    xs = [np.full((1, 3, 8, 8), 0.5, np.float32), np.full((1, 3, 8, 8), -3.0, np.float32),
          np.full((1, 3, 8, 8), 7.0, np.float32)]
    st = collect_stats(_tiny_graph(), ["images"], lambda: iter(xs))
    assert (st.lo["images"], st.hi["images"]) == (-3.0, 7.0)
    h = st.hist["images"]
    assert h.sum() == 3 * 192 and h[0] == 192 and h[-1] == 192


def test_kl_threshold_clips_a_long_tail():
    rng = np.random.default_rng(1)
    v = np.abs(np.concatenate([rng.normal(0, 1, 200_000), [60.0]]))
    h, _ = np.histogram(v, 2048, (0, 60))
    i = kl_threshold(h, 128)
    assert 128 <= i < 400  # about 4-7 sigma of a unit normal on a 0..60 axis, far below the outlier
    assert kl_threshold(np.zeros(2048), 128) == 2048  # nothing observed: keep everything


def test_quantized_graph_uses_the_computed_ranges(tmp_path, monkeypatch):
    """The ranges reach the Q/DQ nodes (TensorQuantOverrides), so entropy and min-max give different scales."""
    from onnx import numpy_helper

    from cldet.export.quantize import QuantConfig, quantize_ptq
    from cldet.export.ranges import collect_stats, compute_ranges

    src = tmp_path / "g.onnx"
    onnx.save(_tiny_graph(), src)
    xs = _inputs()
    scales = {}
    import importlib

    quantize = importlib.import_module("cldet.export.quantize")  # `cldet.export` is the API function (docs/api.md)
    monkeypatch.setattr(quantize, "decode_nodes", lambda proto, with_head_convs=False: [])  # no head
    for m in ("minmax", "entropy"):
        cfg = QuantConfig(method=m, op_types=("Conv",), float_head_convs=False, float_stem=False)
        out = quantize_ptq(src, tmp_path / f"{m}.onnx", lambda: iter(xs), cfg)
        p = onnx.load(str(out))
        inits = {i.name: numpy_helper.to_array(i) for i in p.graph.initializer}
        qn = [n for n in p.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == "images"][0]
        scales[m] = float(inits[qn.input[1]])
    st = collect_stats(_tiny_graph(), ["images"], lambda: iter(xs))
    lo, hi = compute_ranges(st, "minmax", False)["images"]
    assert scales["minmax"] == pytest.approx((hi - min(lo, 0)) / 255, rel=1e-3)
    assert scales["entropy"] < scales["minmax"] / 3
