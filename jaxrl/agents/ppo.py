"""PPO family: one on-device training loop whose policy objective is a plug-in drift (jaxrl.objectives).

    agent = make_agent(PPOConfig(env_id="CartPole-v1"))
    carry, metrics = jax.jit(agent.train)(key, agent.default_hparams())

`train` is `init` followed by `lax.scan` of `update` over all updates, then an evaluation of the final policy.
Each update: a `lax.scan` over rollout steps, GAE, then `lax.scan` over epochs x minibatches. Everything that
changes a shape is in `PPOConfig`; everything else is an array in `PPOHparams`, so sweeps and seeds are vmaps.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from jaxrl import envs, objectives, prng
from jaxrl.envs.errors import InvalidChoiceError, invalid_choice
from jaxrl.networks import ACTIVATIONS, ActorCritic, RecurrentActorCritic, policy_noise, sample_with_noise
from jaxrl.networks import init_params as init_network
from jaxrl.returns import gae

CONTINUOUS_ACTIONS = ("clip", "tanh")
CLIP_FRAC_THRESHOLD = 0.2  # |r - 1| above this counts towards the reported clip fraction


@dataclasses.dataclass(frozen=True)
class PPOConfig:
    """Static settings: anything that changes a shape or the program. Sweeping one of these recompiles."""

    env_id: str = "CartPole-v1"
    env_kwargs: tuple[tuple[str, Any], ...] = ()
    num_envs: int = 4
    num_steps: int = 128  # rollout length per environment
    total_timesteps: int = 500_000
    update_epochs: int = 4
    num_minibatches: int = 4
    actor_hidden: tuple[int, ...] = (64, 64)
    critic_hidden: tuple[int, ...] = (64, 64)
    activation: str = "tanh"
    recurrent: bool = False  # GRU torso; minibatches then split environments, not single steps
    gru_size: int = 128
    objective: str = "ppo_clip"  # a name from jaxrl.objectives.NAMES or a saved objective file (.npz)
    objective_options: tuple[tuple[str, Any], ...] = ()
    continuous_actions: str = "clip"  # how a Gaussian sample reaches a bounded action space: clip or tanh
    normalize_obs: bool = False
    normalize_reward: bool = False
    reward_norm_gamma: float = 0.99
    anneal_lr: bool = True
    eval_episodes: int = 64
    eval_deterministic: bool = False

    @property
    def batch_size(self) -> int:
        return self.num_envs * self.num_steps

    @property
    def num_updates(self) -> int:
        return self.total_timesteps // self.batch_size

    def validate(self) -> None:
        if self.num_updates < 1:
            raise InvalidChoiceError(
                f"total_timesteps={self.total_timesteps} is less than one update of num_envs x num_steps = {self.batch_size}"
            )
        split = self.num_envs if self.recurrent else self.batch_size
        if split % self.num_minibatches:
            what = "num_envs" if self.recurrent else "num_envs x num_steps"
            raise InvalidChoiceError(f"num_minibatches={self.num_minibatches} must divide {what} = {split}")
        if self.activation not in ACTIVATIONS:
            raise invalid_choice("activation", self.activation, ACTIVATIONS)
        if self.continuous_actions not in CONTINUOUS_ACTIONS:
            raise invalid_choice("continuous_actions", self.continuous_actions, CONTINUOUS_ACTIONS)


@struct.dataclass
class PPOHparams:
    """Traced hyperparameters: changing a value never recompiles; a batch of them is a vmap axis."""

    lr: jax.Array = 2.5e-4
    gamma: jax.Array = 0.99
    gae_lambda: jax.Array = 0.95
    value_clip_eps: jax.Array = 0.2
    ent_coef: jax.Array = 0.01
    vf_coef: jax.Array = 0.5
    max_grad_norm: jax.Array = 0.5
    objective: Any = struct.field(default_factory=dict)  # the objective's parameters (see jaxrl.objectives)


@struct.dataclass
class PPOCarry:
    """Everything that changes during training; checkpointing this is checkpointing the run."""

    params: Any
    opt_state: Any
    env_state: Any
    obs: jax.Array  # (num_envs, obs_dim)
    hidden: jax.Array  # (num_envs, gru_size); (num_envs, 0) for feed-forward networks
    episode_start: jax.Array  # (num_envs,) bool: obs is the first of an episode (resets the GRU)
    key: jax.Array
    update: jax.Array  # int32 count of updates done


class Transition(NamedTuple):
    obs: jax.Array
    action: jax.Array
    log_prob: jax.Array
    value: jax.Array
    reward: jax.Array
    terminated: jax.Array
    done: jax.Array
    episode_start: jax.Array
    final_obs: jax.Array
    hidden_after: jax.Array
    episode_return: jax.Array  # of the last finished episode; counts where `done`


class Batch(NamedTuple):
    """One update's data: the rollout (T, N) with its advantages and targets, and the hidden state it began in."""

    hidden0: jax.Array  # (num_envs, gru_size or 0)
    traj: Transition
    advantages: jax.Array
    targets: jax.Array
    epoch_key: jax.Array  # shuffles the minibatches


