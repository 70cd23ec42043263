"""Native TensorRT engine runner (TensorRT 10 / 11 named-tensor API) — the board-only layer.

NOT exercised on the CPU development host (no GPU, no tensorrt there): the tests marked `jetson` run it
on a board. Kept thin on purpose: deserialize, bind named I/O tensors with `set_tensor_address`, run
`execute_async_v3` on one CUDA stream, copy the output back.

CUDA memory goes through `libcudart` via ctypes, because that library is in every JetPack 6 image
(l4t-jetpack, l4t-tensorrt) while pycuda / cuda-python are not; no extra wheel to build for aarch64.
`import tensorrt` happens only when an engine is opened; where it is missing the user gets
MissingRuntimeError (exit code 6) saying what to install or which runtime to use instead.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from pathlib import Path

import numpy as np

from ..core.errors import ArtifactError, CldetError, MissingRuntimeError
from .backend import run_in_slices

__all__ = ["TrtBackend", "CudaRuntime", "import_tensorrt", "tensorrt_version"]

_H2D, _D2H = 1, 2  # cudaMemcpyKind


def import_tensorrt():
    """The tensorrt module, or MissingRuntimeError with the way out."""
    try:
        import tensorrt as trt  # noqa: PLC0415 - lazy by design: the host has no TensorRT
    except ImportError as e:
        raise MissingRuntimeError(
            f"TensorRT Python bindings are not installed ({e}). On a Jetson use a JetPack 6 image "
            "(Dockerfile.jetson, base l4t-jetpack r36) or `apt install python3-libnvinfer`; elsewhere run the "
            ".onnx artifact with ONNX Runtime instead (`--artifact model.int8.onnx --provider cpu`)."
        ) from None
    return trt


def tensorrt_version() -> str | None:
    """Installed TensorRT version, None when absent (bench records it)."""
    try:
        import tensorrt as trt  # noqa: PLC0415
    except ImportError:
        return None
    return str(getattr(trt, "__version__", None))


class CudaRuntime:
    """The few libcudart calls the runner needs (malloc/free, async copies, a stream, memory info)."""

    _CANDIDATES = ("libcudart.so", "libcudart.so.12", "libcudart.so.13", "/usr/local/cuda/lib64/libcudart.so")

    def __init__(self) -> None:
        lib = None
        for name in filter(None, (ctypes.util.find_library("cudart"), *self._CANDIDATES)):
            try:
                lib = ctypes.CDLL(name)
                break
            except OSError:
                continue
        if lib is None:
            raise MissingRuntimeError(
                "libcudart (the CUDA runtime) was not found; TensorRT engines need a CUDA device. "
                "Run inside the JetPack image or add /usr/local/cuda/lib64 to LD_LIBRARY_PATH."
            )
        self.lib = lib
        lib.cudaGetErrorString.restype = ctypes.c_char_p
        lib.cudaMemcpyAsync.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_void_p]
        lib.cudaFree.argtypes = [ctypes.c_void_p]
        lib.cudaStreamSynchronize.argtypes = [ctypes.c_void_p]

    def _check(self, status: int, what: str) -> None:
        if status != 0:
            msg = self.lib.cudaGetErrorString(status).decode(errors="replace")
            raise CldetError(f"CUDA {what} failed: {msg} (error {status}).")

    def malloc(self, nbytes: int) -> int:
        ptr = ctypes.c_void_p()
        self._check(self.lib.cudaMalloc(ctypes.byref(ptr), ctypes.c_size_t(nbytes)), f"cudaMalloc({nbytes})")
        return int(ptr.value)

    def free(self, ptr: int) -> None:
        if ptr:
            self.lib.cudaFree(ctypes.c_void_p(ptr))

    def stream(self) -> int:
        s = ctypes.c_void_p()
        self._check(self.lib.cudaStreamCreate(ctypes.byref(s)), "cudaStreamCreate")
        return int(s.value or 0)

    def h2d(self, dst: int, src: np.ndarray, stream: int) -> None:
        self._check(self.lib.cudaMemcpyAsync(dst, src.ctypes.data, src.nbytes, _H2D, stream), "copy to device")

    def d2h(self, dst: np.ndarray, src: int, stream: int) -> None:
        self._check(self.lib.cudaMemcpyAsync(dst.ctypes.data, src, dst.nbytes, _D2H, stream), "copy to host")

    def sync(self, stream: int) -> None:
        self._check(self.lib.cudaStreamSynchronize(stream), "cudaStreamSynchronize")

    def mem_info(self) -> tuple[int, int]:
        """(free, total) device bytes."""
        free, total = ctypes.c_size_t(), ctypes.c_size_t()
        self._check(self.lib.cudaMemGetInfo(ctypes.byref(free), ctypes.byref(total)), "cudaMemGetInfo")
        return int(free.value), int(total.value)


class TrtBackend:
    """A deserialized TensorRT engine behind the Backend interface (one input, output0 = (B, 4 + nc, A))."""

    def __init__(self, artifact: Path) -> None:
        trt = import_tensorrt()
        self.trt = trt
        self.artifact = Path(artifact)
        self.cuda = CudaRuntime()
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        engine = self._runtime.deserialize_cuda_engine(self.artifact.read_bytes())
        if engine is None:
            raise ArtifactError(
                f"{self.artifact}: TensorRT {trt.__version__} cannot deserialize it: the file is corrupt, or it "
                "was built by another TensorRT version or for another GPU. Engines are not portable: rebuild it "
                "on this board (`cldet export --engine`, or trtexec --onnx=model.int8.onnx --saveEngine=...)."
            )
        self.engine = engine
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        ins = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(ins) != 1 or not outs:
            raise ArtifactError(f"{self.artifact}: expected one input and an output, found inputs {ins}, outputs {outs}.")
        self.input_name = ins[0]
        self.output_name = "output0" if "output0" in outs else outs[0]
        self.other_outputs = [n for n in outs if n != self.output_name]
        ishape = tuple(engine.get_tensor_shape(self.input_name))
        oshape = tuple(engine.get_tensor_shape(self.output_name))
        if len(ishape) != 4 or ishape[2] != ishape[3] or ishape[2] <= 0 or len(oshape) != 3 or oshape[1] <= 4:
            raise ArtifactError(f"{self.artifact}: I/O shapes {ishape} -> {oshape} are not (B,3,S,S) -> (B,4+nc,A).")
        self.imgsz: int = int(ishape[2])
        self.nc: int = int(oshape[1]) - 4
        self.batch: int | None = int(ishape[0]) if ishape[0] > 0 else None
        self.max_batch: int = self.batch or int(engine.get_tensor_profile_shape(self.input_name, 0)[2][0])
        self.in_dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(self.input_name)))
        self.out_dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(self.output_name)))
        self.context = engine.create_execution_context()
        self.stream = self.cuda.stream()
        self._bufs: dict[str, tuple[int, int]] = {}  # name -> (device ptr, bytes)
        self.name = f"tensorrt[{trt.__version__}]"
        self.providers = ["TensorRT"]

    def _buffer(self, name: str, nbytes: int) -> int:
        ptr, size = self._bufs.get(name, (0, 0))
        if size < nbytes:
            self.cuda.free(ptr)
            ptr, size = self.cuda.malloc(nbytes), nbytes
            self._bufs[name] = (ptr, size)
        return ptr

    def _run(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=self.in_dtype)
        if not self.context.set_input_shape(self.input_name, x.shape):
            raise CldetError(f"{self.artifact.name}: TensorRT refused input shape {x.shape} (profile max batch {self.max_batch}).")
        d_in = self._buffer(self.input_name, x.nbytes)
        self.context.set_tensor_address(self.input_name, d_in)
        outs = {}
        for name in [self.output_name, *self.other_outputs]:
            shape = tuple(self.context.get_tensor_shape(name))
            dtype = self.out_dtype if name == self.output_name else np.dtype(self.trt.nptype(self.engine.get_tensor_dtype(name)))
            outs[name] = np.empty(shape, dtype)
            self.context.set_tensor_address(name, self._buffer(name, max(outs[name].nbytes, 1)))
        self.cuda.h2d(d_in, x, self.stream)
        if not self.context.execute_async_v3(self.stream):
            raise CldetError(f"{self.artifact.name}: TensorRT execution failed (see the TensorRT log above).")
        y = outs[self.output_name]
        self.cuda.d2h(y, self._bufs[self.output_name][0], self.stream)
        self.cuda.sync(self.stream)
        return y.astype(np.float32, copy=False)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Run a batch; batches above the engine's (maximum) batch size go in slices."""
        step = self.batch or self.max_batch
        if len(x) == step or (self.batch is None and len(x) <= step):
            return self._run(x)
        return run_in_slices(self._run, np.asarray(x, np.float32), step, pad=self.batch is not None)

    def __del__(self) -> None:  # device buffers go back with the backend
        for ptr, _ in getattr(self, "_bufs", {}).values():
            try:
                self.cuda.free(ptr)
            except Exception:  # noqa: BLE001 - interpreter shutdown
                pass
