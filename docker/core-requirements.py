"""Print the core (= deploy) dependencies of pyproject.toml, one per line, leaving out the names given after
--without: Dockerfile.jetson installs the JetPack 6 GPU build of onnxruntime instead of the registry's CPU one.
Runs on the board image's Python 3.10 (no tomllib): reads the `dependencies = [...]` block directly."""

import re
import sys


def core_requirements(text: str, without: set[str]) -> list[str]:
    block = re.search(r"^dependencies = \[(.*?)^\]", text, re.S | re.M).group(1)
    reqs = re.findall(r'^\s*"([^"]+)"', block, re.M)
    return [r for r in reqs if re.split(r"[<>=!~; \[]", r, maxsplit=1)[0].lower() not in without]


if __name__ == "__main__":
    path, args = sys.argv[1], sys.argv[2:]
    without = {a.lower() for a in args[args.index("--without") + 1:]} if "--without" in args else set()
    with open(path, encoding="utf-8") as f:
        print("\n".join(core_requirements(f.read(), without)))
