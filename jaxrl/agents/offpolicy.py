"""What the value-based and off-policy agents (PQN, DQN, SAC) share, and LPG with them: the environment stack they
train and evaluate on, a rollout of any acting function, exploration schedules, the replay buffer, and the acting /
evaluation members of the agent protocol for feed-forward policies (`FeedForwardAgent`, so `jaxrl.load`, `jaxrl
eval` and `jaxrl render` work for them unchanged).

Observations are not normalised and rewards not scaled for these agents: what they store and learn from is what
the environment gave.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import struct

from jaxrl import envs, speedups
from jaxrl.agents.base import Agent, Spaces, eval_limit
from jaxrl.envs.errors import InvalidChoiceError



class Step(NamedTuple):
    """One step of every environment copy; in a rollout each field gains a leading time axis (T, N, ...)."""

    obs: jax.Array  # bool for 0/1 observations (envs.compact_observations)
    action: jax.Array
    reward: jax.Array
    terminated: jax.Array  # a terminal state: nothing to bootstrap from
    done: jax.Array  # terminated or truncated (a time limit: bootstrap from final_obs)
    final_obs: jax.Array  # the observation after the step, before any auto-reset
    episode_return: jax.Array  # of the last finished episode; counts where `done`
    acted_with: Any = None  # what `act` computed besides the actions, e.g. PQN's max_a Q(obs, a) for its targets


def rollout(env: Any, env_params: Any, env_state: Any, obs: jax.Array, act: Callable[[jax.Array, jax.Array], tuple[jax.Array, Any]],
            key: jax.Array, num_steps: int) -> tuple[Any, jax.Array, Step]:
    """`num_steps` steps of the batched training stack `env`, actions from `act(obs (N, obs_dim), key) -> (actions
    (N, ...), anything else per environment or None)`; the second is kept as `Step.acted_with`, so an agent can
    reuse what acting computed instead of a second pass over the rollout. Returns (env_state, obs after the last
    step, Step with arrays (num_steps, N, ...))."""

    store = functools.partial(envs.compact_observations, env)

    def step(carry, step_key):
        env_state, obs = carry
        act_key, env_key = jax.random.split(step_key)
        action, acted_with = act(obs, act_key)
        next_obs, env_state, reward, terminated, truncated, info = env.step(env_key, env_state, action, env_params)
        done = terminated | truncated
        return (env_state, next_obs), Step(store(obs), action, reward, terminated, done, store(info["final_observation"]),
                                           info["episode_return"], acted_with)

    (env_state, obs), steps = jax.lax.scan(step, (env_state, obs), speedups.split_for_loop(key, num_steps))
    return env_state, obs, steps


def image_shape(env: Any, env_params: Any, config: Any) -> tuple[int, ...]:
    """The (H, W, C) observation a `torso: conv` Q-network unflattens; () for the dense torso."""
    if config.torso != "conv":
        return ()
    shape = tuple(env.observation_space(env_params).shape)
    if len(shape) != 3:
        raise InvalidChoiceError(f"torso=conv needs image observations (H, W, C); {config.env_id!r} has shape {shape}")
    return shape


def linear_schedule(start: jax.Array, end: jax.Array, fraction_done: jax.Array, duration: float) -> jax.Array:
    """start -> end linearly over the first `duration` (a fraction of training), then end."""
    return start + (end - start) * jnp.clip(fraction_done / max(duration, 1e-12), 0.0, 1.0)


def epsilon_greedy(q_values: jax.Array, epsilon: jax.Array, key: jax.Array) -> jax.Array:
    """Per row of q_values (N, A): a uniform random action with probability epsilon, else the greedy one."""
    explore_key, action_key = jax.random.split(key)
    greedy = jnp.argmax(q_values, axis=-1)
    random = jax.random.randint(action_key, greedy.shape, 0, q_values.shape[-1])
    return jnp.where(jax.random.uniform(explore_key, greedy.shape) < epsilon, random, greedy)


def polyak(target: Any, online: Any, tau: jax.Array) -> Any:
    """target <- tau * online + (1 - tau) * target (tau = 1 copies)."""
    return jax.tree.map(lambda t, o: tau * o + (1.0 - tau) * t, target, online)


# ---------------------------------------------------------------------------------------------- replay


def replay_buffer(capacity: int, batch_size: int, min_size: int) -> Any:
    """flashbax's uniform item buffer: a ring of `capacity` transitions in the carry (pure functions, so it vmaps over
    seeds and checkpoints with the rest of the carry); `add` takes a batch of items, `sample` draws `batch_size`
    uniformly from the filled slots."""
    import flashbax

    return flashbax.make_item_buffer(max_length=capacity, min_length=max(min_size, 1), sample_batch_size=batch_size, add_batches=True)


def check_replay_settings(config: Any) -> None:
    """The settings DQN and SAC share: an update's steps, the buffer, the minibatch and when learning starts."""
    steps = config.num_envs * config.num_steps
    if config.total_timesteps < steps:
        raise InvalidChoiceError(f"total_timesteps={config.total_timesteps} is less than one update of num_envs x num_steps = {steps}")
    if config.buffer_size < max(config.batch_size, steps):
        raise InvalidChoiceError(f"buffer_size={config.buffer_size} must hold a minibatch ({config.batch_size}) and an update's steps ({steps})")
    if config.learning_starts > config.buffer_size:
        raise InvalidChoiceError(f"learning_starts={config.learning_starts} is more than the buffer holds ({config.buffer_size})")


