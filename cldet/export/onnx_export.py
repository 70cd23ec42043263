"""FP32 / FP16 ONNX export of a cldet model in the deploy I/O contract (see cldet.core.processing).

The Detect head runs in Ultralytics' export mode, so the graph ends in the box decode (DFL softmax,
anchor offsets, stride scaling) and the class sigmoid: output0 = (B, 4 + nc, A). Conv+BN are fused
first, as every runtime would do anyway; this keeps the FP32 graph identical to what INT8 quantizes.
"""

from __future__ import annotations

import copy
from pathlib import Path
from types import SimpleNamespace

from ..core.errors import ArtifactError

__all__ = ["export_onnx", "check_onnx", "to_fp16", "OPSET", "NMS_LAYOUT"]

OPSET = 17  # QuantizeLinear per-axis (13+) and what TensorRT 10/11 and ORT 1.17+ parse without surprises
NMS_LAYOUT = "(B, max_det, 6): x1, y1, x2, y2 in input pixels, score, class id; zero rows pad"


def check_onnx(path: str | Path) -> None:
    """`onnx.checker` with full shape inference; an ArtifactError naming the file when it fails."""
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as e:  # noqa: BLE001 - onnx raises ValidationError, InferenceError, ...
        raise ArtifactError(f"{path} fails onnx.checker ({type(e).__name__}: {str(e).splitlines()[0]}).") from None


def save_checked(proto, tmp: Path, path: Path, metadata: dict[str, str]) -> Path:
    """Set metadata (same-named keys replaced, others kept), save to `tmp`, pass onnx.checker, then rename to
    `path`: an artifact that fails the checker never takes the final name."""
    import onnx

    kept = [(p.key, p.value) for p in proto.metadata_props if p.key not in metadata]
    del proto.metadata_props[:]
    for k, v in [*kept, *metadata.items()]:
        p = proto.metadata_props.add()
        p.key, p.value = k, v
    onnx.save(proto, str(tmp))
    check_onnx(tmp)
    tmp.replace(path)
    return path


def _last_axis_dfl(dfl):
    """The DFL integral with its softmax over the last axis: the same numbers, but ONNX Runtime's Softmax is
    fast only on the innermost axis. Ultralytics' DFL takes the softmax over axis 1 of (B, 16, 4, A), which ORT
    runs through a transpose (measured: 1.9 ms of a 29 ms FP32 inference at 320 px, 0.3 ms on the last axis)."""
    from ultralytics.nn.modules.block import DFL

    class LastAxisDFL(DFL):
        def forward(self, x):
            b, _, a = x.shape
            p = x.view(b, 4, self.c1, a).transpose(2, 3).softmax(-1)  # (B, 4, A, c1)
            return (p @ self.conv.weight.view(self.c1, 1)).view(b, 4, a)  # expectation over the bins

    new = LastAxisDFL(dfl.c1)
    new.load_state_dict(dfl.state_dict())
    return new


def _export_model(model, nms: bool, conf: float, iou: float, max_det: int):
    """A deep copy of `model` fused and switched to export mode (the caller's model is left as it was)."""
    from ultralytics.nn.modules.block import DFL
    from ultralytics.nn.modules.head import Detect

    m = copy.deepcopy(model).float().cpu().eval()
    m = m.fuse() if hasattr(m, "fuse") else m
    for mod in m.modules():
        if isinstance(mod, Detect):
            mod.export, mod.format, mod.dynamic = True, "onnx", False
            if type(getattr(mod, "dfl", None)) is DFL:
                mod.dfl = _last_axis_dfl(mod.dfl)
    for p in m.parameters():
        p.requires_grad_(False)
    if nms:
        import torchvision.ops  # noqa: F401  (first import must not happen inside torch.onnx tracing)
        from ultralytics.engine.exporter import NMSModel

        args = SimpleNamespace(format="onnx", dynamic=False, batch=1, conf=conf, iou=iou, agnostic_nms=False,
                               max_det=max_det, opset=OPSET, quantize=None)
        m.task = getattr(m, "task", "detect")  # set on the copy; NMSModel reads it
        return NMSModel(m, args)
    return m


def export_onnx(
    model,
    path: str | Path,
    imgsz: int,
    batch: int = 1,
    dynamic_batch: bool = True,
    nms: bool = False,
    conf: float = 0.25,
    iou: float = 0.7,
    max_det: int = 300,
    simplify: bool = True,
) -> Path:
    """Export `model` (an Ultralytics DetectionModel) to `path`; returns the path.

    The batch dimension is dynamic by default (evaluation runs batches, the board batch 1); the NMS variant is
    fixed-batch because Ultralytics' in-graph NMS unrolls a loop over the batch.
    """
    import onnx
    import torch
    from ultralytics.utils.export.engine import torch2onnx

    path = Path(path)
    m = _export_model(model, nms, conf, iou, max_det)
    im = torch.zeros(batch, 3, imgsz, imgsz)
    dyn = {"images": {0: "batch"}, "output0": {0: "batch"}} if dynamic_batch and not nms else None
    tmp = path.with_name(f".{path.name}.tmp")
    with torch.no_grad():
        torch2onnx(m, im, tmp, opset=OPSET, input_names=["images"], output_names=["output0"], dynamic=dyn)
    proto = onnx.load(str(tmp))
    if simplify:
        import onnxslim

        proto = onnxslim.slim(proto)
    proto.ir_version = min(proto.ir_version, 10)  # what ORT 1.17+ and TensorRT 10 accept
    meta = {"producer": "cldet", "imgsz": str(imgsz), "names": ",".join(model.names[i] for i in sorted(model.names)),
            "layout": NMS_LAYOUT if nms else "(B, 4+nc, A): cx, cy, w, h in input pixels, class probabilities"}
    return save_checked(proto, tmp, path, meta)


def _toposort(graph) -> None:
    """Reorder nodes so every input is produced before it is used (what onnx.checker demands)."""
    import graphlib

    nodes = list(graph.node)
    producer = {o: k for k, n in enumerate(nodes) for o in n.output}
    deps = {k: {producer[i] for i in n.input if i in producer} for k, n in enumerate(nodes)}
    try:
        order = list(graphlib.TopologicalSorter(deps).static_order())
    except graphlib.CycleError as e:
        raise ArtifactError(f"graph has a cycle through node {nodes[e.args[1][0]].name!r}") from None
    del graph.node[:]
    graph.node.extend(nodes[k] for k in order)


def to_fp16(src: str | Path, dst: str | Path) -> Path:
    """FP16 weights and activations with float32 I/O (so the contract holds and callers pass float32)."""
    import onnx
    from onnxruntime.transformers import float16

    proto = float16.convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    _toposort(proto.graph)  # the converter appends its I/O casts at the end
    dst = Path(dst)
    onnx.save(proto, str(dst))
    check_onnx(dst)
    return dst