def _flat(x: jax.Array) -> jax.Array:
    """(T, N, ...) -> (1, T * N, ...): a feed-forward batch as T * N length-1 sequences."""
    return x.reshape((1, x.shape[0] * x.shape[1]) + x.shape[2:])


class PPOAgent(NamedTuple):
    config: PPOConfig
    env: Any
    env_params: Any
    default_hparams: Callable[[], PPOHparams]
    init: Callable[[jax.Array, PPOHparams], PPOCarry]
    update: Callable[[PPOCarry, PPOHparams], tuple[PPOCarry, dict]]  # collect, then learn
    collect: Callable[[PPOCarry, PPOHparams], tuple[PPOCarry, Batch]]
    learn: Callable[[PPOCarry, Batch, PPOHparams], tuple[PPOCarry, dict]]
    evaluate: Callable[[PPOCarry, jax.Array], jax.Array]
    train: Callable[[jax.Array, PPOHparams], tuple[PPOCarry, dict]]
    num_updates: int


def _as_float_tree(tree: Any) -> Any:
    return jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), tree)


def make_agent(config: PPOConfig) -> PPOAgent:
    config.validate()
    objective, saved_objective_params = objectives.resolve(config.objective, **dict(config.objective_options))
    raw_env, env_params = envs.make(config.env_id, **dict(config.env_kwargs))

    obs_shape = tuple(raw_env.observation_space(env_params).shape)
    flatten = len(obs_shape) > 1
    base_env = envs.FlattenObservation(raw_env) if flatten else raw_env
    obs_dim = int(np.prod(obs_shape))
    action_space = base_env.action_space(env_params)
    discrete = isinstance(action_space, envs.Discrete)
    num_actions = int(action_space.n) if discrete else 0
    action_dim = 1 if discrete else int(np.prod(action_space.shape))

    env = envs.VecEnv(envs.EpisodeStatistics(base_env), config.num_envs)
    if not discrete and config.continuous_actions == "clip":
        env = envs.ClipAction(env)
    if config.normalize_obs:
        env = envs.NormalizeObservation(env)
    if config.normalize_reward:
        env = envs.NormalizeReward(env, gamma=config.reward_norm_gamma)

    def to_env_action(action):
        if discrete or config.continuous_actions == "clip":
            return action  # ClipAction clips continuous actions inside the environment stack
        low, high = action_space.low, action_space.high
        return low + 0.5 * (jnp.tanh(action) + 1.0) * (high - low)

    hidden_size = config.gru_size if config.recurrent else 0
    if config.recurrent:
        network = RecurrentActorCritic(
            num_actions, action_dim, config.gru_size, config.actor_hidden, config.critic_hidden, config.activation
        )

        def apply_seq(params, hidden, obs, starts):
            """obs (T, B, obs_dim), starts (T, B), hidden (B, H) -> (hidden after, pi, value (T, B))."""
            return network.apply(params, hidden, obs, starts)

        def init_params(key):
            return init_network(network, key, jnp.zeros((config.num_envs, hidden_size)), jnp.zeros((1, config.num_envs, obs_dim)), jnp.zeros((1, config.num_envs), bool))
    else:
        network = ActorCritic(num_actions, action_dim, config.actor_hidden, config.critic_hidden, config.activation)

        def apply_seq(params, hidden, obs, starts):
            pi, value = network.apply(params, obs)
            return hidden, pi, value

        def init_params(key):
            return init_network(network, key, jnp.zeros((1, obs_dim)))

    num_updates = config.num_updates
    grad_steps_per_update = config.update_epochs * config.num_minibatches

    def make_optimizer(hparams: PPOHparams) -> optax.GradientTransformation:
        if config.anneal_lr:

            def schedule(count):
                done_fraction = (count // grad_steps_per_update) / num_updates
                return hparams.lr * (1.0 - done_fraction)

            learning_rate = schedule
        else:
            learning_rate = hparams.lr
        return optax.chain(optax.clip_by_global_norm(hparams.max_grad_norm), optax.adam(learning_rate, eps=1e-5))

    def default_hparams() -> PPOHparams:
        obj_params = saved_objective_params if saved_objective_params is not None else objective.init(jax.random.key(0))
        return _as_float_tree(PPOHparams(objective=obj_params))

    def init(key: jax.Array, hparams: PPOHparams) -> PPOCarry:
        key, net_key, env_key = jax.random.split(key, 3)
        params = init_params(net_key)
        # JAX's own keys here: a reset's draw is sliced into the state's fields, and XLA copies a straight-line
        # hash into every slice (170-290 ms kernels), which costs more than JAX's loop.
        obs, env_state = env.reset(env_key, env_params)
        return PPOCarry(
            params=params,
            opt_state=make_optimizer(hparams).init(params),
            env_state=env_state,
            obs=obs,
            hidden=jnp.zeros((config.num_envs, hidden_size)),
            episode_start=jnp.ones((config.num_envs,), bool),
            key=key,
            update=jnp.zeros((), jnp.int32),
        )

    def rollout_step(params, state, xs):
        """One environment step for every environment. state: (env_state, obs, hidden, episode_start)."""
        env_state, obs, hidden, episode_start = state
        noise, step_key = xs
        hidden, pi, value = apply_seq(params, hidden, obs[None], episode_start[None])
        action = sample_with_noise(pi, noise[None])
        log_prob = pi.log_prob(action)
        action, log_prob, value = action[0], log_prob[0], value[0]
        next_obs, env_state, reward, terminated, truncated, info = env.step(step_key, env_state, to_env_action(action), env_params)
        done = jnp.logical_or(terminated, truncated)
        transition = Transition(
            obs=obs, action=action, log_prob=log_prob, value=value, reward=reward,
            terminated=terminated, done=done, episode_start=episode_start,
            final_obs=info["final_observation"], hidden_after=hidden,
            episode_return=info["episode_return"],
        )
        return (env_state, next_obs, hidden, done), transition

    def loss_fn(params, hparams: PPOHparams, batch, progress):
        hidden0, traj, advantages, targets = batch
        _, pi, value = apply_seq(params, hidden0, traj.obs, traj.episode_start)
        log_prob = pi.log_prob(traj.action)
        log_ratio = log_prob - traj.log_prob
        ratio = jnp.exp(log_ratio)
        adv = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        drift = objective.drift(hparams.objective, log_ratio, adv, progress)
        actor_loss = -jnp.mean(ratio * adv - drift)

        value_clipped = traj.value + jnp.clip(value - traj.value, -hparams.value_clip_eps, hparams.value_clip_eps)
        value_loss = 0.5 * jnp.mean(jnp.maximum((value - targets) ** 2, (value_clipped - targets) ** 2))
        entropy = jnp.mean(pi.entropy())
        total = actor_loss + hparams.vf_coef * value_loss - hparams.ent_coef * entropy
        stats = {
            "actor_loss": actor_loss,
            "value_loss": value_loss,
            "entropy": entropy,
            "approx_kl": jnp.mean(jnp.expm1(log_ratio) - log_ratio),
            "clip_frac": jnp.mean((jnp.abs(ratio - 1.0) > CLIP_FRAC_THRESHOLD).astype(jnp.float32)),
            "drift": jnp.mean(drift),
        }
        return total, stats

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def collect(carry: PPOCarry, hparams: PPOHparams) -> tuple[PPOCarry, Batch]:
        """Roll the current policy out for `num_steps` steps and compute advantages and value targets."""
        hidden0 = carry.hidden
        key, noise_key, rollout_key, epoch_key = jax.random.split(carry.key, 4)
        noise = policy_noise(prng.unrolled(noise_key), (config.num_steps, config.num_envs), num_actions, action_dim)
        # The environments draw random numbers at every step (batch split, auto-reset split, reset draw); the
        # straight-line threefry gives the same numbers faster inside the loop (see jaxrl.prng). For the noise it
        # is about compile time: JAX's threefry loop over a (num_steps, num_envs, actions) draw took 0.4 s to compile,
        # and each loop, even a split, costs 50-150 ms. (Straight-line draws whose result XLA slices for several
        # consumers are the exception; see `init`.)
        xs = (noise, jax.random.split(prng.unrolled(rollout_key), config.num_steps))
        state = (carry.env_state, carry.obs, carry.hidden, carry.episode_start)
        state, traj = jax.lax.scan(functools.partial(rollout_step, carry.params), state, xs)
        # An observation starts an episode iff the step before it ended one; deriving the flags after the loop
        # spares the loop storing them.
        traj = traj._replace(episode_start=jnp.concatenate([carry.episode_start[None], traj.done[:-1]]))
        env_state, obs, hidden, episode_start = state
        carry = carry.replace(env_state=env_state, obs=obs, hidden=hidden, episode_start=episode_start, key=key)

        # Values of the observations that followed each step, before any auto-reset (see returns.gae). A
        # feed-forward critic is also evaluated here for the rollout's own observations: one batched pass is
        # cheaper than a critic call per step (XLA drops the unused per-step critic).
        if config.recurrent:
            _, _, next_values = apply_seq(
                carry.params, _flat(traj.hidden_after)[0], _flat(traj.final_obs), jnp.zeros((1, config.batch_size), bool)
            )
        else:
            both = jnp.concatenate([_flat(traj.obs), _flat(traj.final_obs)], axis=1)
            _, _, both_values = apply_seq(carry.params, None, both, None)
            values, next_values = both_values[0, : config.batch_size], both_values[0, config.batch_size :]
            traj = traj._replace(value=values.reshape(traj.value.shape))
        next_values = next_values.reshape(traj.value.shape)
        advantages, targets = gae(traj.reward, traj.value, next_values, traj.terminated, traj.done, hparams.gamma, hparams.gae_lambda)
        return carry, Batch(hidden0, traj, advantages, targets, epoch_key)

    def learn(carry: PPOCarry, batch: Batch, hparams: PPOHparams) -> tuple[PPOCarry, dict]:
        """`update_epochs` passes of `num_minibatches` gradient steps over `batch`; returns per-update means."""
        # Minibatches split axis 1 of (time, column) arrays. Feed-forward: every sample is its own column of a
        # length-1 sequence; recurrent: every environment is a column, whole sequences stay together.
        if config.recurrent:
            hidden0, traj, advantages, targets = batch.hidden0, batch.traj, batch.advantages, batch.targets
        else:
            hidden0 = jnp.zeros((config.batch_size, 0))
            traj, advantages, targets = jax.tree.map(_flat, (batch.traj, batch.advantages, batch.targets))
        num_columns = advantages.shape[1]
        split = (config.num_minibatches, num_columns // config.num_minibatches)
        progress = carry.update.astype(jnp.float32) / num_updates
        optimizer = make_optimizer(hparams)

        def minibatch(state, mb):
            params, opt_state = state
            (loss, stats), grads = grad_fn(params, hparams, mb, progress)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            params = optax.apply_updates(params, updates)
            return (params, opt_state), {**stats, "loss": loss, "grad_norm": optax.global_norm(grads)}

        def epoch(state, perm):
            def shuffle(x, axis):
                # One gather per array and epoch, then minibatches on a new leading axis for the scan to slice.
                x = jnp.take(x, perm, axis=axis)
                return jnp.moveaxis(x.reshape(x.shape[:axis] + split + x.shape[axis + 1 :]), axis, 0)

            minibatches = (shuffle(hidden0, 0), jax.tree.map(lambda x: shuffle(x, 1), traj), shuffle(advantages, 1), shuffle(targets, 1))
            return jax.lax.scan(minibatch, state, minibatches)

        perms = prng.permutation(batch.epoch_key, num_columns, (config.update_epochs,))
        (params, opt_state), stats = jax.lax.scan(epoch, (carry.params, carry.opt_state), perms)

        finished = batch.traj.done.sum()
        metrics = {k: v.mean() for k, v in stats.items()}
        metrics["episode_return"] = (batch.traj.episode_return * batch.traj.done).sum() / jnp.maximum(finished, 1)
        metrics["episode_return_valid"] = finished > 0
        metrics["episodes"] = finished
        return carry.replace(params=params, opt_state=opt_state, update=carry.update + 1), metrics

    def update(carry: PPOCarry, hparams: PPOHparams) -> tuple[PPOCarry, dict]:
        carry, batch = collect(carry, hparams)
        return learn(carry, batch, hparams)

    eval_limit = int(getattr(env_params, "max_steps_in_episode", 1000))
    # Every evaluation episode is played once and masked after it ends, so the auto-reset is skipped where the
    # environment allows (see envs.NoAutoReset).
    eval_single = envs.NoAutoReset(raw_env) if envs.NoAutoReset.supports(raw_env) else raw_env
    eval_env = envs.VecEnv(envs.FlattenObservation(eval_single) if flatten else eval_single, config.eval_episodes)
    if not discrete and config.continuous_actions == "clip":
        eval_env = envs.ClipAction(eval_env)

    def evaluate(carry: PPOCarry, key: jax.Array) -> jax.Array:
        """Mean undiscounted return of the current policy over `eval_episodes` fresh episodes (one each)."""
        normalize = lambda obs: obs
        if config.normalize_obs:  # use the training statistics, frozen
            stats = _find_obs_stats(carry.env_state)
            normalize = lambda obs: jnp.clip((obs - stats.mean) / jnp.sqrt(stats.var + 1e-8), -10.0, 10.0)
        reset_key, noise_key, step_key = jax.random.split(key, 3)
        obs, env_state = eval_env.reset(reset_key, env_params)
        n = config.eval_episodes
        # As in `collect`: the action noise drawn once, straight-line environment keys (see jaxrl.prng).
        noise = policy_noise(prng.unrolled(noise_key), (eval_limit, n), num_actions, action_dim)
        xs = (noise, jax.random.split(prng.unrolled(step_key), eval_limit))

        def step(state, xs):
            obs, env_state, hidden, first, active, total = state
            noise, env_key = xs
            hidden, pi, _ = apply_seq(carry.params, hidden, normalize(obs)[None], first[None])
            action = pi.mode() if config.eval_deterministic else sample_with_noise(pi, noise[None])
            obs, env_state, reward, terminated, truncated, _ = eval_env.step(env_key, env_state, to_env_action(action[0]), env_params)
            total = total + reward * active
            active = active & ~(terminated | truncated)
            return (obs, env_state, hidden, jnp.zeros_like(first), active, total), None

        init_state = (obs, env_state, jnp.zeros((n, hidden_size)), jnp.ones((n,), bool), jnp.ones((n,), bool), jnp.zeros((n,)))
        final, _ = jax.lax.scan(step, init_state, xs)
        return final[-1].mean()

    def train(key: jax.Array, hparams: PPOHparams) -> tuple[PPOCarry, dict]:
        init_key, eval_key = jax.random.split(key)
        carry = init(init_key, hparams)
        carry, metrics = jax.lax.scan(lambda c, _: update(c, hparams), carry, None, num_updates)
        metrics["final_return"] = evaluate(carry, eval_key)
        return carry, metrics

    return PPOAgent(config, env, env_params, default_hparams, init, update, collect, learn, evaluate, train, num_updates)


def _find_obs_stats(env_state: Any):
    """The observation statistics inside a (possibly nested) wrapper state."""
    while not hasattr(env_state, "obs_stats"):
        env_state = env_state.env_state
    return env_state.obs_stats


# The names the CLI and the runner look up on every algorithm module.
Config, Hparams = PPOConfig, PPOHparams


def make_train(config: PPOConfig) -> Callable[[jax.Array, PPOHparams], tuple[PPOCarry, dict]]:
    """`train(key, hparams) -> (final carry, metrics)`; metrics are per-update arrays plus `final_return`."""
    return make_agent(config).train
