"""cldet export end to end on a tiny run: contract, Q/DQ placement, manifest, refusals, bad input."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest

from cldet.core.files import sha256_file
from cldet.core.errors import ArtifactError, DataError, RunError
from cldet.core.manifest import read_manifest

from .conftest import IMGSZ


def _consumers(proto):
    cons = {}
    for n in proto.graph.node:
        for i in n.input:
            cons.setdefault(i, []).append(n)
    return cons


def test_fp32_matches_pytorch(exported, tiny_run):
    from cldet.detector.model import load_checkpoint, torch_predict
    from cldet.deploy.runtime import open_backend

    model, _ = load_checkpoint(tiny_run / "model.pt")
    x = np.random.default_rng(0).random((2, 3, IMGSZ, IMGSZ), dtype=np.float32)
    ref = torch_predict(model)(x)
    got = open_backend(exported["out"] / "model.fp32.onnx", "cpu")(x)
    assert got.shape == ref.shape == (2, 4 + 13, 3 * 0 + (8 * 8 + 4 * 4 + 2 * 2))
    np.testing.assert_allclose(got[:, :4], ref[:, :4], atol=2e-3)  # box pixels
    np.testing.assert_allclose(got[:, 4:], ref[:, 4:], atol=1e-4)  # probabilities
    proto = onnx.load(str(exported["out"] / "model.fp32.onnx"))
    assert [i.name for i in proto.graph.input] == ["images"] and [o.name for o in proto.graph.output] == ["output0"]


def test_fp16_and_nms_variants(exported):
    from cldet.deploy.runtime import open_backend

    x = np.random.default_rng(1).random((1, 3, IMGSZ, IMGSZ), dtype=np.float32)
    f32 = open_backend(exported["out"] / "model.fp32.onnx", "cpu")(x)
    f16 = open_backend(exported["out"] / "model.fp16.onnx", "cpu")(x)
    assert f16.dtype == np.float32 and np.abs(f16[:, 4:] - f32[:, 4:]).max() < 1e-2
    import onnxruntime as ort

    sess = ort.InferenceSession(str(exported["out"] / "model.fp32.nms.onnx"), providers=["CPUExecutionProvider"])
    assert sess.run(None, {"images": x})[0].shape == (1, 300, 6)


def test_int8_qdq_placement_cpu(exported):
    from cldet.export.quantize import decode_nodes, qdq_report

    path = exported["out"] / "model.int8.onnx"
    rep = qdq_report(path)
    assert rep["QuantizeLinear"] > 50 and rep["DequantizeLinear"] > rep["QuantizeLinear"]
    assert rep["activation_types"] == ["uint8"]  # U8 activations for x86 VNNI
    proto = onnx.load(str(path))
    inits = {i.name: i for i in proto.graph.initializer}
    # per-channel weights: weight DQ scales are vectors
    weight_dq = [n for n in proto.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits
                 and len(inits[n.input[0]].dims) == 4]
    assert weight_dq and all(int(np.prod(inits[n.input[1]].dims)) > 1 for n in weight_dq)
    # the decode (DFL softmax, box arithmetic, class sigmoid, output concat) computes in float
    dec = set(decode_nodes(onnx.load(str(exported["out"] / "model.fp32.onnx"))))
    prod = {o: n for n in proto.graph.node for o in n.output}
    for n in proto.graph.node:
        if n.op_type == "QuantizeLinear" and n.input[0] in prod:
            assert prod[n.input[0]].name not in dec, f"decode node {prod[n.input[0]].name} quantized"
    out = proto.graph.output[0].name
    assert prod[out].op_type == "Concat" and prod[out].name in dec
    assert any(n.op_type == "Softmax" and n.name in dec for n in proto.graph.node)


def test_int8_tensorrt_target_is_symmetric_conv_only(exported, tmp_path):
    from cldet.export.quantize import QuantConfig, qdq_report, quantize_ptq

    arrays = [np.random.default_rng(i).random((1, 3, IMGSZ, IMGSZ), dtype=np.float32) for i in range(3)]
    out = quantize_ptq(exported["out"] / "model.fp32.onnx", tmp_path / "trt.onnx", arrays,
                       QuantConfig(target="tensorrt", method="minmax"))
    assert qdq_report(out)["activation_types"] == ["int8"]
    proto = onnx.load(str(out))
    cons = _consumers(proto)
    inits = {i.name for i in proto.graph.initializer}
    for n in proto.graph.node:
        if n.op_type == "DequantizeLinear" and n.input[0] not in inits:
            kinds = {c.op_type for c in cons.get(n.output[0], [])}
            assert kinds == {"Conv"}, (n.name, kinds)
    int32 = [i.name for i in proto.graph.initializer if i.data_type == onnx.TensorProto.INT32]
    assert not int32, f"TensorRT cannot parse INT32 DequantizeLinear (biases): {int32[:3]}"
    zps = [i for i in proto.graph.initializer if i.name.endswith("zero_point")]
    assert all(not np.any(onnx.numpy_helper.to_array(z)) for z in zps)  # symmetric: zero points 0


def test_manifest_verifies(exported):
    out = exported["out"]
    m = read_manifest(out / "manifest.json")
    assert m.classes and m.imgsz == IMGSZ
    assert set(m.groups) == {"step0", "step1", "all"} and len(m.groups["step0"]) == 6
    for key, a in m.artifacts.items():
        assert sha256_file(out / a["file"]) == a["sha256"], key
    for key in ("fp32", "fp16", "int8"):
        assert set(m.artifacts[key]["metrics"]) == {"step0", "step1", "all"}
        assert 0.0 <= m.artifacts[key]["metrics"]["all"]["map50_95"] <= 1.0
    assert m.artifacts["int8"]["precision"] == "int8" and m.artifacts["int8"]["target"] == "cpu"
    cal = m.raw["calibration"]
    assert cal["images"] == 6 and cal["method"] == "minmax" and set(cal["covered"]) | set(cal["missing"]) == set(m.classes)
    assert m.raw["eval"]["images"] == 4 and m.raw["run"]["lineage_increments"] == 2
    assert not list(out.glob(".*"))  # no staging leftovers


def test_refuses_to_overwrite(exported, tiny_run):
    from cldet.export.pipeline import ExportOptions, export_run

    before = sha256_file(exported["out"] / "model.int8.onnx")
    with pytest.raises(RunError, match="--force"):
        export_run(tiny_run, ExportOptions(out=exported["out"], progress=False))
    assert sha256_file(exported["out"] / "model.int8.onnx") == before


def test_run_without_lineage(tmp_path, tiny_run):
    from cldet.export.pipeline import ExportOptions, export_run

    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(tiny_run / "model.pt", run / "model.pt")
    with pytest.raises(RunError, match="lineage.json"):
        export_run(run, ExportOptions(progress=False))


def test_calibration_on_eval_images_is_refused(tiny_run, tmp_path, mini_yaml):
    from cldet.export.pipeline import ExportOptions, export_run

    val = mini_yaml.parent / "valid" / "images"
    with pytest.raises(DataError, match="also evaluation images"):
        export_run(tiny_run, ExportOptions(out=tmp_path / "o", calib=val, progress=False, eval_limit=2))
    assert not (tmp_path / "o" / "model.fp32.onnx").exists()


def test_empty_calibration_folder(tiny_run, tmp_path):
    from cldet.export.pipeline import ExportOptions, export_run

    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty"):
        export_run(tiny_run, ExportOptions(out=tmp_path / "o", calib=tmp_path / "empty", progress=False))


def test_checker_failure_names_the_file(tmp_path, exported):
    from cldet.export.onnx_export import check_onnx

    bad = tmp_path / "bad.onnx"
    proto = onnx.load(str(exported["out"] / "model.fp32.onnx"))
    proto.graph.node[3].input[0] = "no_such_tensor"
    onnx.save(proto, str(bad))
    with pytest.raises(ArtifactError, match="bad.onnx"):
        check_onnx(bad)


def test_qat_weights_land_on_the_int8_grid(tiny_run):
    from cldet.detector.model import load_checkpoint
    from cldet.export.qat import QATConfig, _quant_convs, qat_finetune

    model, _ = load_checkpoint(tiny_run / "model.pt")
    arrays = [np.random.default_rng(i).random((1, 3, IMGSZ, IMGSZ), dtype=np.float32) for i in range(4)]
    student, stats = qat_finetune(model, arrays, QATConfig(epochs=1, batch=2, lr=1e-4), progress=False)
    assert stats["steps"] == 2 and stats["quantized_convs"] > 50
    w = _quant_convs(student)[5].weight.detach()
    scale = w.abs().amax(dim=(1, 2, 3), keepdim=True) / 127
    q = w / scale
    assert np.allclose(q.numpy(), np.round(q.numpy()), atol=1e-3)
    head = student.model[-1]
    assert not hasattr(head.cv3[0][-1], "parametrizations")  # last class conv stays plain float


def test_cli_help_stays_light():
    import subprocess
    import sys

    code = ("import sys, cldet.cli; bad=[m for m in ('torch','onnx','ultralytics','onnxruntime') if m in sys.modules];"
            "print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout


def test_cli_refusal_exit_code(exported, tiny_run):
    from typer.testing import CliRunner

    from cldet.cli import app

    r = CliRunner().invoke(app, ["export", "--run", str(tiny_run), "--out", str(exported["out"])])
    assert r.exit_code == RunError.exit_code
    assert "--force" in r.output


def test_manifest_json_is_plain(exported):
    raw = json.loads((exported["out"] / "manifest.json").read_text())
    assert raw["format"] == "cldet-manifest/1" and raw["input"]["name"] == "images"


def test_cli_help_lists_the_flags():
    from typer.testing import CliRunner

    from cldet.cli import app

    r = CliRunner().invoke(app, ["export", "--help"], terminal_width=200)
    assert r.exit_code == 0
    for flag in ("--int8", "--target", "--calib-method", "--engine", "--fp16", "--nms", "--data", "--force"):
        assert flag in r.output


def test_keep_float_leaves_named_layers_unquantized(exported, tmp_path):
    from cldet.export.quantize import QuantConfig, quantize_ptq

    arrays = [np.random.default_rng(i).random((1, 3, IMGSZ, IMGSZ), dtype=np.float32) for i in range(2)]
    out = quantize_ptq(exported["out"] / "model.fp32.onnx", tmp_path / "kf.onnx", arrays,
                       QuantConfig(method="minmax", float_nodes=(r"^/model\.0/",)))
    proto = onnx.load(str(out))
    prod = {o: n for n in proto.graph.node for o in n.output}
    first = [n for n in proto.graph.node if n.op_type == "Conv" and n.name.startswith("/model.0/")]
    assert first and all(prod.get(first[0].input[1]) is None or prod[first[0].input[1]].op_type != "DequantizeLinear"
                         for _ in [0])
    later = [n for n in proto.graph.node if n.op_type == "Conv" and n.name.startswith("/model.1/")]
    assert prod[later[0].input[1]].op_type == "DequantizeLinear"


def test_onnxruntime_runs_the_int8_graph_in_integer_kernels(exported, tmp_path):
    """No fallback: after ORT's graph optimizer, every quantized Conv/Concat/Add became a QLinear kernel; the only
    float Convs left are the head's last convs and the stem conv (kept float on purpose, see quantize.STEM_WHY)."""
    import collections

    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    so.optimized_model_filepath = str(tmp_path / "opt.onnx")
    ort.InferenceSession(str(exported["out"] / "model.int8.onnx"), so, providers=["CPUExecutionProvider"])
    ops = collections.Counter(n.op_type for n in onnx.load(str(tmp_path / "opt.onnx")).graph.node)
    assert ops["QLinearConv"] > 60 and ops["QLinearConcat"] > 5 and ops["QLinearAdd"] > 0
    assert ops["Conv"] == 3 * 2 + 1, ops  # per level: last box conv + last class conv; plus the stem conv
    assert ops.get("MatMul") == 1, ops  # the DFL integral (softmax on the last axis, then a (16, 1) MatMul)


