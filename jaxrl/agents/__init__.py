"""Agents. Each provides a static Config, an Hparams pytree and `make_agent(config)` with init / update /
evaluate / train, so the runner can drive any of them the same way."""

from jaxrl.agents import dqn, lpg, ppo, pqn, sac

ALGORITHMS = {"ppo": ppo, "pqn": pqn, "dqn": dqn, "sac": sac, "lpg": lpg}
