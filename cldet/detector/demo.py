"""`cldet demo` / `make demo`: the main job on the bundled chess subset, in a few CPU minutes.

Base model on the six white piece classes; then the six black classes arrive, labeled only for
themselves. Fine-tuning and cldet's default method learn them from the same base, with the same data,
epochs and seed; both are scored on validation images where every piece is labeled.
"""

from __future__ import annotations

from pathlib import Path

from .protocol import Protocol, run_protocol, summarise, write_outputs

__all__ = ["run_demo", "DEMO_DATA"]

DEMO_DATA = Path(__file__).resolve().parents[2] / "data" / "chess-mini" / "data.yaml"
WHITE = ["white-bishop", "white-king", "white-knight", "white-pawn", "white-queen", "white-rook"]
BLACK = ["black-bishop", "black-king", "black-knight", "black-pawn", "black-queen", "black-rook"]


def run_demo(out: Path, epochs: int | None = None, data: Path = DEMO_DATA) -> dict:
    """Run the demo protocol into `out` (finished steps are reused); returns the summary dict."""
    if not Path(data).is_file():
        from ..errors import DataError

        raise DataError(f"demo data {data} is missing; it ships with the cldet source tree (data/chess-mini).")
    p = Protocol(name="demo", dataset=Path(data).resolve(), dataset_name="chess-mini", steps=[WHITE, BLACK],
                 train={"epochs": epochs or 12, "imgsz": 320, "batch": 8, "workers": 2}, methods=["finetune", "ours"])
    run = run_protocol(p, Path(out) / "runs", seed=0, joint=False)
    summary = summarise(p, [run])
    paths = write_outputs(summary, Path(out))
    print("\n" + paths["md"].read_text())
    print(f"table: {paths['md']}\nplot:  {paths['png']}\nruns:  {Path(out) / 'runs'}")
    return summary
