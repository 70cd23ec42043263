"""TensorRT engine build from a Q/DQ ONNX (explicit quantization), TensorRT 10 and 11. THIN LAYER.

This is the only module that touches the `tensorrt` package; it is imported lazily, so the host (no GPU) and
the board share this code. Everything around it (which ONNX, which shapes, where the log goes) is decided and
tested elsewhere.

  TensorRT 10: weakly typed network; INT8 comes from the Q/DQ nodes (BuilderFlag.INT8 lets the builder use
               them), BuilderFlag.FP16 lets the unquantized layers (the decode) fall back to FP16.
  TensorRT 11: strongly typed only; the precision builder flags and implicit INT8 calibrators are gone.
               Q/DQ nodes still define INT8; unquantized layers keep the ONNX's types (FP32 here).
"""

from __future__ import annotations

import time
from pathlib import Path

from ..core.errors import ArtifactError, MissingRuntimeError
from ..core.files import atomic_path

__all__ = ["build_engine", "trtexec_command"]


def _input_shape(onnx_path: Path) -> tuple[str, int]:
    import onnx

    inp = onnx.load(str(onnx_path), load_external_data=False).graph.input[0]
    dims = inp.type.tensor_type.shape.dim
    return inp.name, int(dims[2].dim_value)


def trtexec_command(onnx_path: str | Path, engine_path: str | Path, imgsz: int, max_batch: int = 8,
                    fp16_fallback: bool = True, workspace_gb: float = 2.0, major: int | None = None) -> str:
    """The trtexec command that builds the same engine (for boards where only the CLI tool is installed)."""
    shapes = (f"--minShapes=images:1x3x{imgsz}x{imgsz} --optShapes=images:1x3x{imgsz}x{imgsz} "
              f"--maxShapes=images:{max_batch}x3x{imgsz}x{imgsz}")
    ws = f"--memPoolSize=workspace:{int(workspace_gb * 1024)}M"
    prec = "--stronglyTyped" if (major or 11) >= 11 else ("--int8 --fp16" if fp16_fallback else "--int8")
    return f"trtexec --onnx={onnx_path} --saveEngine={engine_path} {shapes} {ws} {prec}"


def build_engine(onnx_path: str | Path, engine_path: str | Path, fp16_fallback: bool = True,
                 workspace_gb: float = 2.0, log_path: str | Path | None = None, max_batch: int = 8) -> Path:
    """Build and serialize a TensorRT engine for `onnx_path`; writes a build log next to it (or to `log_path`).

    Raises MissingRuntimeError (with the equivalent trtexec commands) where the tensorrt package is absent and
    ArtifactError when the parser or the builder rejects the model.
    """
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    name, imgsz = _input_shape(onnx_path)
    try:
        import tensorrt as trt
    except ImportError:
        raise MissingRuntimeError(
            "TensorRT (python package `tensorrt`) is not installed here; build the engine on the board with cldet, "
            "or there with trtexec:\n  TensorRT 11: "
            + trtexec_command(onnx_path, engine_path, imgsz, max_batch, fp16_fallback, workspace_gb, 11)
            + "\n  TensorRT 10: " + trtexec_command(onnx_path, engine_path, imgsz, max_batch, fp16_fallback,
                                                   workspace_gb, 10)
        ) from None
    log_path = Path(log_path) if log_path else engine_path.with_suffix(".build.log")
    major = int(trt.__version__.split(".")[0])
    lines: list[str] = [f"tensorrt {trt.__version__}; onnx {onnx_path}; engine {engine_path}"]

    class _Logger(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)

        def log(self, severity, msg):  # noqa: D401 - TensorRT callback
            lines.append(f"[{severity.name if hasattr(severity, 'name') else severity}] {msg}")

    logger = _Logger()
    builder = trt.Builder(logger)
    strongly = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    flags = (1 << int(strongly)) if (major >= 11 and strongly is not None) else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    t0 = time.time()
    try:
        if not parser.parse_from_file(str(onnx_path)):
            errs = [str(parser.get_error(i)) for i in range(parser.num_errors)]
            raise ArtifactError(f"TensorRT cannot parse {onnx_path}: {'; '.join(errs) or 'unknown error'}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
        if major < 11:  # weak typing: let the builder use the Q/DQ INT8 and FP16 for what is left float
            config.set_flag(trt.BuilderFlag.INT8)
            if fp16_fallback:
                config.set_flag(trt.BuilderFlag.FP16)
        elif fp16_fallback:
            lines.append("note: TensorRT 11 is strongly typed; unquantized layers run in the ONNX's FP32 types")
        profile = builder.create_optimization_profile()
        profile.set_shape(name, (1, 3, imgsz, imgsz), (1, 3, imgsz, imgsz), (max_batch, 3, imgsz, imgsz))
        config.add_optimization_profile(profile)
        blob = builder.build_serialized_network(network, config)
        if blob is None:
            raise ArtifactError(f"TensorRT failed to build an engine from {onnx_path}; see {log_path}.")
        with atomic_path(engine_path) as tmp:
            tmp.write_bytes(bytes(blob))
        lines.append(f"built in {time.time() - t0:.1f} s, {engine_path.stat().st_size} bytes")
    finally:
        log_path.write_text("\n".join(lines) + "\n")
    return engine_path
