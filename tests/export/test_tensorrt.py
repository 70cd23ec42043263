"""The TensorRT layer: a clear error with trtexec commands where TensorRT is absent; a real build on the board."""

from __future__ import annotations

import importlib.util

import pytest

from cldet.core.errors import MissingRuntimeError
from cldet.export.tensorrt import build_engine, trtexec_command

HAS_TRT = importlib.util.find_spec("tensorrt") is not None


@pytest.mark.skipif(HAS_TRT, reason="tensorrt is installed here")
def test_missing_tensorrt_says_what_to_run(exported, tmp_path):
    onnx_path = exported["out"] / "model.int8.onnx"
    with pytest.raises(MissingRuntimeError) as e:
        build_engine(onnx_path, tmp_path / "m.engine")
    msg = str(e.value)
    assert "trtexec --onnx=" in msg and "--stronglyTyped" in msg and "--int8 --fp16" in msg
    assert str(onnx_path) in msg and "images:8x3x64x64" in msg
    assert not (tmp_path / "m.engine").exists()


def test_trtexec_command_by_version():
    assert "--stronglyTyped" in trtexec_command("a.onnx", "a.engine", 320, major=11)
    cmd10 = trtexec_command("a.onnx", "a.engine", 320, major=10, fp16_fallback=False)
    assert "--int8" in cmd10 and "--fp16" not in cmd10 and "--stronglyTyped" not in cmd10


@pytest.mark.jetson
@pytest.mark.skipif(not HAS_TRT, reason="needs TensorRT (a Jetson board or a GPU host)")
def test_build_engine_from_qdq(exported, tmp_path):
    engine = build_engine(exported["out"] / "model.int8.onnx", tmp_path / "m.engine", log_path=tmp_path / "b.log")
    assert engine.stat().st_size > 0
    assert "built in" in (tmp_path / "b.log").read_text()


@pytest.mark.skipif(HAS_TRT, reason="tensorrt is installed here")
def test_export_engine_without_tensorrt_keeps_onnx_and_manifest(tiny_run, tmp_path):
    from cldet.export.pipeline import ExportOptions, export_run
    from cldet.core.manifest import read_manifest

    out = tmp_path / "o"
    with pytest.raises(MissingRuntimeError, match="trtexec"):
        export_run(tiny_run, ExportOptions(out=out, engine=True, target="tensorrt", calib_images=4, eval_limit=2,
                                           progress=False, calib_method="minmax"))
    m = read_manifest(out / "manifest.json")
    assert m.artifacts["int8"]["target"] == "tensorrt" and "engine" not in m.artifacts
    assert not (out / "model.int8.engine").exists()
