#!/usr/bin/env bash
# Wait for run_all.sh, then run the settings study on the 2-step base.
cd "$(dirname "$0")/.."
while pgrep -f benchmarks/run_all.sh > /dev/null; do sleep 20; done
.venv/bin/python -m benchmarks.knobs --protocol benchmarks/protocols/chess13-2step.yaml --fraction 0.34
