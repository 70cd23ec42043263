"""Copy the latest benchmark tables (benchmarks/results/*.md) into README.md, and the export studies' tables into
docs/export.md, between markers.

    .venv/bin/python -m benchmarks.update_readme
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = {"cl-results": "cl-*.md", "ablation-results": "ablation-*.md", "export-results": "export-*.md"}
DOC_SECTIONS = {"ptq-refinements": "ptq-refinements.md", "drift-noise": "drift-noise.md"}  # in docs/export.md


def _images(md: Path) -> str:
    """The table's plots, where they exist: the per-step PNG and the learning curves."""
    return "".join(f"\n\n![{png.stem}](benchmarks/results/{png.name})" for png in
                   (md.with_suffix(".png"), md.with_name(f"{md.stem}-curves.png")) if png.exists())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--readme", type=Path, default=ROOT / "README.md", help="the file whose marked sections are replaced")
    readme = ap.parse_args(argv).readme
    text = readme.read_text()
    for marker, pattern in SECTIONS.items():
        files = sorted((p for p in (ROOT / "benchmarks" / "results").glob(pattern) if "-quick" not in p.name),
                       key=lambda p: p.stem)  # a protocol's variants (cl-x-2step-yolo11n) after it
        body = "\n".join(p.read_text().strip() + _images(p) for p in files) or "_No full run recorded yet._"
        text, n = re.subn(rf"(<!-- {marker}:start -->\n).*?(\n<!-- {marker}:end -->)", lambda m: m.group(1) + body + m.group(2), text, flags=re.S)
        if not n:
            print(f"README.md has no <!-- {marker}:start/end --> markers", file=sys.stderr)
            return 1
    readme.write_text(text)
    doc = ROOT / "docs" / "export.md"
    if readme.resolve() == (ROOT / "README.md").resolve() and doc.is_file():
        text = doc.read_text()
        for marker, name in DOC_SECTIONS.items():
            md = ROOT / "benchmarks" / "results" / name
            if md.is_file():
                text = re.sub(rf"(<!-- {marker}:start -->\n).*?(<!-- {marker}:end -->)",
                              lambda m: m.group(1) + md.read_text().strip() + "\n" + m.group(2), text, flags=re.S)
        doc.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
