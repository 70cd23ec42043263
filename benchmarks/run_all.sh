#!/usr/bin/env bash
# The studies behind the README tables, in order of importance; each call reuses finished runs, so an
# interrupted study continues where it stopped. Full training splits, converged base and joint models:
# a 12-epoch increment on chess13 is ~11 minutes on 2 CPU cores, the whole list takes most of a day.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
W=benchmarks/work
# share SRC DST: a protocol that reuses another's base and joint models (same classes, settings and seed)
share() {
  mkdir -p "$W/$2"
  for r in base joint; do
    [ -e "$W/$2/$r" ] || cp -a "$W/$1/$r" "$W/$2/$r"
  done
}
$PY -m benchmarks.cl_protocols --protocol benchmarks/protocols/chess13-2step.yaml --seeds 3 --methods finetune,ours
$PY -m benchmarks.ablation --protocol benchmarks/protocols/chess13-2step.yaml --variants default,finetune,split,box,split-box,second-teacher
$PY -m benchmarks.ablation --protocol benchmarks/protocols/chess13-2step.yaml --seed 1 --variants default,finetune,box,second-teacher
# the same protocol with a YOLO11n detector (random start: no COCO weights for it here; 60-epoch base and joint)
$PY -m benchmarks.cl_protocols --protocol benchmarks/protocols/chess13-2step-yolo11n.yaml
$PY -m benchmarks.ablation --protocol benchmarks/protocols/chess13-2step-yolo11n.yaml --variants default,finetune,split,no-feature,no-pseudo,oracle,second-teacher
# the same YOLO11n base and joint models, 30-epoch increments (at 12 the new classes were still rising)
share chess13-2step-yolo11n/seed0 chess13-2step-yolo11n-30ep/seed0
$PY -m benchmarks.cl_protocols --protocol benchmarks/protocols/chess13-2step-yolo11n-30ep.yaml
$PY -m benchmarks.ablation --protocol benchmarks/protocols/chess13-2step-yolo11n-30ep.yaml --variants default,finetune,second-teacher
# 4step's base and joint are the 2step ones (same classes, settings and seed)
for s in 0 1; do share chess13-2step/seed$s chess13-4step/seed$s; done
$PY -m benchmarks.cl_protocols --protocol benchmarks/protocols/chess13-4step.yaml --methods finetune,ours --seeds 2
$PY -m benchmarks.cl_protocols --protocol benchmarks/protocols/deeppcb6-2step.yaml --methods finetune,ours
$PY -m benchmarks.ablation --protocol benchmarks/protocols/deeppcb6-2step.yaml --variants default,finetune,second-teacher
# INT8 export of the final models (cldet's default path vs Ultralytics' INT8), and each PTQ refinement on and off
C=../shared/data/chess13/data.yaml
$PY -m benchmarks.export_bench --run $W/chess13-2step/seed0/ours/step1 --data $C
$PY -m benchmarks.export_bench --run $W/chess13-4step/seed0/ours/step3 --data $C
$PY -m benchmarks.export_bench --run $W/chess13-4step/seed1/ours/step3 --data $C --name 4step-seed1
$PY -m benchmarks.export_bench --run $W/deeppcb6-2step/seed0/ours/step1 --data ../shared/data/deeppcb6/data.yaml
$PY -m benchmarks.ptq_refinements --run $W/chess13-2step/seed0/ours/step1 --run $W/chess13-4step/seed0/ours/step3 \
    --run $W/chess13-4step/seed1/ours/step3 --run $W/deeppcb6-2step/seed0/ours/step1
# what per-group drift random output changes of INT8's size show on each val split
$PY -m benchmarks.drift_noise --run $W/chess13-2step/seed0/ours/step1 --run $W/chess13-4step/seed0/ours/step3 \
    --run $W/chess13-4step/seed1/ours/step3 --run $W/deeppcb6-2step/seed0/ours/step1
# QAT's fake quantization: the export's whole Q/DQ graph vs conv inputs only, beside PTQ (converged base model)
$PY -m benchmarks.qat_emulation --run $W/chess13-2step/seed0/base
$PY -m benchmarks.update_readme