def test_qat_export_end_to_end(tiny_run, tmp_path):
    from cldet.export.pipeline import ExportOptions, export_run
    from cldet.export.quantize import qdq_report

    out = tmp_path / "qat"
    m = export_run(tiny_run, ExportOptions(out=out, int8="qat", qat_epochs=1, qat_images=6, calib_images=4,
                                           eval_limit=2, progress=False, calib_method="minmax"))
    q = m["calibration"]["qat"]
    assert m["calibration"]["mode"] == "qat" and q["train_images"] == 6 and q["steps"] == 1
    assert m["calibration"]["weight_rounding"] == "nearest"  # fine-tuned through nearest rounding
    assert qdq_report(out / "model.int8.onnx")["QuantizeLinear"] > 50


def test_manifest_names_the_float_layers_and_why(exported):
    cal = exported["manifest"]["calibration"]
    stem = [g for g in cal["float_layers"] if g["why"].startswith("reads the image")]
    assert stem and stem[0]["nodes"] == ["/model.0/conv/Conv"], cal["float_layers"]
    assert any("decode" in g["why"] for g in cal["float_layers"]) and len(cal["float_layers"]) >= 3
    assert cal["mode"] == "auto" and cal["auto"]["chosen"] == "ptq"  # random head: PTQ and FP32 agree


