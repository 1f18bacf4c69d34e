"""DQN (Mnih et al. 2015) with the double-Q target (van Hasselt et al. 2016) and the dueling head (Wang et al.
2016) as options, a replay buffer on the device (flashbax, inside the carry) and a target network.

    agent = make_agent(DQNConfig(env_id="CartPole-v1"))
    carry, metrics = jax.jit(agent.train)(key, agent.default_hparams())

One update, read top to bottom: `collect` (num_steps epsilon-greedy steps of every environment, uniform random
until the buffer holds learning_starts transitions), `store` (into the buffer), `learn` (gradient_steps steps on
minibatches drawn uniformly from the buffer, once it holds learning_starts transitions), then the target network
follows the online one (`polyak`). The TD target bootstraps from the step's final observation (before any
auto-reset) unless the step terminated:

    y = r + gamma (1 - terminated) Q_target(s', argmax_a Q_online(s', a))     (double)
    y = r + gamma (1 - terminated) max_a Q_target(s', a)                       (not double)

and the loss is 0.5 (Q(s, a) - y)^2 averaged over the minibatch.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

from jaxrl import envs
from jaxrl.agents.base import Spaces, as_float_tree, episode_metrics, spaces_of
from jaxrl.agents.offpolicy import (QAgent, Step, Transition, check_replay_settings, example_transition, filled, image_shape, linear_schedule, polyak, replay_buffer,
                                    transitions)
from jaxrl.envs.errors import InvalidChoiceError, invalid_choice
from jaxrl.networks import ACTIVATIONS, Q_TORSOS, QNetwork
from jaxrl.networks import init_params as init_network


@dataclasses.dataclass(frozen=True)
class DQNConfig:
    """Static settings (a change recompiles). Defaults: rejax's tuned CartPole setting (10 envs, one step each per
    update, 5 gradient steps of 100, buffer 50k filled with 5k random steps first, dueling double DQN, target
    by Polyak averaging every update)."""

    env_id: str = "CartPole-v1"
    env_kwargs: tuple[tuple[str, Any], ...] = ()
    num_envs: int = 10
    num_steps: int = 1  # steps of every environment per update
    total_timesteps: int = 100_000
    buffer_size: int = 50_000
    batch_size: int = 100
    learning_starts: int = 5_000  # transitions in the buffer before learning (and greedy acting) starts
    gradient_steps: int = 5  # per update
    target_update_period: int = 1  # updates between target-network updates (each by tau)
    exploration_fraction: float = 0.5  # of training, over which epsilon goes from eps_start to eps_finish
    hidden: tuple[int, ...] = (64, 64)
    torso: str = "dense"  # or "conv": MinAtar's 16-filter 3x3 convolution before the layers (networks.QNetwork)
    activation: str = "swish"
    double: bool = True
    dueling: bool = True
    eval_episodes: int = 64
    eval_deterministic: bool = True  # greedy evaluation

    def validate(self) -> None:
        check_replay_settings(self)
        if self.activation not in ACTIVATIONS:
            raise invalid_choice("activation", self.activation, ACTIVATIONS)
        if self.torso not in Q_TORSOS:
            raise invalid_choice("torso", self.torso, Q_TORSOS)


_POSITIVE = (math.ulp(0.0), math.inf, "a number > 0")
_UNIT = (0.0, 1.0, "a number in [0, 1]")
HPARAM_RANGES = {"lr": _POSITIVE, "gamma": _UNIT, "tau": _UNIT, "eps_start": _UNIT, "eps_finish": _UNIT, "max_grad_norm": _POSITIVE}


@struct.dataclass
class DQNHparams:
    lr: jax.Array = 1e-3
    gamma: jax.Array = 0.99
    tau: jax.Array = 0.02  # target <- tau * online + (1 - tau) * target; 1 with a period is the classic hard copy
    eps_start: jax.Array = 1.0
    eps_finish: jax.Array = 0.05
    max_grad_norm: jax.Array = 10.0


@struct.dataclass
class DQNCarry:
    params: Any
    target_params: Any
    opt_state: Any
    buffer: Any  # flashbax buffer state
    env_params: Any
    env_state: Any
    obs: jax.Array
    key: jax.Array
    update: jax.Array


@dataclasses.dataclass(frozen=True, eq=False)
class DQN(QAgent):
    config: DQNConfig
    env: Any
    default_env_params: Any
    spaces: Spaces
    network: QNetwork
    buffer: Any  # flashbax's buffer functions
    hparam_ranges = HPARAM_RANGES
    acting_epsilon = DQNHparams.eps_finish

    def default_hparams(self) -> DQNHparams:
        return as_float_tree(DQNHparams())

    def make_optimizer(self, hparams: DQNHparams) -> optax.GradientTransformation:
        return optax.chain(optax.clip_by_global_norm(hparams.max_grad_norm), optax.adam(hparams.lr))

    def init(self, key: jax.Array, hparams: DQNHparams) -> DQNCarry:
        key, net_key, env_key = jax.random.split(key, 3)
        params = init_network(self.network, net_key, jnp.zeros((1, self.spaces.obs_dim)))
        env_params, env_state, obs = self.init_env(env_key)
        example = example_transition(self.env_stack(), obs[0], jnp.zeros((), jnp.int32))
        return DQNCarry(params, params, self.make_optimizer(hparams).init(params), self.buffer.init(example), env_params, env_state, obs,
                        key, jnp.zeros((), jnp.int32))

    # -------------------------------------------------------------------------------- one update

    def buffer_size(self, carry: Any) -> jax.Array:
        return filled(carry.buffer, self.config.buffer_size)

    def epsilon(self, carry: DQNCarry, hparams: DQNHparams) -> jax.Array:
        """1 (uniform random actions) until learning starts, then the linear schedule over the training fraction."""
        scheduled = linear_schedule(hparams.eps_start, hparams.eps_finish, carry.update / self.num_updates, self.config.exploration_fraction)
        return jnp.where(self.buffer_size(carry) < self.config.learning_starts, 1.0, scheduled)

    def store(self, carry: Any, steps: Step) -> Any:
        return carry.replace(buffer=self.buffer.add(carry.buffer, transitions(steps)))

    def td_targets(self, params: Any, target_params: Any, batch: Transition, gamma: jax.Array) -> jax.Array:
        next_target = self.q_values(target_params, batch.next_obs)
        if self.config.double:
            best = jnp.argmax(self.q_values(params, batch.next_obs), axis=-1)
            bootstrap = jnp.take_along_axis(next_target, best[:, None], axis=-1)[:, 0]
        else:
            bootstrap = next_target.max(axis=-1)
        return batch.reward + gamma * (1.0 - batch.terminated.astype(jnp.float32)) * bootstrap

    def loss(self, params: Any, target_params: Any, batch: Transition, gamma: jax.Array) -> tuple[jax.Array, dict]:
        target = jax.lax.stop_gradient(self.td_targets(params, target_params, batch, gamma))
        q = jnp.take_along_axis(self.q_values(params, batch.obs), batch.action[:, None], axis=-1)[:, 0]
        return 0.5 * jnp.mean((q - target) ** 2), {"q_mean": q.mean()}

    def learn(self, carry: DQNCarry, hparams: DQNHparams) -> tuple[DQNCarry, dict]:
        """`gradient_steps` minibatch steps from the buffer; nothing changes before it holds learning_starts
        transitions. Then the target network moves by tau every target_update_period updates."""
        c = self.config
        key, sample_key = jax.random.split(carry.key)
        optimizer = self.make_optimizer(hparams)
        grad_fn = jax.value_and_grad(self.loss, has_aux=True)

        def gradient_step(state, step_key):
            params, opt_state = state
            batch = self.buffer.sample(carry.buffer, step_key).experience
            (loss, stats), grads = grad_fn(params, carry.target_params, batch, hparams.gamma)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), {**stats, "loss": loss, "grad_norm": optax.tree.norm(grads)}

        (params, opt_state), stats = jax.lax.scan(gradient_step, (carry.params, carry.opt_state), jax.random.split(sample_key, c.gradient_steps))
        learning = self.buffer_size(carry) >= c.learning_starts
        keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(learning, n, o), new, old)
        params, opt_state = keep(params, carry.params), keep(opt_state, carry.opt_state)
        move = learning & (carry.update % c.target_update_period == 0)
        target_params = polyak(carry.target_params, params, jnp.where(move, hparams.tau, 0.0))
        metrics = {k: jnp.where(learning, v.mean(), 0.0) for k, v in stats.items()}
        new = carry.replace(params=params, opt_state=opt_state, target_params=target_params, key=key, update=carry.update + 1)
        return new, {**metrics, "learning": learning}

    def update(self, carry: DQNCarry, hparams: DQNHparams) -> tuple[DQNCarry, dict]:
        epsilon = self.epsilon(carry, hparams)
        carry, steps = self.collect(carry, hparams)
        carry = self.store(carry, steps)
        carry, metrics = self.learn(carry, hparams)
        return carry, {**metrics, **episode_metrics(steps), "epsilon": epsilon, "buffer_size": self.buffer_size(carry)}


def make_agent(config: DQNConfig) -> DQN:
    config.validate()
    env, env_params = envs.make(config.env_id, **dict(config.env_kwargs))
    spaces = spaces_of(env, env_params)
    if not spaces.num_actions:
        raise InvalidChoiceError(f"dqn needs discrete actions; {config.env_id!r} has continuous ones (use sac)")
    network = QNetwork(spaces.num_actions, config.hidden, config.activation, dueling=config.dueling, torso=config.torso,
                       image_shape=image_shape(env, env_params, config))
    buffer = replay_buffer(config.buffer_size, config.batch_size, config.batch_size)
    return DQN(config, env, env_params, spaces, network, buffer)


Config, Hparams = DQNConfig, DQNHparams
