"""open_backend: ONNX Runtime sessions in the model I/O contract, fixed-batch slicing, clear errors."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from cldet.deploy.runtime import available_providers, open_backend
from cldet.core.errors import ArtifactError, CldetError, MissingRuntimeError

from .assets import CLASSES, IMGSZ


def _x(b: int) -> np.ndarray:
    return np.random.default_rng(0).random((b, 3, IMGSZ, IMGSZ), dtype=np.float32)


def test_onnx_backend_contract(assets):
    be = open_backend(assets.fp32, provider="cpu", threads=1)
    assert (be.imgsz, be.nc, be.batch) == (IMGSZ, len(CLASSES), None)
    assert be.providers == ["CPUExecutionProvider"] and be.name == "onnxruntime[CPU]"
    y = be(_x(2))
    assert y.dtype == np.float32 and y.shape[:2] == (2, 4 + len(CLASSES))
    assert ((y[:, 4:] >= 0) & (y[:, 4:] <= 1)).all(), "class scores are probabilities"


def test_fixed_batch_artifact_is_fed_in_slices(assets):
    dyn, fixed = open_backend(assets.fp32, "cpu", 1), open_backend(assets.fp32_b1, "cpu", 1)
    assert fixed.batch == 1
    x = _x(3)
    np.testing.assert_allclose(fixed(x), dyn(x), rtol=1e-4, atol=1e-3)


def test_int8_backend_runs(assets):
    be = open_backend(assets.int8, "auto", 1)
    assert be.nc == len(CLASSES) and be(_x(1)).shape[0] == 1


@pytest.mark.parametrize("provider", ["cuda", "tensorrt"])
def test_missing_provider_is_an_error_not_a_fallback(assets, provider):
    if provider in available_providers():
        pytest.skip(f"{provider} provider installed here")
    with pytest.raises(MissingRuntimeError, match="--provider cpu") as e:
        open_backend(assets.int8, provider=provider)
    assert e.value.exit_code == 6


def test_unknown_provider(assets):
    with pytest.raises(CldetError, match="unknown provider"):
        open_backend(assets.int8, provider="npu")


@pytest.mark.parametrize("content", [b"", b"not an onnx model at all", "truncated"])
def test_corrupt_onnx(assets, tmp_path, content):
    bad = tmp_path / "model.int8.onnx"
    bad.write_bytes(assets.int8.read_bytes()[:5000] if content == "truncated" else content)
    with pytest.raises(ArtifactError, match="model.int8.onnx") as e:
        open_backend(bad)
    assert e.value.exit_code == 5


def test_unknown_suffix_and_missing_file(tmp_path):
    (tmp_path / "m.tflite").write_bytes(b"x")
    with pytest.raises(ArtifactError, match="unknown artifact type"):
        open_backend(tmp_path / "m.tflite")
    with pytest.raises(ArtifactError, match="does not exist"):
        open_backend(tmp_path / "nope.onnx")


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="tensorrt is installed here")
def test_engine_without_tensorrt_says_what_to_do(tmp_path):
    eng = tmp_path / "model.engine"
    eng.write_bytes(b"\0" * 64)
    with pytest.raises(MissingRuntimeError, match="TensorRT") as e:
        open_backend(eng)
    assert e.value.exit_code == 6


@pytest.mark.jetson
def test_tensorrt_engine_matches_onnxruntime(int8_onnx, tmp_path):
    """On a board: build an engine from the INT8 Q/DQ ONNX and compare it with ONNX Runtime's output."""
    trt = pytest.importorskip("tensorrt", reason="needs TensorRT (a Jetson or a GPU host)")
    build = pytest.importorskip("cldet.export.tensorrt", reason="needs the export stage's engine builder").build_engine
    eng = build(int8_onnx, tmp_path / "model.engine")
    be = open_backend(eng)
    ref = open_backend(int8_onnx, "cpu")
    assert be.name.startswith("tensorrt") and (be.nc, be.imgsz) == (ref.nc, ref.imgsz), trt.__version__
    x = np.random.default_rng(0).random((2, 3, ref.imgsz, ref.imgsz), dtype=np.float32)
    got, want = be(x), ref(x)
    assert got.shape == want.shape
    assert np.abs(got[:, 4:] - want[:, 4:]).mean() < 0.02, "class scores: TensorRT INT8/FP16 vs ORT INT8"


@pytest.mark.jetson
def test_corrupt_engine(tmp_path):
    pytest.importorskip("tensorrt", reason="needs TensorRT")
    eng = tmp_path / "model.engine"
    eng.write_bytes(b"garbage" * 100)
    with pytest.raises(ArtifactError, match="cannot deserialize"):
        open_backend(eng)