def test_auto_runs_qat_when_ptq_drifts_past_the_tolerance(tiny_run, tmp_path, monkeypatch):
    """A negative tolerance makes any PTQ fail the gate: auto must fine-tune with QAT and record both drifts. The
    calibration images are letterboxed once, and the ranges measured once for the PTQ export, every float-conv
    try and QAT (which fine-tunes for the Q/DQ graph of those ranges and is exported with them)."""
    import importlib

    from cldet.export.pipeline import ExportOptions, export_run

    # (cldet.export is also the API function, so the modules are looked up by name)
    pipeline, quantize = (importlib.import_module(f"cldet.export.{m}") for m in ("pipeline", "quantize"))
    import cldet.calib.reader as reader

    passes = {"images": 0, "stats": 0}

    def counted(fn, key):
        def wrapped(*a, **k):
            passes[key] += 1
            return fn(*a, **k)
        return wrapped

    monkeypatch.setattr(pipeline, "calibration_arrays", counted(pipeline.calibration_arrays, "images"))
    monkeypatch.setattr(reader, "calibration_arrays", counted(reader.calibration_arrays, "images"))
    monkeypatch.setattr(quantize, "collect_stats", counted(quantize.collect_stats, "stats"))
    m = export_run(tiny_run, ExportOptions(out=tmp_path / "o", drift_tolerance=-1.0, qat_epochs=1, qat_images=6,
                                           calib_images=4, eval_limit=2, progress=False, calib_method="minmax"))
    auto = m["calibration"]["auto"]
    assert auto["tolerance"] == -1.0 and "qat_worst_loss" in auto and auto["qat"]["steps"] >= 1
    assert auto["chosen"] in ("ptq", "ptq-float", "qat")
    # every sensitivity step was tried (the tolerance cannot be met), then QAT; the least loss was kept
    assert [t["float_convs"] for t in auto["tries"]] == [2, 4, 8] and len(auto["sensitivity"]) == 8
    losses = {"ptq": auto["ptq_worst_loss"], "qat": auto["qat_worst_loss"],
              **{f"float{t['float_convs']}": t["worst_loss"] for t in auto["tries"]}}
    kept = "qat" if auto["chosen"] == "qat" else f"float{auto['float_convs']}" if auto["chosen"] == "ptq-float" else "ptq"
    assert auto["worst_loss"] == losses[kept] == min(losses.values())
    if auto["chosen"] == "ptq-float":  # the manifest names the convs kept float and why
        assert any("sensitive" in g["why"] for g in m["calibration"]["float_layers"])
    assert "ptq_worst_drift" in auto and "qat_worst_drift" in auto  # |drift| recorded beside the losses
    assert passes == {"images": 2, "stats": 1}  # the calibration images and the QAT training images; one calibration
    assert auto["qat"]["fake_quant"].startswith("the export's Q/DQ graph")


