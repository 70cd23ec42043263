"""One inference interface over every runtime the board may have: `open_backend(artifact) -> Backend`.

Why one interface: `cldet check`, `cldet bench` and the export's host reference metrics must run the very
same pre/post-processing around whatever executes the graph, so a drift they report is the runtime's,
not ours. A Backend maps a float32 (B, 3, S, S) batch to the float32 (B, 4 + nc, A) output of the model
I/O contract (cldet.core.processing).

- `.onnx` -> ONNX Runtime, with the CPU, CUDA or TensorRT execution provider ("auto" takes the best
  one installed; naming a provider that is missing is an error, never a silent CPU fallback).
- `.engine` / `.plan` -> the native TensorRT runner (cldet.deploy.trt_runner; imports tensorrt lazily).

Torch-free: numpy and onnxruntime only.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..core.errors import ArtifactError, CldetError, MissingRuntimeError
from .backend import ENGINE_SUFFIXES, Backend, run_in_slices

__all__ = ["OrtBackend", "open_backend", "PROVIDERS", "available_providers"]

# cldet name -> ONNX Runtime execution provider, best first (what "auto" tries).
PROVIDERS: dict[str, str] = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}
def available_providers() -> list[str]:
    """cldet provider names that the installed onnxruntime offers, best first."""
    import onnxruntime as ort

    have = set(ort.get_available_providers())
    return [k for k, v in PROVIDERS.items() if v in have]


def _resolve_providers(provider: str, cache_dir: Path) -> list:
    """ORT provider list for a cldet provider name; MissingRuntimeError when the named one is not installed."""
    import onnxruntime as ort

    provider = provider.lower()
    if provider != "auto" and provider not in PROVIDERS:
        raise CldetError(f"unknown provider {provider!r}; choose one of auto, {', '.join(PROVIDERS)}.")
    have = available_providers()
    if provider == "auto":
        chosen = have or ["cpu"]
    elif provider in have:
        chosen = [provider] + (["cpu"] if provider != "cpu" else [])
    else:
        hint = {
            "tensorrt": "install onnxruntime-gpu built with TensorRT (JetPack: the Jetson onnxruntime-gpu wheel) "
            "or run the .engine with the native TensorRT runner",
            "cuda": "install onnxruntime-gpu matching your CUDA (on a Jetson: the JetPack build of onnxruntime-gpu)",
        }.get(provider, "reinstall onnxruntime")
        raise MissingRuntimeError(
            f"ONNX Runtime {ort.__version__} has no {PROVIDERS[provider]} (installed: "
            f"{', '.join(ort.get_available_providers())}); {hint}, or pass --provider cpu."
        )
    out: list = []
    for p in chosen:
        if p == "tensorrt":
            # Q/DQ graphs are built as explicit INT8; the engine is cached so the second run starts fast.
            cache_dir.mkdir(parents=True, exist_ok=True)
            out.append((PROVIDERS[p], {"trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache_dir),
                                        "trt_fp16_enable": True, "trt_int8_enable": False}))
        else:
            out.append(PROVIDERS[p])
    return out


def _dim(d) -> int | None:
    return d if isinstance(d, int) and d > 0 else None


class OrtBackend:
    """An ONNX Runtime session that follows the model I/O contract (input `images`, output `output0`)."""

    def __init__(self, artifact: Path, provider: str = "auto", threads: int | None = None) -> None:
        import onnxruntime as ort

        self.artifact = Path(artifact)
        cache = Path(os.environ.get("CLDET_TRT_CACHE", Path.home() / ".cache" / "cldet" / "trt"))
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if threads:
            opts.intra_op_num_threads = int(threads)
            opts.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(self.artifact), opts, providers=_resolve_providers(provider, cache))
        except CldetError:
            raise
        except Exception as e:  # noqa: BLE001 - ORT raises InvalidProtobuf, Fail, InvalidGraph, ...
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ArtifactError(
                f"{self.artifact}: ONNX Runtime cannot load it ({type(e).__name__}: {first[:300]}). "
                "The file is corrupt, truncated or not an ONNX model; re-run `cldet export` or copy it again."
            ) from None
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            raise ArtifactError(
                f"{self.artifact}: expected one (B, 3, S, S) input, found "
                f"{[(i.name, i.shape) for i in inputs]}; export it with `cldet export`."
            )
        self.input_name, self.output_name = inputs[0].name, outputs[0].name
        b, c, h, w = inputs[0].shape
        if _dim(c) not in (3, None) or _dim(h) is None or h != w:
            raise ArtifactError(f"{self.artifact}: input shape {inputs[0].shape} is not (B, 3, S, S) with a fixed S.")
        self.imgsz: int = int(h)
        self.batch: int | None = _dim(b)
        self.input_dtype = np.float16 if "float16" in inputs[0].type else np.float32
        self.providers: list[str] = list(self.session.get_providers())
        self.name = f"onnxruntime[{self.providers[0].replace('ExecutionProvider', '')}]"
        oshape = outputs[0].shape
        layout = self.session.get_modelmeta().custom_metadata_map.get("layout", "")
        if "max_det" in layout:
            raise ArtifactError(
                f"{self.artifact}: an in-graph NMS export ({layout}); cldet check/bench run the raw-output "
                "artifact (model.fp32.onnx / model.int8.onnx) and do NMS in the shared post-processing."
            )
        if len(oshape) != 3:
            raise ArtifactError(
                f"{self.artifact}: output {outputs[0].name} has shape {oshape}; cldet needs (B, 4 + nc, A) "
                "(raw decoded boxes and class scores, no in-graph NMS)."
            )
        nc = _dim(oshape[1])
        if nc is None:  # symbolic channel count: learn it from one dry run
            nc = int(self._run(np.zeros((self.batch or 1, 3, self.imgsz, self.imgsz), np.float32)).shape[1])
        self.nc: int = int(nc) - 4

    def _run(self, x: np.ndarray) -> np.ndarray:
        y = self.session.run([self.output_name], {self.input_name: x.astype(self.input_dtype, copy=False)})[0]
        return y.astype(np.float32, copy=False)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Run a batch; a fixed-batch artifact gets it in slices of its batch size (the tail zero-padded)."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim != 4 or x.shape[1:] != (3, self.imgsz, self.imgsz):
            raise CldetError(f"{self.artifact.name} takes (B, 3, {self.imgsz}, {self.imgsz}); got {x.shape}.")
        if self.batch is None or x.shape[0] == self.batch:
            return self._run(x)
        return run_in_slices(self._run, x, self.batch)

    def __repr__(self) -> str:
        return f"OrtBackend({self.artifact.name}, {self.name}, imgsz={self.imgsz}, nc={self.nc}, batch={self.batch})"


def open_backend(artifact: str | Path, provider: str = "auto", threads: int | None = None) -> Backend:
    """Open an artifact with the runtime its file type needs.

    provider: "auto" | "cpu" | "cuda" | "tensorrt" for ONNX files (ignored for TensorRT engines, which always
    run on the GPU they were built for). threads: CPU intra-op threads (None = runtime default).
    """
    artifact = Path(artifact)
    if not artifact.is_file():
        raise ArtifactError(f"artifact {artifact} does not exist.")
    if artifact.stat().st_size == 0:
        raise ArtifactError(f"artifact {artifact} is empty (interrupted copy or export?).")
    suffix = artifact.suffix.lower()
    if suffix in ENGINE_SUFFIXES:
        if provider.lower() not in ("auto", "tensorrt"):
            raise CldetError(f"{artifact.name} is a TensorRT engine; it runs only with --provider auto or tensorrt.")
        from .trt_runner import TrtBackend

        return TrtBackend(artifact)
    if suffix != ".onnx":
        raise ArtifactError(
            f"{artifact}: unknown artifact type {suffix!r}; cldet runs .onnx (ONNX Runtime) and "
            f"{', '.join(ENGINE_SUFFIXES)} (TensorRT engines)."
        )
    return OrtBackend(artifact, provider=provider, threads=threads)
