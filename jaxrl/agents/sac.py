"""SAC: soft actor-critic with twin critics and a learned temperature (Haarnoja et al. 2018, "Soft Actor-Critic
Algorithms and Applications"), for continuous actions, with the replay buffer on the device (flashbax, in the carry).

    agent = make_agent(SACConfig(env_id="Pendulum-v1"))
    carry, metrics = jax.jit(agent.train)(key, agent.default_hparams())

One update, read top to bottom: `collect` (num_steps steps of every environment, uniform random actions until the
buffer holds learning_starts transitions, then samples of the policy), `store`, and `learn`: gradient_steps steps,
each on a minibatch drawn uniformly from the buffer,

    critics:  y = r + gamma (1 - terminated) [min_i Q_target_i(s', a') - alpha log pi(a'|s')],  a' ~ pi(s')
              loss = sum_i mean (Q_i(s, a) - y)^2                                    (paper eq. 5, two critics)
    actor:    loss = mean [alpha log pi(a~|s) - min_i Q_i(s, a~)],  a~ ~ pi(s) reparameterised   (eq. 7)
    alpha:    loss = mean [-log alpha (log pi(a~|s) + target_entropy)],  target_entropy = -scale * action_dim  (eq. 18)
    targets:  Q_target <- tau Q + (1 - tau) Q_target

with the bootstrap from each step's final observation (before any auto-reset): time limits bootstrap, terminal
states do not. The squashed Gaussian and its log-density are networks.squashed_sample.
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
from jaxrl.agents.offpolicy import FeedForwardAgent, Step, Transition, check_replay_settings, example_transition, filled, polyak, replay_buffer, rollout, transitions
from jaxrl.envs.errors import InvalidChoiceError, invalid_choice
from jaxrl.networks import ACTIVATIONS, SquashedGaussianActor, TwinCritic, squashed_sample
from jaxrl.networks import init_params as init_network


@dataclasses.dataclass(frozen=True)
class SACConfig:
    """Static settings (a change recompiles). Defaults: Pendulum-v1 with the usual SAC settings (256-256 ReLU
    networks, buffer of 100k, minibatches of 256, 1,000 random steps first, one gradient step per environment step)."""

    env_id: str = "Pendulum-v1"
    env_kwargs: tuple[tuple[str, Any], ...] = ()
    num_envs: int = 1
    num_steps: int = 1  # steps of every environment per update
    total_timesteps: int = 20_000
    buffer_size: int = 100_000
    batch_size: int = 256
    learning_starts: int = 1_000  # transitions in the buffer before learning (and acting by the policy) starts
    gradient_steps: int = 1  # per update
    hidden: tuple[int, ...] = (256, 256)
    activation: str = "relu"
    eval_episodes: int = 16
    eval_deterministic: bool = True  # the squashed mean action

    def validate(self) -> None:
        check_replay_settings(self)
        if self.activation not in ACTIVATIONS:
            raise invalid_choice("activation", self.activation, ACTIVATIONS)


_POSITIVE = (math.ulp(0.0), math.inf, "a number > 0")
_UNIT = (0.0, 1.0, "a number in [0, 1]")
HPARAM_RANGES = {"actor_lr": _POSITIVE, "critic_lr": _POSITIVE, "alpha_lr": _POSITIVE, "gamma": _UNIT, "tau": _UNIT,
                 "init_alpha": _POSITIVE, "target_entropy_scale": (-math.inf, math.inf, "a number")}


@struct.dataclass
class SACHparams:
    actor_lr: jax.Array = 3e-4
    critic_lr: jax.Array = 1e-3
    alpha_lr: jax.Array = 1e-3
    gamma: jax.Array = 0.99
    tau: jax.Array = 0.005
    init_alpha: jax.Array = 1.0
    target_entropy_scale: jax.Array = 1.0  # target entropy = -scale * action_dim


@struct.dataclass
class SACCarry:
    params: Any  # {"actor", "critic", "log_alpha"}
    target_critic: Any
    opt_state: Any  # {"actor", "critic", "log_alpha"}
    buffer: Any
    env_params: Any
    env_state: Any
    obs: jax.Array
    key: jax.Array
    update: jax.Array


@dataclasses.dataclass(frozen=True, eq=False)
class SAC(FeedForwardAgent):
    config: SACConfig
    env: Any
    default_env_params: Any
    spaces: Spaces
    actor: SquashedGaussianActor
    critic: TwinCritic
    buffer: Any
    hparam_ranges = HPARAM_RANGES

    def default_hparams(self) -> SACHparams:
        return as_float_tree(SACHparams())

    def sample(self, actor_params: Any, obs: jax.Array, key: jax.Array) -> tuple[jax.Array, jax.Array]:
        """A reparameterised action (B, d) of the policy and its log-probability (B,)."""
        mean, log_std = self.actor.apply(actor_params, obs)
        return squashed_sample(mean, log_std, jax.random.normal(key, mean.shape), self.spaces.low, self.spaces.high)

    def policy_action(self, params: Any, obs: jax.Array, key: jax.Array, deterministic: bool) -> jax.Array:
        """A sample of the policy; deterministic: the squashed mean."""
        mean, log_std = self.actor.apply(params["actor"], obs)
        noise = jnp.zeros_like(mean) if deterministic else jax.random.normal(key, mean.shape)
        return squashed_sample(mean, log_std, noise, self.spaces.low, self.spaces.high)[0]

    def optimizers(self, hparams: SACHparams) -> dict[str, optax.GradientTransformation]:
        return {"actor": optax.adam(hparams.actor_lr), "critic": optax.adam(hparams.critic_lr), "log_alpha": optax.adam(hparams.alpha_lr)}

    def init(self, key: jax.Array, hparams: SACHparams) -> SACCarry:
        key, actor_key, critic_key, env_key = jax.random.split(key, 4)
        obs_example, action_example = jnp.zeros((1, self.spaces.obs_dim)), jnp.zeros((1, self.spaces.action_dim))
        params = {
            "actor": init_network(self.actor, actor_key, obs_example),
            "critic": init_network(self.critic, critic_key, obs_example, action_example),
            "log_alpha": jnp.log(hparams.init_alpha),
        }
        opt_state = {name: opt.init(params[name]) for name, opt in self.optimizers(hparams).items()}
        env_params, env_state, obs = self.init_env(env_key)
        example = example_transition(self.env_stack(), obs[0], jnp.zeros(self.spaces.action_dim))
        return SACCarry(params, params["critic"], opt_state, self.buffer.init(example), env_params, env_state, obs, key, jnp.zeros((), jnp.int32))

    # -------------------------------------------------------------------------------- one update

    def buffer_size(self, carry: Any) -> jax.Array:
        return filled(carry.buffer, self.config.buffer_size)

    def collect(self, carry: SACCarry) -> tuple[SACCarry, Step]:
        key, rollout_key = jax.random.split(carry.key)
        warmup = self.buffer_size(carry) < self.config.learning_starts
        low, high = self.spaces.low, self.spaces.high

        def act(obs, k):
            uniform = jax.random.uniform(k, (obs.shape[0], self.spaces.action_dim), minval=low, maxval=high)
            return jnp.where(warmup, uniform, self.sample(carry.params["actor"], obs, k)[0]), None

        env_state, obs, steps = rollout(self.env_stack(), carry.env_params, carry.env_state, carry.obs, act, rollout_key, self.config.num_steps)
        return carry.replace(env_state=env_state, obs=obs, key=key), steps

    def store(self, carry: Any, steps: Step) -> Any:
        return carry.replace(buffer=self.buffer.add(carry.buffer, transitions(steps)))

    def critic_loss(self, critic_params: Any, params: Any, target_critic: Any, batch: Transition, key: jax.Array, gamma: jax.Array) -> tuple[jax.Array, dict]:
        next_action, next_log_prob = self.sample(params["actor"], batch.next_obs, key)
        next_q = self.critic.apply(target_critic, batch.next_obs, next_action).min(axis=0)
        soft_value = next_q - jnp.exp(params["log_alpha"]) * next_log_prob
        y = jax.lax.stop_gradient(batch.reward + gamma * (1.0 - batch.terminated.astype(jnp.float32)) * soft_value)
        q = self.critic.apply(critic_params, batch.obs, batch.action)  # (2, B)
        return ((q - y) ** 2).mean(axis=1).sum(), {"q_mean": q.mean()}

    def actor_loss(self, actor_params: Any, params: Any, batch: Transition, key: jax.Array) -> tuple[jax.Array, jax.Array]:
        action, log_prob = self.sample(actor_params, batch.obs, key)
        q = self.critic.apply(params["critic"], batch.obs, action).min(axis=0)
        return jnp.mean(jnp.exp(params["log_alpha"]) * log_prob - q), log_prob

    def alpha_loss(self, log_alpha: jax.Array, log_prob: jax.Array, target_entropy: jax.Array) -> jax.Array:
        return jnp.mean(-log_alpha * jax.lax.stop_gradient(log_prob + target_entropy))

    def gradient_step(self, carry: SACCarry, hparams: SACHparams, key: jax.Array) -> tuple[SACCarry, dict]:
        """Critics, then actor (against the updated critics), then temperature, then the target critics."""
        sample_key, critic_key, actor_key = jax.random.split(key, 3)
        batch = self.buffer.sample(carry.buffer, sample_key).experience
        opts, params, opt_state = self.optimizers(hparams), dict(carry.params), dict(carry.opt_state)

        def apply(name, grads):
            updates, opt_state[name] = opts[name].update(grads, opt_state[name], params[name])
            params[name] = optax.apply_updates(params[name], updates)

        (critic_loss, stats), grads = jax.value_and_grad(self.critic_loss, has_aux=True)(params["critic"], params, carry.target_critic, batch, critic_key, hparams.gamma)
        apply("critic", grads)
        (actor_loss, log_prob), grads = jax.value_and_grad(self.actor_loss, has_aux=True)(params["actor"], params, batch, actor_key)
        apply("actor", grads)
        target_entropy = -hparams.target_entropy_scale * self.spaces.action_dim
        alpha_loss, grads = jax.value_and_grad(self.alpha_loss)(params["log_alpha"], log_prob, target_entropy)
        apply("log_alpha", grads)
        target_critic = polyak(carry.target_critic, params["critic"], hparams.tau)
        metrics = {**stats, "loss": critic_loss + actor_loss, "critic_loss": critic_loss, "actor_loss": actor_loss, "alpha_loss": alpha_loss,
                   "alpha": jnp.exp(params["log_alpha"]), "entropy": -log_prob.mean()}
        return carry.replace(params=params, opt_state=opt_state, target_critic=target_critic), metrics

    def learn(self, carry: SACCarry, hparams: SACHparams) -> tuple[SACCarry, dict]:
        """`gradient_steps` steps; nothing changes before the buffer holds learning_starts transitions."""
        key, steps_key = jax.random.split(carry.key)
        new, stats = jax.lax.scan(lambda c, k: self.gradient_step(c, hparams, k), carry, jax.random.split(steps_key, self.config.gradient_steps))
        learning = self.buffer_size(carry) >= self.config.learning_starts
        keep = lambda n, o: jax.tree.map(lambda a, b: jnp.where(learning, a, b), n, o)
        new = carry.replace(params=keep(new.params, carry.params), opt_state=keep(new.opt_state, carry.opt_state),
                            target_critic=keep(new.target_critic, carry.target_critic), key=key, update=carry.update + 1)
        return new, {**{k: jnp.where(learning, v.mean(), 0.0) for k, v in stats.items()}, "learning": learning}

    def update(self, carry: SACCarry, hparams: SACHparams) -> tuple[SACCarry, dict]:
        carry, steps = self.collect(carry)
        carry = self.store(carry, steps)
        carry, metrics = self.learn(carry, hparams)
        return carry, {**metrics, **episode_metrics(steps), "buffer_size": self.buffer_size(carry)}


def make_agent(config: SACConfig) -> SAC:
    config.validate()
    env, env_params = envs.make(config.env_id, **dict(config.env_kwargs))
    spaces = spaces_of(env, env_params)
    if spaces.num_actions:
        raise InvalidChoiceError(f"sac needs continuous actions; {config.env_id!r} has discrete ones (use dqn or pqn)")
    actor = SquashedGaussianActor(spaces.action_dim, config.hidden, config.activation)
    critic = TwinCritic(config.hidden, config.activation)
    buffer = replay_buffer(config.buffer_size, config.batch_size, config.batch_size)
    return SAC(config, env, env_params, spaces, actor, critic, buffer)


Config, Hparams = SACConfig, SACHparams
