"""PTQ refinements: SiLU-aware ranges for pre-activations, bias correction of the weights' rounding, GPTQ rounding."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from cldet.export.ranges import collect_stats, compute_ranges, silu_inputs, silu_range  # noqa: E402


def _silu(x):
    return x / (1 + np.exp(-x))


def _conv_silu_graph(w: np.ndarray, b: np.ndarray, extra_consumer: bool = False):
    """images -> Conv(w, b) -> SiLU (Sigmoid + Mul) -> out [, conv output also read by an Add]."""
    from onnx import TensorProto, helper, numpy_helper

    o, i, k, _ = w.shape
    nodes = [helper.make_node("Conv", ["images", "w", "b"], ["c"], name="conv", pads=[k // 2] * 4),
             helper.make_node("Sigmoid", ["c"], ["s"], name="sig"),
             helper.make_node("Mul", ["c", "s"], ["out"], name="mul")]
    outs = [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, o, 8, 8])]
    if extra_consumer:
        nodes.append(helper.make_node("Add", ["c", "c"], ["twice"], name="add"))
        outs.append(helper.make_tensor_value_info("twice", TensorProto.FLOAT, [1, o, 8, 8]))
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, i, 8, 8])],
                          outs, [numpy_helper.from_array(w.astype(np.float32), "w"),
                                 numpy_helper.from_array(b.astype(np.float32), "b")])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_silu_inputs_only_when_the_silu_is_the_only_reader():
    w, b = np.ones((2, 3, 1, 1)), np.zeros(2)
    assert silu_inputs(_conv_silu_graph(w, b)) == {"c"}
    assert silu_inputs(_conv_silu_graph(w, b, extra_consumer=True)) == set()  # clipping would hurt the Add


def test_silu_range_clips_the_flat_negative_tail_and_lowers_the_error_after_the_silu():
    """Pre-activations of a BN-fused conv: most values within a few units, a long negative tail to -115."""
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 2, 200_000), rng.uniform(-115, -10, 20_000), [22.0]])
    lo, hi = float(x.min()), float(x.max())
    hist, _ = np.histogram(x, 2048, (lo, hi))
    a, b = silu_range(hist, lo, hi)
    assert -12 < a < -2 and 0 < b <= hi  # the flat part of the SiLU is given up, not the bend

    def err_after_silu(r0, r1):
        step = (r1 - r0) / 255
        q = np.clip(np.round((np.clip(x, r0, r1) - r0) / step), 0, 255) * step + r0
        return float(np.mean((_silu(q) - _silu(x)) ** 2))

    assert err_after_silu(a, b) < err_after_silu(lo, hi) / 4
    assert silu_range(hist, 0.0, hi) == (0.0, hi)  # nothing negative: unchanged


def test_compute_ranges_uses_the_silu_range_for_silu_inputs_only():
    rng = np.random.default_rng(1)
    w = rng.normal(0, 1, (4, 3, 1, 1))
    b = np.array([0.0, -40.0, 0.0, 0.0])  # one channel far in the negatives: a long flat tail
    xs = [rng.normal(0, 1, (1, 3, 8, 8)).astype(np.float32) for _ in range(20)]
    g = _conv_silu_graph(w, b)
    st = collect_stats(g, ["images", "c"], lambda: iter(xs))
    plain = compute_ranges(st, "minmax", symmetric=False)
    aware = compute_ranges(st, "minmax", symmetric=False, silu=silu_inputs(g))
    assert aware["images"] == plain["images"]
    assert plain["c"][0] < -30 and aware["c"][0] > plain["c"][0] / 3
    assert compute_ranges(st, "minmax", symmetric=True, silu={"c"})["c"][0] == -max(map(abs, plain["c"]))  # S8
    assert st.mean["c"].shape == (4,) and st.mean["c"][1] < -30  # per-channel means, for bias correction


def _quantize(tmp_path, monkeypatch, graph, xs, op_types=("Conv",), **cfg):
    from onnx import numpy_helper

    quantize = importlib.import_module("cldet.export.quantize")
    monkeypatch.setattr(quantize, "decode_nodes", lambda proto, with_head_convs=False: [])  # no detection head
    src = tmp_path / "g.onnx"
    onnx.save(graph, src)
    config = quantize.QuantConfig(op_types=op_types, float_head_convs=False, float_stem=False, **cfg)
    name = "_".join(f"{k}{v}" for k, v in cfg.items()) or "default"
    out = quantize.quantize_ptq(src, tmp_path / f"{name}.onnx", lambda: iter(xs), config)
    p = onnx.load(str(out))
    inits = {i.name: numpy_helper.to_array(i) for i in p.graph.initializer}
    return out, p, inits


def test_weight_rounding_is_onnx_runtimes(tmp_path, monkeypatch):
    """cldet's model of the weights' rounding (what bias correction corrects for) is what the quantizer writes."""
    from cldet.export.quantize import weight_rounding

    rng = np.random.default_rng(2)
    w = rng.normal(0, 1, (4, 3, 3, 3)) * np.array([1, 10, 0.01, 3])[:, None, None, None]
    xs = [rng.normal(0, 1, (1, 3, 8, 8)).astype(np.float32) for _ in range(4)]
    _, p, inits = _quantize(tmp_path, monkeypatch, _conv_silu_graph(w, np.zeros(4)), xs, bias_correction=False,
                            weight_rounding="nearest")
    dq = [n for n in p.graph.node if n.op_type == "DequantizeLinear" and inits.get(n.input[0]) is not None
          and inits[n.input[0]].ndim == 4][0]
    written = inits[dq.input[0]].astype(np.float64) * inits[dq.input[1]].astype(np.float64)[:, None, None, None]
    np.testing.assert_allclose(weight_rounding(w.astype(np.float32).astype(np.float64), True, False), written,
                               rtol=1e-6, atol=1e-9)


def test_bias_correction_removes_the_mean_shift_of_rounded_weights(tmp_path, monkeypatch):
    """Inputs with a large mean make the rounding's mean shift visible: after correction the quantized conv's mean
    output per channel matches the float conv's far better than without."""
    import onnxruntime as ort

    rng = np.random.default_rng(3)
    w = rng.normal(0, 1, (8, 16, 1, 1))
    w[:, 0] = 30.0  # one big weight per channel: a coarse scale for the rest
    xs = [(rng.normal(0, 0.2, (1, 16, 8, 8)) + 3.0).astype(np.float32) for _ in range(16)]
    g = _conv_silu_graph(w, np.zeros(8))
    fsess = ort.InferenceSession(g.SerializeToString(), providers=["CPUExecutionProvider"])
    ref = np.mean([fsess.run(None, {"images": x})[0] for x in xs], axis=(0, 1, 3, 4))

    def mean_out(**cfg):
        out, p, inits = _quantize(tmp_path, monkeypatch, g, xs, silu_ranges=False, **cfg)
        sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        return np.mean([sess.run(None, {"images": x})[0] for x in xs], axis=(0, 1, 3, 4)), p

    plain, _ = mean_out(bias_correction=False, weight_rounding="nearest")
    corrected, p = mean_out(bias_correction=True, weight_rounding="nearest")
    assert np.abs(corrected - ref).mean() < np.abs(plain - ref).mean() / 2
    assert any(n.op_type == "Conv" or n.op_type == "QLinearConv" for n in p.graph.node)
    meta = {m.key: m.value for m in p.metadata_props}
    assert '"bias_correction": true' in meta["quantization"]


