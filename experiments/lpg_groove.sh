#!/usr/bin/env bash
# LPG rules meta-trained with each curriculum (uniform random levels = LPG, PLR by the antagonist's positive value
# loss, GROOVE = PLR by algorithmic regret) and TA-LPG (GROOVE's curriculum, lifetimes log-uniform in [10, LIFETIME],
# the rule told n/N and log N) at one CPU-sized budget, then evaluated on LPG's five held-out tabular levels (and
# MINATAR games, out of distribution, if set) next to the untrained rule and the A2C antagonist
# (experiments/evaluate_lpg_rules.py). Re-running continues where it stopped.
#   bash experiments/lpg_groove.sh      (OUT=results/groove GENERATIONS=120 SEEDS=16 MINATAR=breakout,space_invaders)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-results/groove}
GENERATIONS=${GENERATIONS:-120}
LIFETIME=${LIFETIME:-50}
SEEDS=${SEEDS:-16}
MINATAR=${MINATAR:-}
META=(--population 16 --lifetime "$LIFETIME" --eval-episodes 16 --heldout-every 10 --set num_envs=16 --set gru_width=64 --quiet)
for run in uniform plr groove ta; do
  start=$(date +%s)
  if [ -f "$OUT/$run/meta.json" ]; then
    .venv/bin/jaxrl meta lpg --resume "$OUT/$run" --generations "$GENERATIONS" --quiet
  elif [ "$run" = ta ]; then
    .venv/bin/jaxrl meta lpg --curriculum groove --ta --min-lifetime 10 --generations "$GENERATIONS" "${META[@]}" --out "$OUT/$run"
  else
    .venv/bin/jaxrl meta lpg --curriculum "$run" --generations "$GENERATIONS" "${META[@]}" --out "$OUT/$run"
  fi
  echo "$run: $(( $(date +%s) - start )) s wall"
done
.venv/bin/python experiments/evaluate_lpg_rules.py untrained=random uniform="$OUT/uniform/rule.npz" plr="$OUT/plr/rule.npz" \
  groove="$OUT/groove/rule.npz" ta-lpg="$OUT/ta/rule.npz" --random-gru-width 64 --updates "$LIFETIME" --num-envs 16 --seeds "$SEEDS" \
  --minatar "$MINATAR" --out "$OUT/heldout"
