"""cldet: class-incremental YOLO detection for edge devices.

Importing the package does no work: no environment reads, no downloads, no logging set-up.
The training stack (torch, ultralytics) is imported only by `cldet.detector` and `cldet.export`, and only when a
function that needs it runs; `cldet.core`, `cldet.deploy` and `cldet.calib` run with the core (board) set.
docs/architecture.md shows which subpackage may import which.

The Python API (docs/api.md), one function per command:

    from cldet import train, learn, evaluate, export, check, bench, predict, import_weights

`cldet.export` and `cldet.demo` are these functions; their modules stay importable by their full names
(`from cldet.export.pipeline import export_run`).
"""

from .api import bench, check, demo, evaluate, export, import_weights, learn, predict, train
from .core.version import __version__

__all__ = ["__version__", "train", "learn", "evaluate", "demo", "export", "check", "bench", "predict",
           "import_weights"]
