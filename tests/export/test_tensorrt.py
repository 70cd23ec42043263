"""The TensorRT path: which ONNX goes to TensorRT's builder with which flags (plans), the refusal of --engine with
--target cpu, the manifest's engine plans and trtexec commands where TensorRT is absent, the builder calls against a
stand-in `tensorrt` module, and a real build on the board (marked jetson)."""

from __future__ import annotations

import importlib.util
import json
import sys
import types
from pathlib import Path

import pytest

from cldet.core.errors import CldetError, MissingRuntimeError
from cldet.export.tensorrt import build_engine, engine_plan

HAS_TRT = importlib.util.find_spec("tensorrt") is not None


@pytest.fixture(scope="module")
def trt_export(tiny_run, tmp_path_factory) -> dict:
    """`--engine --fp16` with no --target: the INT8 ONNX in the TensorRT form, plans in the manifest."""
    from cldet.export.pipeline import ExportOptions, export_run

    out = tmp_path_factory.mktemp("trt") / "o"
    err = None
    try:
        export_run(tiny_run, ExportOptions(out=out, engine=True, fp16=True, calib_images=4, eval_limit=2,
                                           progress=False, calib_method="minmax"))
    except MissingRuntimeError as e:
        err = e
    return {"out": out, "error": err, "manifest": json.loads((out / "manifest.json").read_text())}


def test_engine_without_target_writes_the_tensorrt_form(trt_export):
    from cldet.export.quantize import qdq_report

    m = trt_export["manifest"]
    assert m["artifacts"]["int8"]["target"] == "tensorrt"
    rep = qdq_report(trt_export["out"] / "model.int8.onnx")
    assert rep["activation_types"] == ["int8"]  # symmetric S8, what TensorRT's explicit quantization takes


def test_engine_plans_and_commands_in_the_manifest(trt_export):
    builds = trt_export["manifest"]["engine_builds"]
    assert set(builds) == {"model.int8.engine", "model.fp16.engine"}
    i8, f16 = builds["model.int8.engine"], builds["model.fp16.engine"]
    assert i8["onnx"] == "model.int8.onnx" and i8["source"] == "int8"
    assert f16["onnx"] == "model.fp32.onnx" and f16["source"] == "fp16"  # TensorRT 10: FP32 ONNX + FP16 flag
    assert i8["builder_flags"] == ["INT8", "FP16"] and f16["builder_flags"] == ["FP16"]
    assert i8["shapes"] == {"min": [1, 3, 64, 64], "opt": [1, 3, 64, 64], "max": [8, 3, 64, 64]}
    assert "--int8 --fp16" in i8["trtexec"] and "--onnx=" in i8["trtexec"] and "--saveEngine=" in i8["trtexec"]
    assert f16["trtexec"].endswith("--fp16") and "--int8" not in f16["trtexec"]


@pytest.mark.skipif(HAS_TRT, reason="tensorrt is installed here")
def test_missing_tensorrt_exits_6_with_the_commands(trt_export):
    e = trt_export["error"]
    assert isinstance(e, MissingRuntimeError) and e.exit_code == 6
    msg = str(e)
    assert "model.int8.engine" in msg and "model.fp16.engine" in msg and "trtexec --onnx=" in msg
    assert not list(trt_export["out"].glob("*.engine"))


def test_engine_with_cpu_target_is_refused(tiny_run, tmp_path):
    from cldet.export.pipeline import ExportOptions, export_run

    with pytest.raises(CldetError, match="--target tensorrt") as e:
        export_run(tiny_run, ExportOptions(out=tmp_path / "o", engine=True, target="cpu", progress=False))
    assert e.value.exit_code == 2 and not (tmp_path / "o").exists()


def test_cli_engine_with_cpu_target_exits_2(tiny_run, tmp_path):
    from typer.testing import CliRunner

    from cldet.cli import app

    r = CliRunner().invoke(app, ["export", "--run", str(tiny_run), "--out", str(tmp_path / "o"), "--engine",
                                 "--target", "cpu"])
    assert r.exit_code == 2 and "--target tensorrt" in r.output


