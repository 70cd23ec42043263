"""Rebuild the board image's smoke artifact, docker/smoke/{model.int8.onnx,manifest.json}, from a run directory.

    .venv/bin/python docker/make_smoke.py RUN

Exports RUN with PTQ (cpu target; 8 images are too few for --int8 auto to judge drift) scored on docker/smoke/data.yaml (8 bundled photos), and
keeps only the INT8 artifact's manifest entry. Dockerfile.jetson's last step runs `cldet check` on it; the
committed one comes from a 6-class model (white pieces, yolov5nu, 320 px, 12 epochs on half of chess13's
training split, mAP50-95 0.41 on its val split).
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent / "smoke"


def main(run: Path) -> None:
    from cldet.export.pipeline import ExportOptions, export_run

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "export"
        man = export_run(run, ExportOptions(out=out, int8="ptq", data=HERE / "data.yaml", force=True, progress=False))
        shutil.copy2(out / "model.int8.onnx", HERE / "model.int8.onnx")
    man["artifacts"] = {"int8": man["artifacts"]["int8"]}
    man["run"]["path"] = run.name
    man["eval"]["data"] = "data.yaml"
    (HERE / "manifest.json").write_text(json.dumps(man, indent=1) + "\n")
    print(json.dumps(man["artifacts"]["int8"]["metrics"], indent=1))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
