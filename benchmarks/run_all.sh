#!/usr/bin/env bash
# The studies behind the README tables, in order of importance; each call reuses finished runs, so an
# interrupted study continues where it stopped. Full training splits, converged base and joint models:
# a 12-epoch increment on chess13 is ~11 minutes on 2 CPU cores, the whole list takes most of a day.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
W=benchmarks/work
$PY -m benchmarks.cl_protocols --protocol benchmarks/protocols/chess13-2step.yaml --seeds 2 --methods finetune,ours
$PY -m benchmarks.ablation --protocol benchmarks/protocols/chess13-2step.yaml
# the same protocol with a YOLO11n detector (random start: no COCO weights for it here; 60-epoch base and joint)
$PY -m benchmarks.cl_protocols --protocol benchmarks/protocols/chess13-2step-yolo11n.yaml
# 4step's base and joint are the 2step ones (same classes, settings and seed)
mkdir -p $W/chess13-4step/seed0
for r in base joint; do
  [ -e $W/chess13-4step/seed0/$r ] || cp -a $W/chess13-2step/seed0/$r $W/chess13-4step/seed0/$r
done
$PY -m benchmarks.cl_protocols --protocol benchmarks/protocols/chess13-4step.yaml --methods finetune,ours
$PY -m benchmarks.cl_protocols --protocol benchmarks/protocols/deeppcb6-2step.yaml --methods finetune,ours
$PY -m benchmarks.ablation --protocol benchmarks/protocols/deeppcb6-2step.yaml --variants default,focus-all,finetune
$PY -m benchmarks.update_readme