def test_plans_follow_the_tensorrt_version(trt_export):
    out = trt_export["out"]
    kw = dict(int8_onnx=out / "model.int8.onnx", fp32_onnx=out / "model.fp32.onnx", fp16_onnx=out / "model.fp16.onnx")
    p11 = engine_plan("fp16", out, major=11, **kw)
    assert p11.onnx.name == "model.fp16.onnx" and p11.flags == () and p11.trtexec().endswith("--stronglyTyped")
    assert engine_plan("int8", out, major=11, **kw).flags == ()
    with pytest.raises(CldetError, match="export it first"):
        engine_plan("int8", out, int8_onnx=None)
    assert "--stronglyTyped" in engine_plan("int8", out, major=11, **kw).trtexec()
    cmd10 = engine_plan("int8", out, major=10, **kw).trtexec()  # weakly typed: INT8 plus FP16 for the float layers
    assert "--int8" in cmd10 and "--fp16" in cmd10 and "--stronglyTyped" not in cmd10


def _stand_in_tensorrt(version: str, calls: list) -> types.ModuleType:
    """A `tensorrt` module that records what cldet asks of the builder (the real one needs a GPU)."""
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version

    class ILogger:
        def __init__(self): ...

    class Parser:
        def __init__(self, network, logger): ...
        num_errors = 0

        def parse_from_file(self, path):
            calls.append(("parse", Path(path).name))
            return True

    class Config:
        def set_memory_pool_limit(self, pool, size): calls.append(("workspace", size))
        def set_flag(self, flag): calls.append(("flag", flag))
        def add_optimization_profile(self, p): calls.append(("profile", p.shapes))

    class Profile:
        def set_shape(self, name, mn, opt, mx): self.shapes = (name, mn, opt, mx)

    class Builder:
        def __init__(self, logger): ...
        def create_network(self, flags): calls.append(("network_flags", flags)); return object()
        def create_builder_config(self): return Config()
        def create_optimization_profile(self): return Profile()
        def build_serialized_network(self, network, config): return b"engine-bytes"

    trt.ILogger, trt.OnnxParser, trt.Builder = ILogger, Parser, Builder
    trt.BuilderFlag = types.SimpleNamespace(INT8="INT8", FP16="FP16")
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE="WORKSPACE")
    trt.NetworkDefinitionCreationFlag = types.SimpleNamespace(STRONGLY_TYPED=1)
    return trt


@pytest.mark.parametrize("version", ["10.3.0", "11.0.0"])
def test_builder_calls(trt_export, tmp_path, monkeypatch, version):
    calls: list = []
    monkeypatch.setitem(sys.modules, "tensorrt", _stand_in_tensorrt(version, calls))
    out = trt_export["out"]
    plan = engine_plan("int8", tmp_path, int8_onnx=out / "model.int8.onnx", major=10)
    engine = build_engine(plan, log_path=tmp_path / "b.log")
    assert engine.read_bytes() == b"engine-bytes" and engine.name == "model.int8.engine"
    assert ("parse", "model.int8.onnx") in calls
    assert ("profile", ("images", (1, 3, 64, 64), (1, 3, 64, 64), (8, 3, 64, 64))) in calls
    flags = [c[1] for c in calls if c[0] == "flag"]
    net = [c[1] for c in calls if c[0] == "network_flags"][0]
    if version.startswith("10"):
        assert flags == ["INT8", "FP16"] and net == 0
    else:  # strongly typed: no precision flags, the network flag instead
        assert flags == [] and net == 1 << 1
    log = (tmp_path / "b.log").read_text()
    assert "equivalent: trtexec" in log and "built in" in log


@pytest.mark.jetson
@pytest.mark.skipif(not HAS_TRT, reason="needs TensorRT (a Jetson board or a GPU host)")
def test_build_engines_on_the_board(trt_export, tmp_path):
    out = trt_export["out"]
    for prec in ("int8", "fp16"):
        plan = engine_plan(prec, tmp_path, out / "model.int8.onnx", out / "model.fp32.onnx", out / "model.fp16.onnx",
                           major=int(__import__("tensorrt").__version__.split(".")[0]))
        engine = build_engine(plan, log_path=tmp_path / f"{prec}.log")
        assert engine.stat().st_size > 0 and "built in" in (tmp_path / f"{prec}.log").read_text()
