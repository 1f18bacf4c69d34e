#!/usr/bin/env bash
# DR vs PLR vs ACCEL on the maze at a CPU budget: 8 seeds each, experiments/configs/ued_maze_cpu.yaml.
# Usage: experiments/ued_compare.sh [RUNS_DIR]   (default results/ued-compare); then
#        python experiments/compare_ued.py RUNS_DIR --out experiments/reported/ued
set -euo pipefail
runs=${1:-results/ued-compare}
for method in dr plr accel; do
  jaxrl ued --method "$method" --config experiments/configs/ued_maze_cpu.yaml --seeds 8 --out "$runs/$method" --quiet
done
