"""The TensorRT runner's glue (named I/O tensors, shapes, buffers, batch slicing, errors) against a stand-in
`tensorrt` module and a numpy-backed CUDA runtime, so it is exercised on hosts without a GPU. Real TensorRT
runs are in test_runtime.py, marked `jetson`."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from cldet.deploy import trt_runner
from cldet.deploy.runtime import open_backend
from cldet.core.errors import ArtifactError

S, NC, A, MAXB = 32, 3, 21, 4


class FakeCuda:
    """Device memory = numpy byte buffers keyed by fake pointers."""

    def __init__(self) -> None:
        self.mem: dict[int, np.ndarray] = {}

    def malloc(self, nbytes: int) -> int:
        ptr = 0x1000 * (len(self.mem) + 1)
        self.mem[ptr] = np.zeros(nbytes, np.uint8)
        return ptr

    def free(self, ptr: int) -> None:
        self.mem.pop(ptr, None)

    def stream(self) -> int:
        return 7

    def h2d(self, dst: int, src: np.ndarray, stream: int) -> None:
        self.mem[dst][: src.nbytes] = np.frombuffer(src.tobytes(), np.uint8)

    def d2h(self, dst: np.ndarray, src: int, stream: int) -> None:
        dst.view(np.uint8).reshape(-1)[:] = self.mem[src][: dst.nbytes]

    def sync(self, stream: int) -> None:
        pass


def _fake_trt(cuda: FakeCuda, fixed_batch: int | None) -> types.ModuleType:
    trt = types.ModuleType("tensorrt")
    trt.__version__ = "10.3.0-fake"
    trt.TensorIOMode = types.SimpleNamespace(INPUT="in", OUTPUT="out")
    trt.DataType = types.SimpleNamespace(FLOAT="f32")
    trt.nptype = lambda dt: np.float32

    class Logger:
        WARNING = 2

        def __init__(self, level): ...

    class Context:
        def __init__(self):
            self.shape, self.addr = None, {}

        def set_input_shape(self, name, shape):
            self.shape = tuple(shape)
            return shape[0] <= (fixed_batch or MAXB)

        def get_tensor_shape(self, name):
            return (self.shape[0], 4 + NC, A)

        def set_tensor_address(self, name, ptr):
            self.addr[name] = ptr

        def execute_async_v3(self, stream):
            b = self.shape[0]
            x = cuda.mem[self.addr["images"]][: 4 * b * 3 * S * S].view(np.float32).reshape(b, 3, S, S)
            y = np.broadcast_to(x.mean(axis=(1, 2, 3))[:, None, None], (b, 4 + NC, A)).astype(np.float32)
            cuda.mem[self.addr["output0"]][: y.nbytes] = np.frombuffer(y.tobytes(), np.uint8)
            return True

    class Engine:
        num_io_tensors = 2

        def get_tensor_name(self, i):
            return ["images", "output0"][i]

        def get_tensor_mode(self, name):
            return "in" if name == "images" else "out"

        def get_tensor_shape(self, name):
            b = fixed_batch or -1
            return (b, 3, S, S) if name == "images" else (b, 4 + NC, A)

        def get_tensor_profile_shape(self, name, profile):
            return [(1, 3, S, S), (1, 3, S, S), (MAXB, 3, S, S)]

        def get_tensor_dtype(self, name):
            return "f32"

        def create_execution_context(self):
            return Context()

    class Runtime:
        def __init__(self, logger): ...

        def deserialize_cuda_engine(self, blob):
            return None if blob.startswith(b"bad") else Engine()

    trt.Logger, trt.Runtime = Logger, Runtime
    return trt


@pytest.fixture(params=[None, 1], ids=["dynamic", "fixed-batch-1"])
def engine(request, tmp_path, monkeypatch):
    cuda = FakeCuda()
    monkeypatch.setitem(sys.modules, "tensorrt", _fake_trt(cuda, request.param))
    monkeypatch.setattr(trt_runner, "CudaRuntime", lambda: cuda)
    path = tmp_path / "model.engine"
    path.write_bytes(b"engine")
    return path, request.param, cuda


def test_runner_binds_named_tensors_and_slices_batches(engine):
    path, fixed, cuda = engine
    be = open_backend(path)
    assert (be.imgsz, be.nc, be.batch) == (S, NC, fixed)
    assert be.name == "tensorrt[10.3.0-fake]" and be.providers == ["TensorRT"]
    x = np.random.default_rng(0).random((MAXB + 2, 3, S, S), dtype=np.float32)  # more than the profile allows
    y = be(x)
    assert y.shape == (MAXB + 2, 4 + NC, A) and y.dtype == np.float32
    np.testing.assert_allclose(y[:, 0, 0], x.mean(axis=(1, 2, 3)), rtol=1e-5)
    assert len(cuda.mem) == 2, "one input and one output buffer, reused across calls"


def test_engine_that_does_not_deserialize(tmp_path, monkeypatch):
    cuda = FakeCuda()
    monkeypatch.setitem(sys.modules, "tensorrt", _fake_trt(cuda, None))
    monkeypatch.setattr(trt_runner, "CudaRuntime", lambda: cuda)
    bad = tmp_path / "model.plan"
    bad.write_bytes(b"bad engine bytes")
    with pytest.raises(ArtifactError, match="rebuild it on this board") as e:
        open_backend(bad)
    assert e.value.exit_code == 5


def test_onnx_provider_flag_rejected_for_engines(engine):
    path, _, _ = engine
    with pytest.raises(Exception, match="TensorRT engine"):
        open_backend(path, provider="cpu")
