"""Per-layer INT8 sensitivity: which Conv layers cost the most accuracy when quantized, so `--int8 auto` can keep the
few worst in float when full PTQ loses more than the drift tolerance.

Each quantizable Conv is quantized alone (every other node float, the same calibrated ranges as the full PTQ) and the
model's output on a few calibration images is compared with the FP32 model's, at the anchors where the FP32 model
sees something (best class probability above 0.05): the mean of the largest class-probability change and of the
box change relative to the box's size. That is standard layer-wise sensitivity analysis (one layer's own damage,
not the damage accumulated from the layers before it); it needs no labels and never sees evaluation images.
"""

from __future__ import annotations

import logging
import re
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import numpy as np

from .quantize import QuantConfig, float_nodes, prepare, quantize_ptq
from .ranges import RangeStats

__all__ = ["output_error", "rank_convs", "SENSITIVE_WHY"]

log = logging.getLogger("cldet")
SENSITIVE_WHY = "the most INT8-sensitive conv(s): kept float by --int8 auto, ranked by output error when quantized alone"


def output_error(ref: np.ndarray, out: np.ndarray, min_prob: float = 0.05) -> float:
    """Detector output change, (B, 4 + nc, A) each: at anchors whose reference best class probability exceeds
    `min_prob`, mean over anchors of max |class-probability change| + mean |box change| / box size."""
    errs = []
    for r, o in zip(ref, out):
        probs = r[4:]
        sel = probs.max(0) > min_prob
        if not sel.any():
            continue
        d_cls = np.abs(o[4:, sel] - probs[:, sel]).max(0)
        size = np.sqrt(np.clip(r[2, sel] * r[3, sel], 1e-6, None))
        d_box = np.abs(o[:4, sel] - r[:4, sel]).mean(0) / size
        errs.append(float(np.mean(d_cls + d_box)))
    return float(np.mean(errs)) if errs else 0.0


def _run(path: Path, arrays: Sequence[np.ndarray], threads: int | None) -> np.ndarray:
    from ..deploy.runtime import open_backend

    backend = open_backend(path, provider="cpu", threads=threads)
    return np.concatenate([backend(a) for a in arrays])


def rank_convs(fp32: Path, arrays: Sequence[np.ndarray], config: QuantConfig, stats: RangeStats, work: Path,
               threads: int | None = None, progress: bool = False) -> list[tuple[str, float]]:
    """(Conv node name, output error when it alone is INT8) for every Conv the full PTQ quantizes, worst first."""
    from tqdm import tqdm

    proto = prepare(fp32, work)
    _, exclude = float_nodes(proto, config)
    convs = [n.name for n in proto.graph.node if n.op_type == "Conv" and n.name not in set(exclude)]
    ref = _run(fp32, arrays, threads)
    scores = []
    for name in tqdm(convs, desc="INT8 sensitivity", unit="conv", disable=not progress, leave=False):
        only = replace(config, float_nodes=(rf"^(?!{re.escape(name)}$)",), float_why=("",))
        path = quantize_ptq(fp32, work / ".sensitivity.onnx", lambda: iter(arrays), only, stats=stats,
                            threads=threads)
        scores.append((name, output_error(ref, _run(path, arrays, threads))))
        path.unlink(missing_ok=True)
    scores.sort(key=lambda s: -s[1])
    log.info("INT8 sensitivity, worst convs: %s", ", ".join(f"{n} {e:.4f}" for n, e in scores[:5]))
    return scores
