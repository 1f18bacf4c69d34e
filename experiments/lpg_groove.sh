#!/usr/bin/env bash
# LPG rules meta-trained with each curriculum (uniform random levels = LPG, PLR by the antagonist's positive value
# loss, GROOVE = PLR by algorithmic regret) at one CPU-sized budget, then evaluated on LPG's five held-out tabular
# levels next to the A2C antagonist (experiments/evaluate_lpg_rules.py). Re-running continues where it stopped.
#   bash experiments/lpg_groove.sh                      (OUT=results/groove, GENERATIONS=40, SEEDS=16)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-results/groove}
GENERATIONS=${GENERATIONS:-40}
LIFETIME=${LIFETIME:-50}
SEEDS=${SEEDS:-16}
META=(--population 16 --lifetime "$LIFETIME" --eval-episodes 16 --set num_envs=16 --set gru_width=64 --quiet)
for curriculum in uniform plr groove; do
  start=$(date +%s)
  if [ -f "$OUT/$curriculum/meta.json" ]; then
    .venv/bin/jaxrl meta lpg --resume "$OUT/$curriculum" --generations "$GENERATIONS" --quiet
  else
    .venv/bin/jaxrl meta lpg --curriculum "$curriculum" --generations "$GENERATIONS" "${META[@]}" --out "$OUT/$curriculum"
  fi
  echo "$curriculum: $(( $(date +%s) - start )) s wall"
done
.venv/bin/python experiments/evaluate_lpg_rules.py uniform="$OUT/uniform/rule.npz" plr="$OUT/plr/rule.npz" groove="$OUT/groove/rule.npz" \
  --gru-width 64 --updates "$LIFETIME" --num-envs 16 --seeds "$SEEDS" --out "$OUT/heldout"
