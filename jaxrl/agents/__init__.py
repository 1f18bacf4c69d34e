"""Agents. Each provides a static Config, an Hparams pytree and `make_agent(config)` with init / update /
evaluate / train, so the runner can drive any of them the same way."""

from jaxrl.agents import ppo

ALGORITHMS = {"ppo": ppo}
