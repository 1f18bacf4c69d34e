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
# Continuous control, held out (the objectives were found on discrete actions): Gaussian policies with their own
# settings, as in experiments/compare_objectives.py. Skip with CONTINUOUS=0.
if [ "${CONTINUOUS:-1}" = 1 ]; then
  jaxrl meta evaluate --objective ppo_clip dpo $FILES --envs Pendulum-v1 --steps 500000 --seeds 16 \
    --set num_envs=16 --set normalize_obs=true --set normalize_reward=true --set anneal_lr=false --set lr=3e-4 \
    --set eval_episodes=32 --out "$OUT/evaluate-heldout-pendulum"
  jaxrl meta evaluate --objective ppo_clip dpo $FILES --envs brax/hopper --steps 300000 --seeds 16 \
    --set num_envs=64 --set num_steps=64 --set num_minibatches=8 --set normalize_obs=true --set normalize_reward=true \
    --set lr=3e-4 --set eval_episodes=16 --out "$OUT/evaluate-heldout-hopper"
fi
