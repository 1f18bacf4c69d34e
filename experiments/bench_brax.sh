#!/usr/bin/env bash
# Brax PPO speed with the shipped configs (experiments/configs/brax_hopper.yaml, brax_ant.yaml): compile and env
# steps/s at 1 and 16 seeds on brax/hopper and brax/ant, and the return hopper reaches at STEPS_1SEED steps on one
# seed. Each run is a `jaxrl train` whose summary line is printed; the compile cache is
# off so every compile is a first one.
#   bash experiments/bench_brax.sh             (OUT=results/bench_brax STEPS_1SEED=1000000 STEPS_16SEEDS=65536)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-results/bench_brax}
STEPS_1SEED=${STEPS_1SEED:-1000000}
STEPS_16SEEDS=${STEPS_16SEEDS:-65536}
export JAXRL_COMPILE_CACHE=off
run() {  # name, config, then jaxrl train flags
  local name=$1 config=$2; shift 2
  rm -rf "$OUT/$name"
  .venv/bin/jaxrl train --config "experiments/configs/$config.yaml" --quiet --out "$OUT/$name" "$@" 2>&1 | grep -E "^finished:" | sed "s|^|$name: |"
  .venv/bin/python -c "import json,sys; s=json.load(open('$OUT/$name/summary.json')); r=[x['final_return'] for x in s['runs']]; print('$name: final return', [round(v,1) for v in r][:4], '...' if len(r)>4 else '')"
}
run hopper_1seed brax_hopper --seeds 1 --steps "$STEPS_1SEED"
run hopper_16seeds brax_hopper --seeds 16 --steps "$STEPS_16SEEDS"
run ant_1seed brax_ant --seeds 1 --steps "$STEPS_16SEEDS"
run ant_16seeds brax_ant --seeds 16 --steps "$STEPS_16SEEDS"