def _chain_graph(rng):
    """images -> [Conv -> SiLU] x 3 -> out, convs named c0, c1, c2."""
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits, x = [], [], "images"
    for k in range(3):
        inits += [numpy_helper.from_array(rng.normal(0, 0.5, (4, 4, 3, 3)).astype(np.float32), f"w{k}"),
                  numpy_helper.from_array(np.zeros(4, np.float32), f"b{k}")]
        nodes += [helper.make_node("Conv", [x, f"w{k}", f"b{k}"], [f"y{k}"], name=f"c{k}", pads=[1] * 4),
                  helper.make_node("Sigmoid", [f"y{k}"], [f"s{k}"], name=f"sig{k}"),
                  helper.make_node("Mul", [f"y{k}", f"s{k}"], [f"a{k}" if k < 2 else "out"], name=f"mul{k}")]
        x = f"a{k}"
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 4, 8, 8])],
                          [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 4, 8, 8])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_a_conv_kept_float_stays_float_in_onnx_runtime(tmp_path, monkeypatch):
    """Between a DequantizeLinear and a QuantizeLinear, ONNX Runtime's optimizer quantizes a float Conv's weights
    itself (per tensor). A conv kept float therefore keeps its SiLU float too, and the session ONNX Runtime builds
    still holds its float weights."""
    import onnxruntime as ort
    from onnx import numpy_helper

    rng = np.random.default_rng(4)
    xs = [rng.normal(0, 1, (1, 4, 8, 8)).astype(np.float32) for _ in range(8)]
    out, p, _ = _quantize(tmp_path, monkeypatch, _chain_graph(rng), xs, op_types=("Conv", "Sigmoid", "Mul"),
                          float_nodes=("^c1$",))
    node = {n.name: n for n in p.graph.node}
    assert node["sig1"].input[0] == "y1" and node["sig0"].input[0] != "y0"  # c1's SiLU reads the float output
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    so.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(out), so, providers=["CPUExecutionProvider"])
    opt = onnx.load(str(tmp_path / "optimized.onnx"))
    inits = {i.name: numpy_helper.to_array(i) for i in opt.graph.initializer}
    c1 = next(n for n in opt.graph.node if n.name == "c1")
    assert c1.op_type == "Conv" and c1.input[1] in inits and inits[c1.input[1]].dtype == np.float32

    from cldet.export.quantize import QuantConfig, float_layers

    groups = float_layers(_chain_graph(np.random.default_rng(4)),
                          QuantConfig(float_nodes=("^c1$",), float_head_convs=False, float_stem=False))
    assert groups[-1]["nodes"] == ["c1", "sig1", "mul1"] and "per-tensor INT8" in groups[-1]["why"]


