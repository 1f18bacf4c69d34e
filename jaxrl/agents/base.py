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

from typing import Any, Protocol, runtime_checkable

import jax

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


class Agent:
    """A convenient base: subclasses set `config`, `num_updates`, `steps_per_update` and define the methods of
    `AgentProtocol`; `train` comes from here."""

    config: Any
    num_updates: int
    steps_per_update: int

    def train(self, key: jax.Array, hparams: Hparams) -> tuple[Carry, Metrics]:
        return train(self, key, hparams)