def test_auto_counts_losses_not_gains():
    """INT8 above FP32 on a group has lost nothing: the worst loss is the largest FP32 - INT8, |drift| the largest
    absolute difference."""
    from cldet.export.pipeline import worst_drift, worst_loss

    fp32 = {"step0": {"map50_95": 0.75}, "step1": {"map50_95": 0.70}}
    int8 = {"step0": {"map50_95": 0.77}, "step1": {"map50_95": 0.697}}
    assert worst_loss(fp32, int8) == pytest.approx(0.3) and worst_drift(fp32, int8) == pytest.approx(2.0)
    gains = {"step0": {"map50_95": 0.76}, "step1": {"map50_95": 0.71}}
    assert worst_loss(fp32, gains) == pytest.approx(-1.0)
    empty = {"step0": {"map50_95": float("nan")}, "step1": {"map50_95": 0.697}}  # a group with no objects
    assert worst_loss(fp32 | {"step0": {"map50_95": float("nan")}}, empty) == pytest.approx(0.3)


def test_default_int8_weights_are_gptq_rounded(exported):
    """The default export's INT8 weights sit on the quantizer's per-channel scales but are GPTQ's values, not each
    float weight's nearest level (the calibration images move some of them by a level or more)."""
    from onnx import numpy_helper

    assert exported["manifest"]["calibration"]["weight_rounding"] == "gptq"
    q = onnx.load(str(exported["out"] / "model.int8.onnx"))
    f = onnx.load(str(exported["out"] / "model.fp32.onnx"))
    fw = {i.name: numpy_helper.to_array(i) for i in f.graph.initializer}
    fconv = {n.name: fw[n.input[1]] for n in f.graph.node if n.op_type == "Conv"}
    qi = {i.name: numpy_helper.to_array(i) for i in q.graph.initializer}
    producer = {o: n for n in q.graph.node for o in n.output}
    moved = compared = 0
    for n in q.graph.node:
        dq = producer.get(n.input[1]) if n.op_type == "Conv" and len(n.input) > 1 else None
        if dq is None or dq.op_type != "DequantizeLinear" or n.name not in fconv:
            continue
        ints, scale = qi[dq.input[0]].astype(np.int64), qi[dq.input[1]].astype(np.float64)
        near = np.clip(np.round(fconv[n.name] / scale[:, None, None, None]), -127, 127)
        assert np.abs(ints - near).max() <= 127 and np.abs(ints).max() <= 127
        compared += 1
        moved += int((ints != near).any())
    assert compared > 50 and moved > compared // 2, (moved, compared)
