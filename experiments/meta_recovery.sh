#!/usr/bin/env bash
# Recovery: LPO discovery from zero drift (no trust region), inner runs made unstable by many epochs, on
# CartPole-v1 and Acrobot-v1; then the found drift against PPO and zero drift under the same inner settings.
set -euo pipefail
OUT=${OUT:-results/meta-recovery}
jaxrl meta discover --objective lpo --init zero --envs CartPole-v1,Acrobot-v1 \
  --config experiments/configs/meta_inner_unstable.yaml --inner-steps 50000 \
  --population 16 --seeds 2 --generations ${GENERATIONS:-25} --sigma 0.1 --lr 0.03 --checkpoint-every 5 --out "$OUT/discover"
jaxrl meta evaluate --objective ppo_clip no_trust_region "$OUT/discover/best_objective.npz" "$OUT/discover/mean_objective.npz" \
  --envs CartPole-v1,Acrobot-v1 --config experiments/configs/meta_inner_unstable.yaml --steps 50000 --seeds 16 --out "$OUT/evaluate"