@struct.dataclass
class RolloutCarry:
    """The carry of an agent without a replay buffer (PQN, LPG): parameters, optimiser state, the environments."""

    params: Any
    opt_state: Any
    env_params: Any  # leading axis num_envs
    env_state: Any
    obs: jax.Array  # (num_envs, obs_dim)
    key: jax.Array
    update: jax.Array  # int32 count of updates done


class Transition(struct.PyTreeNode):
    """One stored step (the buffer adds leading axes)."""

    obs: jax.Array
    action: jax.Array
    reward: jax.Array
    terminated: jax.Array  # only a terminal state stops the bootstrap; a time limit does not
    next_obs: jax.Array  # the final observation of the step (before any auto-reset)


def transitions(steps: Step) -> Transition:
    """A rollout's steps (T, N, ...) as T * N transitions to store."""
    flat = lambda x: x.reshape(-1, *x.shape[2:])
    return Transition(flat(steps.obs), flat(steps.action), flat(steps.reward), flat(steps.terminated), flat(steps.final_obs))


def example_transition(env: Any, obs: jax.Array, action: jax.Array) -> Transition:
    """One transition shaped and typed as the rollout stores it (observations compacted as by `rollout`), from one
    observation and one action: what a replay buffer is initialised with."""
    stored = envs.compact_observations(env, obs)
    return Transition(stored, action, jnp.zeros(()), jnp.zeros((), bool), stored)


def filled(buffer_state: Any, capacity: int) -> jax.Array:
    """How many transitions a flashbax item buffer holds."""
    return jnp.where(buffer_state.is_full, capacity, buffer_state.current_index)


