#!/usr/bin/env bash
# The off-policy configs' measured returns (README, "Value-based and off-policy agents"): each shipped config as
# it is, into results/offpolicy/NAME. Each prints its report (final return IQM [95% CI] over its seeds).
#   bash experiments/offpolicy_configs.sh [config names...]     (default: all six)
set -euo pipefail
cd "$(dirname "$0")/.."
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(pqn_cartpole dqn_cartpole sac_pendulum pqn_minatar dqn_minatar sac_brax_hopper)
for name in "${names[@]}"; do
  start=$(date +%s)
  .venv/bin/jaxrl run "experiments/configs/$name.yaml" --out "results/offpolicy/$name-$(date +%Y%m%d-%H%M%S)" --quiet
  echo "$name: $(( $(date +%s) - start )) s wall"
done
