"""ONNX Runtime inference for host-side reference metrics.

Uses the deploy stage's shared backend (`cldet.deploy.runtime.open_backend`) when it is present, so the host
measures with the exact code the board runs; a minimal CPU session otherwise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

__all__ = ["ort_predict"]


def ort_predict(path: str | Path, threads: int | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """A (B, 3, S, S) -> (B, 4 + nc, A) callable running `path` on the CPU."""
    try:
        from ..deploy.runtime import open_backend
    except ImportError:
        open_backend = None
    if open_backend is not None:
        return open_backend(Path(path), provider="cpu", threads=threads)
    import onnxruntime as ort

    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name

    def predict(x: np.ndarray) -> np.ndarray:
        return sess.run(None, {name: np.ascontiguousarray(x, np.float32)})[0]

    return predict