def _correlated_inputs(rng, n: int, channels: int, size: int = 8) -> list[np.ndarray]:
    """Inputs whose channels are strongly correlated (a few sources mixed), as a conv's inputs after a conv are."""
    mix = rng.normal(0, 1, (channels, 3))
    return [np.einsum("cs,shw->chw", mix, rng.normal(0, 1, (3, size, size)))[None].astype(np.float32)
            + rng.normal(0, 0.05, (1, channels, size, size)).astype(np.float32) for _ in range(n)]


def test_gptq_is_nearest_rounding_when_the_inputs_are_uncorrelated():
    """With a diagonal Hessian no column's rounding error can be compensated by another: GPTQ = nearest."""
    from cldet.export.rounding import gptq_round

    rng = np.random.default_rng(5)
    w = rng.normal(0, 1, (6, 4, 3, 3))
    s = np.abs(w).reshape(6, -1).max(1) / 127
    q = gptq_round(w, s, np.diag(rng.uniform(0.5, 2.0, 36)), damp=0.0)
    np.testing.assert_array_equal(q, np.clip(np.round(w / s[:, None, None, None]), -127, 127))


def test_gptq_lowers_the_output_error_on_correlated_inputs():
    from cldet.export.rounding import gptq_round

    rng = np.random.default_rng(6)
    w = rng.normal(0, 1, (8, 32, 1, 1))
    x = np.concatenate([a.reshape(32, -1) for a in _correlated_inputs(rng, 8, 32)], axis=1).astype(np.float64)
    s = np.abs(w).reshape(8, -1).max(1) / 127
    q = gptq_round(w, s, x @ x.T)
    assert q.min() >= -127 and q.max() <= 127 and q.dtype.kind == "i"
    near = np.clip(np.round(w / s[:, None, None, None]), -127, 127)

    def err(qw):
        return float(np.sum(((w - qw * s[:, None, None, None]).reshape(8, -1) @ x) ** 2))

    assert err(q) < 0.5 * err(near)
    assert np.abs(q - near).max() >= 1  # the values really moved


