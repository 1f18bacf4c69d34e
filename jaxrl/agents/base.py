"""The agent protocol: what the runner, the meta layer, baselines and evaluation may rely on, and nothing more.

An agent is built from a static config (anything that changes a shape or the program) and holds pure functions:

    hparams = agent.default_hparams()            # a pytree of arrays: a sweep over it is a vmap
    carry = agent.init(key, hparams)             # everything that changes during training
    carry, metrics = agent.update(carry, hparams)  # one update: agent.steps_per_update environment steps
    ret = agent.evaluate(carry, key)             # mean return of the current policy, fresh episodes
    action = agent.act(carry.params, obs, key)   # one action per observation (batched over leading axes)

`train(agent, key, hparams)` is init, `num_updates` updates in a `lax.scan`, then `evaluate`. A new algorithm
implements the protocol (most simply by subclassing `Agent`) and registers its module in `jaxrl.agents`; the
runner and the meta layer then drive it unchanged.

Conventions the runner reads: `metrics` holds scalars per update, among them `loss` (checked for NaN/Inf),
`episode_return` and `episode_return_valid` (the mean return of the episodes that ended during the update, and
whether any did); `carry.params` (or `carry["params"]`) holds the parameters (checked for NaN/Inf, what `act` takes).
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
import numpy as np

from jaxrl.envs.errors import InvalidChoiceError

Carry = Any
Hparams = Any
Metrics = dict[str, jax.Array]


@runtime_checkable
class AgentProtocol(Protocol):
    config: Any
    num_updates: int
    steps_per_update: int  # environment steps per update, for one run

    def default_hparams(self) -> Hparams: ...

    def init(self, key: jax.Array, hparams: Hparams) -> Carry: ...

    def update(self, carry: Carry, hparams: Hparams) -> tuple[Carry, Metrics]: ...

    def evaluate(self, carry: Carry, key: jax.Array) -> jax.Array: ...

    def act(self, params: Any, obs: jax.Array, key: jax.Array) -> jax.Array: ...

    def train(self, key: jax.Array, hparams: Hparams) -> tuple[Carry, Metrics]: ...


def params_of(carry: Carry) -> Any:
    """The parameters in a carry: its `params` field or key."""
    return carry["params"] if isinstance(carry, dict) else carry.params


def train(agent: AgentProtocol, key: jax.Array, hparams: Hparams) -> tuple[Carry, Metrics]:
    """A whole run: `init`, `num_updates` updates, then `evaluate` of the final policy (metrics["final_return"]).
    The runner splits the same computation into chunks and gives bit-identical results."""
    init_key, eval_key = jax.random.split(key)
    carry = agent.init(init_key, hparams)
    carry, metrics = jax.lax.scan(lambda c, _: agent.update(c, hparams), carry, None, agent.num_updates)
    metrics["final_return"] = agent.evaluate(carry, eval_key)
    return carry, metrics


def update_while(agent: AgentProtocol, carry: Carry, hparams: Hparams, active: jax.Array) -> tuple[Carry, Metrics]:
    """`agent.update` where `active` (() bool, traced), else the carry unchanged: the update is computed and
    discarded, so runs of different lengths (a shorter last chunk, meta-training lifetimes) share one program."""
    new, metrics = agent.update(carry, hparams)
    return jax.tree.map(lambda a, b: jnp.where(active, a, b), new, carry), metrics


class Agent:
    """A convenient base: subclasses set `config`, `num_updates`, `steps_per_update` and define the methods of
    `AgentProtocol`; `train` comes from here."""

    config: Any
    num_updates: int
    steps_per_update: int

    def train(self, key: jax.Array, hparams: Hparams) -> tuple[Carry, Metrics]:
        return train(self, key, hparams)


class RolloutConfig:
    """A base for the static config of an agent whose every update learns from one rollout of num_envs x
    num_steps steps (PPO, PQN, LPG); the subclass (a frozen dataclass) has those fields and total_timesteps."""

    @property
    def batch_size(self) -> int:
        return self.num_envs * self.num_steps

    @property
    def num_updates(self) -> int:
        return self.total_timesteps // self.batch_size

    def check_num_updates(self) -> None:
        if self.num_updates < 1:
            raise InvalidChoiceError(f"total_timesteps={self.total_timesteps} is less than one update of num_envs x num_steps = {self.batch_size}")


DEFAULT_EVAL_LIMIT = 1000  # evaluation steps for an environment without max_steps_in_episode (Brax's default limit)


def eval_limit(config: Any, env_params: Any) -> int:
    """Steps of an evaluation episode: the config's `eval_steps` where it has one set, else the environment's
    max_steps_in_episode, else DEFAULT_EVAL_LIMIT."""
    return getattr(config, "eval_steps", 0) or int(getattr(env_params, "max_steps_in_episode", DEFAULT_EVAL_LIMIT))


def as_float_tree(tree: Any) -> Any:
    """Every leaf as a float32 array: hyperparameter defaults written as Python numbers become traced data, so a
    sweep over them is a vmap of one compiled program."""
    return jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), tree)


class Spaces(NamedTuple):
    """What an agent needs to know of the environment's spaces."""

    obs_dim: int
    num_actions: int  # 0 for continuous actions
    action_dim: int
    low: Any  # bounds of a continuous action space (None for discrete)
    high: Any


def spaces_of(env: Any, env_params: Any) -> Spaces:
    from jaxrl import envs

    space = env.action_space(env_params)
    if isinstance(space, envs.Discrete):
        return Spaces(envs.observation_size(env, env_params), int(space.n), 1, None, None)
    return Spaces(envs.observation_size(env, env_params), 0, int(np.prod(space.shape)), jnp.asarray(space.low), jnp.asarray(space.high))


def episode_metrics(rollout: Any) -> dict[str, jax.Array]:
    """The runner's episode metrics from a rollout whose steps have `done` and `episode_return` (the return of the
    last finished episode, from envs.EpisodeStatistics): the mean return of the episodes that ended during it,
    whether any did, and how many."""
    finished = rollout.done.sum()
    return {
        "episode_return": (rollout.episode_return * rollout.done).sum() / jnp.maximum(finished, 1),
        "episode_return_valid": finished > 0,
        "episodes": finished,
    }
