"""Files that ship inside the package (so they survive `pip install`): demo data, backbone weights, demo base.

    chess-mini/   72 + 24 chess photos (public domain), the demo's and the tests' data
    weights/      COCO-pretrained yolov5nu backbone+neck, tensors only (`cldet train --init` default)
    demo-base/    a converged base run (6 white piece classes, full chess13 split) the demo learns from

Each folder has a README with its provenance and license.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["ASSETS", "CHESS_MINI", "BACKBONE", "DEMO_BASE"]

ASSETS = Path(__file__).resolve().parents[1] / "assets"
CHESS_MINI = ASSETS / "chess-mini" / "data.yaml"
BACKBONE = ASSETS / "weights" / "yolov5nu-coco-backbone-neck.pt"
DEMO_BASE = ASSETS / "demo-base"
