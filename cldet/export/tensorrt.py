"""TensorRT engine builds with TensorRT's own Python builder, TensorRT 10 and 11. THIN LAYER.

This is the only module that touches the `tensorrt` package; it is imported lazily, so the host (no GPU) and
the board share this code. Which ONNX goes to the builder, with which flags and shapes, is decided by
`engine_plan` (pure, tested here); `build_engine` only hands that plan to TensorRT.

  int8: the symmetric S8 Q/DQ ONNX (`--target tensorrt`): explicit quantization, the Q/DQ nodes say what runs
        in INT8. TensorRT 10 (weakly typed): BuilderFlag.INT8 lets the builder use them and BuilderFlag.FP16
        lets the unquantized layers (the float decode) run in FP16. TensorRT 11: strongly typed, the precision
        flags and implicit INT8 calibration are gone; the Q/DQ nodes still define INT8.
  fp16: TensorRT 10: the FP32 ONNX with BuilderFlag.FP16 (the builder picks FP16 kernels); TensorRT 11 (strongly
        typed): the FP16 ONNX as it is (float32 I/O, FP16 inside).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import ArtifactError, CldetError, MissingRuntimeError
from ..core.files import atomic_path

__all__ = ["EnginePlan", "engine_plan", "build_engine", "tensorrt_available", "PRECISIONS"]

PRECISIONS = ("int8", "fp16")


def tensorrt_available() -> bool:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass(frozen=True)
class EnginePlan:
    """One engine build: what goes in, what comes out, with which builder settings."""

    precision: str  # int8 | fp16
    onnx: Path  # the ONNX handed to the parser
    engine: Path
    imgsz: int
    input_name: str = "images"
    max_batch: int = 8
    workspace_gb: float = 2.0
    major: int = 10  # TensorRT major version (10: weakly typed + precision flags; 11: strongly typed)

    @property
    def strongly_typed(self) -> bool:
        return self.major >= 11

    @property
    def flags(self) -> tuple[str, ...]:
        """BuilderFlag names set on the config (none when strongly typed)."""
        if self.strongly_typed:
            return ()
        return ("INT8", "FP16") if self.precision == "int8" else ("FP16",)

    def shapes(self) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        s = self.imgsz
        return (1, 3, s, s), (1, 3, s, s), (self.max_batch, 3, s, s)

    def trtexec(self) -> str:
        """The trtexec command line that builds the same engine."""
        mn, opt, mx = ("x".join(map(str, d)) for d in self.shapes())
        prec = "--stronglyTyped" if self.strongly_typed else " ".join(f"--{f.lower()}" for f in self.flags)
        return (f"trtexec --onnx={self.onnx} --saveEngine={self.engine} --minShapes={self.input_name}:{mn} "
                f"--optShapes={self.input_name}:{opt} --maxShapes={self.input_name}:{mx} "
                f"--memPoolSize=workspace:{int(self.workspace_gb * 1024)}M {prec}")

    def as_dict(self) -> dict:
        return {"precision": self.precision, "onnx": self.onnx.name, "engine": self.engine.name,
                "tensorrt_major": self.major, "strongly_typed": self.strongly_typed, "builder_flags": list(self.flags),
                "shapes": {k: list(v) for k, v in zip(("min", "opt", "max"), self.shapes())},
                "workspace_gb": self.workspace_gb, "trtexec": self.trtexec()}


def _input(onnx_path: Path) -> tuple[str, int]:
    import onnx

    inp = onnx.load(str(onnx_path), load_external_data=False).graph.input[0]
    return inp.name, int(inp.type.tensor_type.shape.dim[2].dim_value)


def engine_plan(precision: str, out: Path, int8_onnx: Path | None = None, fp32_onnx: Path | None = None,
                fp16_onnx: Path | None = None, major: int = 10, max_batch: int = 8,
                workspace_gb: float = 2.0) -> EnginePlan:
    """The build of `model.<precision>.engine` in `out` from the export's ONNX files, for TensorRT `major`."""
    if precision not in PRECISIONS:
        raise CldetError(f"unknown engine precision {precision!r}; choose one of {', '.join(PRECISIONS)}.")
    if precision == "int8":
        src = int8_onnx
    else:
        src = fp16_onnx if major >= 11 else fp32_onnx
    if src is None or not Path(src).is_file():
        raise CldetError(f"the {precision} engine needs {src or 'an ONNX file'}; export it first.")
    name, imgsz = _input(Path(src))
    return EnginePlan(precision, Path(src), Path(out) / f"model.{precision}.engine", imgsz, name, max_batch,
                      workspace_gb, major)


def build_engine(plan: EnginePlan, log_path: str | Path | None = None) -> Path:
    """Build and serialize the engine of `plan` with TensorRT's Python builder; writes a build log next to it.

    Raises MissingRuntimeError (with the equivalent trtexec command) where the tensorrt package is absent and
    ArtifactError when the parser or the builder rejects the model.
    """
    try:
        import tensorrt as trt
    except ImportError:
        raise MissingRuntimeError(
            "TensorRT (python package `tensorrt`) is not installed here; build the engine on the board with "
            "`cldet export --engine`, or there with trtexec:\n  " + plan.trtexec()) from None
    major = int(trt.__version__.split(".")[0])
    if major != plan.major:  # the plan was made for another TensorRT: same inputs, the installed version's rules
        from dataclasses import replace

        plan = replace(plan, major=major)
    log_path = Path(log_path) if log_path else plan.engine.with_suffix(".build.log")
    lines: list[str] = [f"tensorrt {trt.__version__}; {plan.precision} engine {plan.engine} from {plan.onnx}",
                        f"equivalent: {plan.trtexec()}"]

    class _Logger(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)

        def log(self, severity, msg):  # noqa: D401 - TensorRT callback
            lines.append(f"[{getattr(severity, 'name', severity)}] {msg}")

    logger = _Logger()
    builder = trt.Builder(logger)
    strongly = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    flags = (1 << int(strongly)) if (plan.strongly_typed and strongly is not None) else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    t0 = time.time()
    try:
        if not parser.parse_from_file(str(plan.onnx)):
            errs = [str(parser.get_error(i)) for i in range(parser.num_errors)]
            raise ArtifactError(f"TensorRT cannot parse {plan.onnx}: {'; '.join(errs) or 'unknown error'}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(plan.workspace_gb * (1 << 30)))
        for f in plan.flags:
            config.set_flag(getattr(trt.BuilderFlag, f))
        profile = builder.create_optimization_profile()
        profile.set_shape(plan.input_name, *plan.shapes())
        config.add_optimization_profile(profile)
        blob = builder.build_serialized_network(network, config)
        if blob is None:
            raise ArtifactError(f"TensorRT failed to build an engine from {plan.onnx}; see {log_path}.")
        with atomic_path(plan.engine) as tmp:
            tmp.write_bytes(bytes(blob))
        lines.append(f"built in {time.time() - t0:.1f} s, {plan.engine.stat().st_size} bytes")
    finally:
        log_path.write_text("\n".join(lines) + "\n")
    return plan.engine
