#!/usr/bin/env bash
# The studies behind the README tables, in order of importance; each call reuses finished steps.
# 1/3 of chess13's training images (the train split holds each photo three times, augmented) keeps a
# 12-epoch step at ~6 minutes on a 2-core CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
$PY benchmarks/cl_protocols.py --protocol benchmarks/protocols/chess13-2step.yaml --fraction 0.34 --methods finetune,ours
$PY benchmarks/cl_protocols.py --protocol benchmarks/protocols/chess13-2step.yaml --fraction 0.34
$PY benchmarks/cl_protocols.py --protocol benchmarks/protocols/chess13-4step.yaml --fraction 0.34 --epochs 6
