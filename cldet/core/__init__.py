"""The ground floor that the trainer, the exporter and the board all stand on: numpy, OpenCV, pycocotools.

Dataset reading (`data`), the model I/O contract's pre- and post-processing (`processing`), COCO metrics and
the evaluation loop (`metrics`, `evaluate`), the export manifest (`manifest`), errors with exit codes
(`errors`), atomic file writes and hashes (`files`), and the option declarations the CLI and the Python API
are built from (`options`). Nothing here imports torch, ultralytics or any other cldet subpackage.
"""
