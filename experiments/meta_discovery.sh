#!/usr/bin/env bash
# Discovery: lpo and ta_lpo from PPO init, meta-trained on CartPole-v1 and Acrobot-v1 with short budgets, then
# evaluated on the training environments and held-out ones against ppo_clip and dpo.
set -euo pipefail
OUT=${OUT:-results/meta-discovery}
for OBJ in ${OBJECTIVES:-lpo ta_lpo}; do
  jaxrl meta discover --objective $OBJ --init ppo --envs CartPole-v1,Acrobot-v1 --inner-steps ${INNER_STEPS:-50000} \
    --population ${POPULATION:-16} --seeds 2 --generations ${GENERATIONS:-20} --sigma ${SIGMA:-0.03} --lr 0.03 --out "$OUT/$OBJ"
done
FILES=$(for OBJ in ${OBJECTIVES:-lpo ta_lpo}; do echo "$OUT/$OBJ/best_objective.npz"; done)  # labelled lpo-best_objective, ...
jaxrl meta evaluate --objective ppo_clip dpo $FILES --envs CartPole-v1,Acrobot-v1 --steps 100000 --seeds 16 --out "$OUT/evaluate-train"
jaxrl meta evaluate --objective ppo_clip dpo $FILES --envs ${HELDOUT:-Catch-bsuite,SpaceInvaders-MinAtar} --steps ${HELDOUT_STEPS:-200000} \
  --seeds 16 --out "$OUT/evaluate-heldout"