class FeedForwardAgent(Agent):
    """Acting and evaluation for agents whose policy is `policy_action(params, obs, key, deterministic)`: a subclass sets
    `env`, `default_env_params`, `spaces` and `config` (with `num_envs`, `num_steps`, `eval_episodes`) and defines
    `policy_action`. Feed-forward policies: no recurrent state."""

    env: Any
    default_env_params: Any
    spaces: Spaces

    @property
    def steps_per_update(self) -> int:
        return self.config.num_envs * self.config.num_steps

    @property
    def num_updates(self) -> int:
        return self.config.total_timesteps // self.steps_per_update

    def env_stack(self, *, evaluation: bool = False, eval_levels: int = 0) -> Any:
        """The training stack (num_envs copies, each with its own parameters), or the evaluation stack: eval_episodes
        copies of the default parameters, or with eval_levels > 0 that many copies each with its own (levels)."""
        spec = envs.StackSpec(num_envs=eval_levels or (self.config.eval_episodes if evaluation else self.config.num_envs),
                              clip_actions=True, per_env_params=not evaluation or eval_levels > 0)
        return envs.build_stack(self.env, spec, evaluation=evaluation)

    def init_env(self, key: jax.Array) -> tuple[Any, Any, jax.Array]:
        """(per-copy env params, env state, first observations (num_envs, obs_dim)) of the training stack."""
        env = self.env_stack()
        env_params = env.batch_params(self.default_env_params)
        obs, env_state = env.reset(key, env_params)
        return env_params, env_state, obs

    def reset_to(self, carry: Any, env_params: Any, key: jax.Array, hparams: Any = None) -> Any:
        """Put new levels in the carry (`env_params` with a leading axis of num_envs) and start a fresh episode on
        each; the episode statistics carry over. (PPO.reset_to's signature, so callers treat agents alike.)"""
        obs, env_state = self.env_stack().reset(key, env_params)
        return carry.replace(env_params=env_params, env_state=envs.keep_statistics(carry.env_state, env_state), obs=obs)

    def policy_action(self, params: Any, obs: jax.Array, key: jax.Array, deterministic: bool) -> jax.Array:
        raise NotImplementedError

    def act(self, params: Any, obs: jax.Array, key: jax.Array, deterministic: bool = False) -> jax.Array:
        """Actions (B, ...) for observations obs (B, obs_dim), inside the action space."""
        return self.policy_action(params, obs, key, deterministic)

    def policy_state(self, carry: Any) -> dict[str, Any]:
        """What acting needs after training: the parameters (observations are not normalised)."""
        return {"params": carry.params, "obs_stats": None}

    def act_with(self, state: dict[str, Any], obs: jax.Array, key: jax.Array, deterministic: bool = False) -> jax.Array:
        return self.act(state["params"], obs, key, deterministic)

    def initial_hidden(self, batch: int) -> jax.Array:
        return jnp.zeros((batch, 0))

    def policy_step(self, state: dict[str, Any], hidden: jax.Array, obs: jax.Array, first: jax.Array, key: jax.Array,
                    deterministic: bool = False) -> tuple[jax.Array, jax.Array]:
        """`act_with` in the recurrent form `jaxrl render` plays (no memory to carry)."""
        return hidden, self.act_with(state, obs, key, deterministic)

    def eval_limit(self) -> int:
        return eval_limit(self.config, self.default_env_params)

    def episode_returns(self, state: dict[str, Any], key: jax.Array, levels: Any = None) -> jax.Array:
        """Undiscounted returns (n,) of one fresh episode each of the policy `state`, acting as `eval_deterministic`
        says (greedy by default), each episode masked after its end: n = eval_episodes on the default environment,
        or one episode on each of `levels` (environment parameters with a leading axis n)."""
        n = self.config.eval_episodes if levels is None else jax.tree.leaves(levels)[0].shape[0]
        limit = self.eval_limit()
        env = self.env_stack(evaluation=True, eval_levels=0 if levels is None else n)
        env_params = self.default_env_params if levels is None else levels
        reset_key, step_key = jax.random.split(key)
        obs, env_state = env.reset(reset_key, env_params)

        def step(carry, step_key):
            obs, env_state, active, total = carry
            act_key, env_key = jax.random.split(step_key)
            action = self.act_with(state, obs, act_key, self.config.eval_deterministic)
            obs, env_state, reward, terminated, truncated, _ = env.step(env_key, env_state, action, env_params)
            return (obs, env_state, active & ~(terminated | truncated), total + reward * active), None

        start = (obs, env_state, jnp.ones((n,), bool), jnp.zeros((n,)))
        (_, _, _, total), _ = jax.lax.scan(step, start, speedups.split_for_loop(step_key, limit))
        return total

    def evaluate(self, carry: Any, key: jax.Array) -> jax.Array:
        """Mean undiscounted return of the current policy over `eval_episodes` fresh episodes."""
        return self.episode_returns(self.policy_state(carry), key).mean()


class QAgent(FeedForwardAgent):
    """An agent whose policy is epsilon-greedy in the values of `network` (PQN, DQN). A subclass defines
    `epsilon(carry, hparams)` (its exploration schedule) and sets `acting_epsilon`, the rate a trained policy acts
    with when not deterministic."""

    network: Any
    acting_epsilon: float

    def q_values(self, params: Any, obs: jax.Array) -> jax.Array:
        """Q(s, .) (B, num_actions) for observations obs (B, obs_dim)."""
        return self.network.apply(params, obs)

    def policy_action(self, params: Any, obs: jax.Array, key: jax.Array, deterministic: bool) -> jax.Array:
        """Greedy actions; not deterministic: epsilon-greedy with `acting_epsilon`."""
        return epsilon_greedy(self.q_values(params, obs), 0.0 if deterministic else self.acting_epsilon, key)

    def epsilon(self, carry: Any, hparams: Any) -> jax.Array:
        raise NotImplementedError

    def collect(self, carry: Any, hparams: Any) -> tuple[Any, Step]:
        """`num_steps` epsilon-greedy steps of every environment with the current network: Step arrays (T, N, ...),
        with max_a Q(obs, a) as `acted_with`."""
        key, rollout_key = jax.random.split(carry.key)
        epsilon = self.epsilon(carry, hparams)

        def act(obs, k):  # the greedy value is kept: PQN's targets bootstrap from it
            q = self.q_values(carry.params, obs)
            return epsilon_greedy(q, epsilon, k), q.max(axis=-1)

        env_state, obs, steps = rollout(self.env_stack(), carry.env_params, carry.env_state, carry.obs, act, rollout_key, self.config.num_steps)
        return carry.replace(env_state=env_state, obs=obs, key=key), steps