def test_conv_patches_reproduce_the_conv():
    """The Hessian's input patches are the ones the conv multiplies: W . patches == ONNX Runtime's Conv (stride 2,
    padding 1, 3x3)."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from cldet.export.rounding import _patches

    rng = np.random.default_rng(7)
    w = rng.normal(0, 1, (5, 3, 3, 3)).astype(np.float32)
    x = rng.normal(0, 1, (1, 3, 9, 9)).astype(np.float32)
    g = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"], name="c", pads=[1] * 4, strides=[2, 2])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 9, 9])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          [numpy_helper.from_array(w, "w")])
    y = ort.InferenceSession(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString(),
                             providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    p = _patches(x.astype(np.float64), (3, 3), {"pads": [1, 1, 1, 1], "strides": [2, 2]})
    np.testing.assert_allclose(w.reshape(5, -1) @ p, y.reshape(5, -1), rtol=1e-4, atol=1e-4)


def test_gptq_rounding_in_the_quantized_graph(tmp_path, monkeypatch):
    """`weight_rounding="gptq"` keeps the quantizer's scales and graph, changes only INT8 weight values, and brings
    the quantized conv's output closer to the float one than nearest rounding on correlated inputs."""
    import onnxruntime as ort

    rng = np.random.default_rng(8)
    w = rng.normal(0, 1, (8, 16, 3, 3))
    xs = _correlated_inputs(rng, 16, 16)
    src = _conv_silu_graph(w, np.zeros(8))
    ref = ort.InferenceSession(src.SerializeToString(), providers=["CPUExecutionProvider"])
    # the stem (a graph input's conv) is not GPTQ's: feed the conv from an identity so it reads an activation
    src.graph.node.insert(0, onnx.helper.make_node("Identity", ["images"], ["images_act"], name="id"))
    src.graph.node[1].input[0] = "images_act"
    runs = {}
    for rounding in ("nearest", "gptq"):
        out, p, inits = _quantize(tmp_path, monkeypatch, src, xs, weight_rounding=rounding)
        # the Q/DQ graph as written (optimizer off: DequantizeLinear, float Conv, QuantizeLinear): the host's integer
        # kernels differ (x86 without VNNI adds pairs of products in 16 bits) and would measure the host, not rounding
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        sess = ort.InferenceSession(str(out), so, providers=["CPUExecutionProvider"])
        err = np.mean([np.mean((sess.run(None, {"images": x})[0] - ref.run(None, {"images": x})[0]) ** 2) for x in xs])
        wts = {k: v for k, v in inits.items() if v.dtype == np.int8 and v.ndim == 4}
        meta = {m.key: m.value for m in p.metadata_props}
        runs[rounding] = (err, wts, {k: v for k, v in inits.items() if v.dtype == np.float32}, meta, len(p.graph.node))
    (e_n, w_n, f_n, _, nodes_n), (e_g, w_g, f_g, meta, nodes_g) = runs["nearest"], runs["gptq"]
    assert nodes_n == nodes_g and w_n.keys() == w_g.keys() and len(w_g) == 1
    for k in f_n:  # scales, zero points, biases: untouched
        np.testing.assert_array_equal(f_n[k], f_g[k])
    assert any((w_n[k] != w_g[k]).any() for k in w_n)
    assert e_g < 0.9 * e_n, (e_g, e_n)  # measured 0.83x: the activations' own rounding error is in both
    assert '"weight_rounding": "gptq"' in meta["quantization"]


def test_gptq_and_bias_correction_are_alternatives(tmp_path, monkeypatch):
    from cldet.core.errors import CldetError

    rng = np.random.default_rng(9)
    with pytest.raises(CldetError, match="one or the other"):
        _quantize(tmp_path, monkeypatch, _conv_silu_graph(rng.normal(0, 1, (2, 3, 1, 1)), np.zeros(2)),
                  [rng.normal(0, 1, (1, 3, 8, 8)).astype(np.float32)], bias_correction=True)
