#!/usr/bin/env bash
# The studies behind the README tables, in order of importance; each call reuses finished steps.
# 1/3 of chess13's training images (the train split holds each photo three times, augmented) keeps a
# 12-epoch step at ~4-6 minutes on a 2-core CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
W=benchmarks/work
$PY -m benchmarks.cl_protocols --protocol benchmarks/protocols/chess13-2step.yaml --fraction 0.34
# 4step's base and joint are the 2step ones (same classes, settings and seed; joint_epochs 24)
mkdir -p $W/chess13-4step/seed0
for r in base joint; do
  [ -e $W/chess13-4step/seed0/$r ] || cp -a $W/chess13-2step/seed0/$r $W/chess13-4step/seed0/$r
done
$PY -m benchmarks.cl_protocols --protocol benchmarks/protocols/chess13-4step.yaml --fraction 0.34
$PY -m benchmarks.knobs --protocol benchmarks/protocols/chess13-2step.yaml --fraction 0.34 \
    --variants default,method=response,method=pseudo+response,pseudo_conf=0.3,feature_weight=0.2,feature_mode=channel
# DeepPCB: 1/5 of its 1000 training boards; joint, finetune and ours only (CPU budget)
$PY -m benchmarks.cl_protocols --protocol benchmarks/protocols/deeppcb6-2step.yaml --fraction 0.2 --methods finetune,ours
