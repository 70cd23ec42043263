"""cldet: class-incremental YOLO detection for edge devices.

Importing the package does no work: no environment reads, no downloads, no logging set-up.
The training stack (torch, ultralytics) is imported only by `cldet.detector` and `cldet.export`;
`cldet.core`, `cldet.deploy` and `cldet.calib` run with the core (board) set. docs/architecture.md shows
which subpackage may import which.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
