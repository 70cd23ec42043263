"""What every runtime offers (`Backend`), and the batching helper the runtimes share.

A Backend maps a float32 (B, 3, S, S) batch to the float32 (B, 4 + nc, A) output of the model I/O contract
(cldet.core.processing). `cldet.deploy.runtime.open_backend` picks the implementation by file type; the
implementations (`runtime.OrtBackend`, `trt_runner.TrtBackend`) import this module and never each other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

__all__ = ["Backend", "run_in_slices", "ENGINE_SUFFIXES"]

ENGINE_SUFFIXES = (".engine", ".plan", ".trt")


@runtime_checkable
class Backend(Protocol):
    """What every runtime offers. `batch` is the fixed batch size of the artifact, or None when dynamic."""

    name: str
    artifact: Path
    imgsz: int
    nc: int
    batch: int | None
    providers: list[str]

    def __call__(self, x: np.ndarray) -> np.ndarray: ...


def run_in_slices(run, x: np.ndarray, batch: int, pad: bool = True) -> np.ndarray:
    """Feed a runtime at most `batch` images at a time; with `pad` (fixed-batch artifacts) the last slice is
    zero-padded to `batch` and its output trimmed."""
    outs = []
    for start in range(0, len(x), batch):
        chunk = x[start : start + batch]
        n = len(chunk)
        if pad and n < batch:
            chunk = np.concatenate([chunk, np.zeros((batch - n, *chunk.shape[1:]), chunk.dtype)])
        outs.append(run(chunk)[:n])
    return np.concatenate(outs)
