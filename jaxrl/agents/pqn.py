"""PQN: parallel Q-learning (Gallici et al. 2024, "Simplifying Deep Temporal Difference Learning").

    agent = make_agent(PQNConfig(env_id="CartPole-v1"))
    carry, metrics = jax.jit(agent.train)(key, agent.default_hparams())

No replay buffer and no target network: many environments in parallel decorrelate the data, and LayerNorm in the
Q-network keeps the bootstrapped regression stable. One update, read top to bottom: `collect` (epsilon-greedy
rollout of the current network), `targets` (Peng's Q(lambda) over the rollout, jaxrl.returns.q_lambda_returns),
`learn` (epochs x minibatches of the squared TD error 0.5 (Q(s, a) - G)^2).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

from jaxrl import envs, speedups
from jaxrl.agents.base import RolloutConfig, Spaces, as_float_tree, episode_metrics, spaces_of
from jaxrl.agents.offpolicy import QAgent, RolloutCarry, Step, image_shape, linear_schedule
from jaxrl.envs.errors import InvalidChoiceError, invalid_choice
from jaxrl.networks import ACTIVATIONS, Q_TORSOS, QNetwork
from jaxrl.networks import init_params as init_network
from jaxrl.returns import q_lambda_returns, values_after


@dataclasses.dataclass(frozen=True)
class PQNConfig(RolloutConfig):
    """Static settings (a change recompiles). Defaults: purejaxql's CartPole setting (pqn_cartpole.yaml; its
    MinAtar one is experiments/configs/pqn_minatar.yaml)."""

    env_id: str = "CartPole-v1"
    env_kwargs: tuple[tuple[str, Any], ...] = ()
    num_envs: int = 32
    num_steps: int = 64
    total_timesteps: int = 500_000
    update_epochs: int = 4
    num_minibatches: int = 16
    hidden: tuple[int, ...] = (256, 256)
    torso: str = "dense"  # or "conv": MinAtar's 16-filter 3x3 convolution (VALID) before the layers (networks.QNetwork)
    activation: str = "relu"
    layer_norm: bool = True
    epsilon_decay: float = 0.2  # fraction of training over which epsilon goes from eps_start to eps_finish
    anneal_lr: bool = True  # linearly to 0 over training
    eval_episodes: int = 64
    eval_deterministic: bool = True  # greedy evaluation

    def validate(self) -> None:
        self.check_num_updates()
        if self.batch_size % self.num_minibatches:
            raise InvalidChoiceError(f"num_minibatches={self.num_minibatches} must divide num_envs x num_steps = {self.batch_size}")
        if self.activation not in ACTIVATIONS:
            raise invalid_choice("activation", self.activation, ACTIVATIONS)
        if self.torso not in Q_TORSOS:
            raise invalid_choice("torso", self.torso, Q_TORSOS)


_POSITIVE = (math.ulp(0.0), math.inf, "a number > 0")
_UNIT = (0.0, 1.0, "a number in [0, 1]")
HPARAM_RANGES = {"lr": _POSITIVE, "gamma": _UNIT, "q_lambda": _UNIT, "eps_start": _UNIT, "eps_finish": _UNIT, "max_grad_norm": _POSITIVE,
                 "reward_scale": _POSITIVE}


@struct.dataclass
class PQNHparams:
    """Traced hyperparameters (a sweep over them is a vmap)."""

    lr: jax.Array = 1e-4
    gamma: jax.Array = 0.99
    q_lambda: jax.Array = 0.95
    eps_start: jax.Array = 1.0
    eps_finish: jax.Array = 0.2
    max_grad_norm: jax.Array = 10.0
    reward_scale: jax.Array = 0.1  # rewards are multiplied by it in the targets (the returns reported are unscaled)


@dataclasses.dataclass(frozen=True, eq=False)
class PQN(QAgent):
    config: PQNConfig
    env: Any
    default_env_params: Any
    spaces: Spaces
    network: QNetwork
    hparam_ranges = HPARAM_RANGES
    acting_epsilon = PQNHparams.eps_finish

    def default_hparams(self) -> PQNHparams:
        return as_float_tree(PQNHparams())

    def make_optimizer(self, hparams: PQNHparams) -> optax.GradientTransformation:
        c = self.config
        steps = c.update_epochs * c.num_minibatches
        lr = (lambda count: hparams.lr * (1.0 - (count // steps) / c.num_updates)) if c.anneal_lr else hparams.lr
        return optax.chain(optax.clip_by_global_norm(hparams.max_grad_norm), optax.radam(lr))

    def init(self, key: jax.Array, hparams: PQNHparams) -> RolloutCarry:
        key, net_key, env_key = jax.random.split(key, 3)
        params = init_network(self.network, net_key, jnp.zeros((1, self.spaces.obs_dim)))
        env_params, env_state, obs = self.init_env(env_key)
        return RolloutCarry(params, self.make_optimizer(hparams).init(params), env_params, env_state, obs, key, jnp.zeros((), jnp.int32))

    # -------------------------------------------------------------------------------- one update

    def epsilon(self, carry: RolloutCarry, hparams: PQNHparams) -> jax.Array:
        return linear_schedule(hparams.eps_start, hparams.eps_finish, carry.update / self.num_updates, self.config.epsilon_decay)

    def targets(self, params: Any, steps: Step, last_obs: jax.Array, hparams: PQNHparams) -> jax.Array:
        """Q(lambda) targets (T, N), bootstrapping from max_a Q of the observation after each step before any
        auto-reset, so time limits bootstrap and terminal states do not. That is the max the rollout computed to act
        at the next step (`acted_with`), Q of `last_obs` (N, obs_dim) after the last step, and Q of the final
        observation only at time limits (returns.values_after): no second pass over the rollout."""
        q_max = lambda obs: self.q_values(params, obs).max(axis=-1)
        at_time_limit = lambda rows: q_max(rows(steps.final_obs))
        next_q_max = values_after(steps.acted_with, q_max(last_obs), steps.done & ~steps.terminated, at_time_limit)
        rewards = steps.reward * hparams.reward_scale
        return q_lambda_returns(rewards, next_q_max, steps.terminated, steps.done, hparams.gamma, hparams.q_lambda)

    def loss(self, params: Any, obs: jax.Array, action: jax.Array, target: jax.Array) -> tuple[jax.Array, dict]:
        q = jnp.take_along_axis(self.q_values(params, obs), action[..., None], axis=-1)[..., 0]
        return 0.5 * jnp.mean((q - target) ** 2), {"q_mean": q.mean()}

    def learn(self, carry: RolloutCarry, steps: Step, targets: jax.Array, hparams: PQNHparams) -> tuple[RolloutCarry, dict]:
        """`update_epochs` passes of `num_minibatches` gradient steps over the rollout's (obs, action, target)."""
        c = self.config
        key, epoch_key = jax.random.split(carry.key)
        data = jax.tree.map(lambda x: x.reshape(c.batch_size, *x.shape[2:]), (steps.obs, steps.action, jax.lax.stop_gradient(targets)))
        optimizer = self.make_optimizer(hparams)
        grad_fn = jax.value_and_grad(self.loss, has_aux=True)

        def minibatch_step(state, minibatch):
            params, opt_state = state
            (loss, stats), grads = grad_fn(params, *minibatch)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), {**stats, "loss": loss, "grad_norm": optax.tree.norm(grads)}

        def epoch(state, perm):
            minibatches = jax.tree.map(lambda x: x[perm].reshape(c.num_minibatches, -1, *x.shape[1:]), data)
            return jax.lax.scan(minibatch_step, state, minibatches)

        perms = speedups.permutations(epoch_key, c.batch_size, (c.update_epochs,))
        (params, opt_state), stats = jax.lax.scan(epoch, (carry.params, carry.opt_state), perms)
        return carry.replace(params=params, opt_state=opt_state, key=key, update=carry.update + 1), {k: v.mean() for k, v in stats.items()}

    def update(self, carry: RolloutCarry, hparams: PQNHparams) -> tuple[RolloutCarry, dict]:
        epsilon = self.epsilon(carry, hparams)
        carry, steps = self.collect(carry, hparams)
        targets = self.targets(carry.params, steps, carry.obs, hparams)
        carry, metrics = self.learn(carry, steps, targets, hparams)
        return carry, {**metrics, **episode_metrics(steps), "epsilon": epsilon}


def make_agent(config: PQNConfig) -> PQN:
    config.validate()
    env, env_params = envs.make(config.env_id, **dict(config.env_kwargs))
    spaces = spaces_of(env, env_params)
    if not spaces.num_actions:
        raise InvalidChoiceError(f"pqn needs discrete actions; {config.env_id!r} has continuous ones (use sac)")
    network = QNetwork(spaces.num_actions, config.hidden, config.activation, config.layer_norm, torso=config.torso,
                       image_shape=image_shape(env, env_params, config))
    return PQN(config, env, env_params, spaces, network)


Config, Hparams = PQNConfig, PQNHparams
