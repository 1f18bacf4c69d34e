#!/usr/bin/env bash
# Sanity of the ES over hyperparameters: a hand sweep of PPO's learning rate on CartPole-v1, then `meta tune`
# over the same range, then the tuned config trained on the same seeds as the sweep.
# (ES on a plain function, a shifted sphere over a pytree, is tests/test_meta_es.py.)
set -euo pipefail
OUT=${OUT:-results/meta-sanity}
STEPS=${STEPS:-100000}
jaxrl train ppo --env CartPole-v1 --steps $STEPS --seeds 16 --sweep lr=1e-5,1e-4,1e-3,1e-2,1e-1 --out "$OUT/hand-sweep" --quiet
jaxrl meta tune ppo --env CartPole-v1 --inner-steps $STEPS --search lr=1e-5:1e-1:log \
  --population 16 --seeds 2 --generations ${GENERATIONS:-15} --out "$OUT/tune"
jaxrl train --config "$OUT/tune/best_config.yaml" --seeds 16 --out "$OUT/tuned" --quiet
