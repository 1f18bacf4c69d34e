"""Wrappers over the gymnax 1.0 protocol. Each keeps what it needs in its own state dataclass, so a wrapped
environment is still a pair of pure functions and vmaps like the bare one.

Typical order for training: env -> FlattenObservation -> EpisodeStatistics -> VecEnv -> ClipAction ->
NormalizeObservation -> NormalizeReward. Episode statistics sit inside the normalisers so they count raw
rewards; the normalisers sit outside VecEnv so their statistics are shared by the environment batch (and, under
a vmap over seeds, kept apart per seed).

`terminated` and `truncated` pass through every wrapper unchanged.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from jaxrl.envs.gymnax_import import spaces
from jaxrl.envs.running_stats import RunningMeanStd, init_running_stats, update_running_stats

StepResult = tuple[Any, Any, jax.Array, jax.Array, jax.Array, dict]


class Wrapper:
    """Forwards every attribute it does not define to the wrapped environment, except `binary_observations`: 0/1
    observations are stored as bool (stack.compact_observations), which would silently round the observations of
    a wrapper that rescales them. So a wrapper passes the declaration on only if it says it returns the wrapped
    environment's observation values unchanged (reshaped at most): `keeps_observation_values = True`. The default
    is the safe answer; a wrapper of one's own that keeps the values sets it to keep the smaller rollouts."""

    keeps_observation_values = False

    def __init__(self, env: Any):
        self.env = env

    @property
    def binary_observations(self) -> bool:
        return self.keeps_observation_values and getattr(self.env, "binary_observations", False)

    def __getattr__(self, name: str) -> Any:
        if name == "env":  # not yet set (e.g. during unpickling): avoid infinite recursion
            raise AttributeError(name)
        return getattr(self.env, name)

    def reset(self, key: jax.Array, params: Any = None) -> tuple[Any, Any]:
        return self.env.reset(key, params)

    def step(self, key: jax.Array, state: Any, action: Any, params: Any = None) -> StepResult:
        return self.env.step(key, state, action, params)


class FlattenObservation(Wrapper):
    """Observations become 1-D (e.g. MinAtar's 10x10xC grids). Apply to a single, unbatched environment."""

    keeps_observation_values = True

    def observation_space(self, params: Any = None) -> spaces.Box:
        space = self.env.observation_space(params)
        size = int(jnp.prod(jnp.asarray(space.shape)))
        low = jnp.broadcast_to(jnp.asarray(space.low), space.shape).reshape(size)
        high = jnp.broadcast_to(jnp.asarray(space.high), space.shape).reshape(size)
        return spaces.Box(low, high, (size,), space.dtype)

    def reset(self, key, params=None):
        obs, state = self.env.reset(key, params)
        return obs.reshape(-1), state

    def step(self, key, state, action, params=None):
        obs, state, reward, terminated, truncated, info = self.env.step(key, state, action, params)
        info = {**info, "final_observation": info["final_observation"].reshape(-1)}
        return obs.reshape(-1), state, reward, terminated, truncated, info


@struct.dataclass
class EpisodeStatisticsState:
    env_state: Any
    episode_return: jax.Array  # running sum of the current episode
    episode_length: jax.Array
    returned_episode_return: jax.Array  # of the last finished episode (0 until one finishes)
    returned_episode_length: jax.Array
    has_finished: jax.Array  # bool: has any episode finished yet? Until then the two above are not real


class EpisodeStatistics(Wrapper):
    """Tracks undiscounted episode return and length. Adds to `info`: `episode_return`, `episode_length` (of the
    last finished episode), `episode_done` (an episode ended at this step) and `has_finished`."""

    keeps_observation_values = True

    def reset(self, key, params=None):
        obs, env_state = self.env.reset(key, params)
        zero_f, zero_i = jnp.zeros((), jnp.float32), jnp.zeros((), jnp.int32)
        return obs, EpisodeStatisticsState(env_state, zero_f, zero_i, zero_f, zero_i, jnp.zeros((), bool))

    def step(self, key, state, action, params=None):
        obs, env_state, reward, terminated, truncated, info = self.env.step(key, state.env_state, action, params)
        done = jnp.logical_or(terminated, truncated)
        ep_return = state.episode_return + reward.astype(jnp.float32)
        ep_length = state.episode_length + 1
        new_state = EpisodeStatisticsState(
            env_state=env_state,
            episode_return=jnp.where(done, 0.0, ep_return),
            episode_length=jnp.where(done, 0, ep_length),
            returned_episode_return=jnp.where(done, ep_return, state.returned_episode_return),
            returned_episode_length=jnp.where(done, ep_length, state.returned_episode_length),
            has_finished=jnp.logical_or(state.has_finished, done),
        )
        info = {
            **info,
            "episode_return": new_state.returned_episode_return,
            "episode_length": new_state.returned_episode_length,
            "episode_done": done,
            "has_finished": new_state.has_finished,
        }
        return obs, new_state, reward, terminated, truncated, info


class VecEnv(Wrapper):
    """`num_envs` copies stepped together: keys are split, states and actions gain a leading axis of `num_envs`.

    Environment parameters are data. By default all copies share `params`; with `per_env_params=True`, `params`
    has a leading axis of `num_envs` and copy i runs with `params[i]` (domain randomisation and level replay are
    then a batch of parameters, not code; `batch_params` makes one from a single value)."""

    keeps_observation_values = True

    def __init__(self, env: Any, num_envs: int, per_env_params: bool = False):
        super().__init__(env)
        if int(num_envs) < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.num_envs = int(num_envs)
        self.per_env_params = per_env_params
        self._params_axis = 0 if per_env_params else None

    def _one(self, params: Any) -> Any:
        return jax.tree.map(lambda x: x[0], params) if self.per_env_params and params is not None else params

    # Spaces are those of the first copy: shapes are static, so every copy shares them.
    def observation_space(self, params: Any = None) -> Any:
        return self.env.observation_space(self._one(params))

    def action_space(self, params: Any = None) -> Any:
        return self.env.action_space(self._one(params))

    def batch_params(self, params: Any) -> Any:
        """One parameter pytree -> the same for every copy, with a leading axis of `num_envs`."""
        return jax.tree.map(lambda x: jnp.broadcast_to(jnp.asarray(x), (self.num_envs, *jnp.shape(x))), params)

    def reset(self, key, params=None):
        keys = jax.random.split(key, self.num_envs)
        return jax.vmap(self.env.reset, in_axes=(0, self._params_axis))(keys, params)

    def step(self, key, state, action, params=None):
        keys = jax.random.split(key, self.num_envs)
        return jax.vmap(self.env.step, in_axes=(0, 0, 0, self._params_axis))(keys, state, action, params)


class NoAutoReset(Wrapper):
    """`step` without the auto-reset: when an episode ends the environment is not reset, and what it returns after
    that means nothing. For evaluation, where every environment plays one episode and later steps are masked:
    skipping the reset skips its random draws and state selects, which were a third of the compile time of PPO's
    evaluation on CartPole.

    Uses the gymnax split of `step` into `step_env` and `is_truncated` (every gymnax environment and `BraxEnv`
    have it), so it wraps a bare environment; `supports` says whether one can be wrapped.
    """

    keeps_observation_values = True

    def __init__(self, env: Any):
        if not self.supports(env):
            raise TypeError(f"NoAutoReset needs a bare environment with step_env and is_truncated, got {type(env).__name__}")
        super().__init__(env)

    @staticmethod
    def supports(env: Any) -> bool:
        # A wrapper forwards step_env to the environment inside it, which would skip the wrapper's own step.
        return not isinstance(env, Wrapper) and callable(getattr(env, "step_env", None)) and callable(getattr(env, "is_truncated", None))

    def step(self, key, state, action, params=None):
        params = self.env.default_params if params is None else params
        obs, state, reward, terminated, info = self.env.step_env(key, state, action, params)
        truncated = self.env.is_truncated(state, params)
        info = {**info, "terminated": terminated, "truncated": truncated, "final_observation": obs}
        return obs, state, reward, terminated, truncated, info


class ClipAction(Wrapper):
    """Clips continuous actions into the action space's bounds before they reach the environment."""

    keeps_observation_values = True

    def step(self, key, state, action, params=None):
        space = self.env.action_space(params)
        return self.env.step(key, state, jnp.clip(action, space.low, space.high), params)


@struct.dataclass
class NormalizeObservationState:
    env_state: Any
    obs_stats: RunningMeanStd


class NormalizeObservation(Wrapper):
    """Normalises observations by running mean and variance, updated with every observation it returns (all
    leading axes, e.g. a VecEnv batch, count as samples). `final_observation` is normalised the same way, so a
    value bootstrap sees what the network sees.

    With `stats` given (e.g. a trained agent's, see `find_obs_stats`), the statistics are frozen at those
    values: evaluation sees observations exactly as training's last update saw them."""

    def __init__(self, env: Any, clip: float | None = 10.0, eps: float = 1e-8, stats: RunningMeanStd | None = None):
        super().__init__(env)
        self.clip, self.eps, self.frozen_stats = clip, eps, stats

    def _normalize(self, stats: RunningMeanStd, obs: jax.Array) -> jax.Array:
        return normalize_observation(stats, obs, self.clip, self.eps)

    def _update(self, stats: RunningMeanStd, obs: jax.Array) -> RunningMeanStd:
        return stats if self.frozen_stats is not None else update_running_stats(stats, obs)

    def reset(self, key, params=None):
        obs, env_state = self.env.reset(key, params)
        if self.frozen_stats is not None:
            stats = self.frozen_stats
        else:
            stats = update_running_stats(init_running_stats(tuple(self.env.observation_space(params).shape)), obs)
        return self._normalize(stats, obs), NormalizeObservationState(env_state, stats)

    def step(self, key, state, action, params=None):
        obs, env_state, reward, terminated, truncated, info = self.env.step(key, state.env_state, action, params)
        stats = self._update(state.obs_stats, obs)
        info = {**info, "final_observation": self._normalize(stats, info["final_observation"])}
        return self._normalize(stats, obs), NormalizeObservationState(env_state, stats), reward, terminated, truncated, info


def normalize_observation(stats: RunningMeanStd, obs: jax.Array, clip: float | None = 10.0, eps: float = 1e-8) -> jax.Array:
    """(obs - mean) / sqrt(var + eps), clipped to [-clip, clip]: what `NormalizeObservation` feeds the agent."""
    out = (obs - stats.mean) / jnp.sqrt(stats.var + eps)
    return out if clip is None else jnp.clip(out, -clip, clip)


def find_obs_stats(env_state: Any) -> RunningMeanStd:
    """The observation statistics inside a (possibly nested) wrapper state."""
    while not isinstance(env_state, NormalizeObservationState):
        if not hasattr(env_state, "env_state"):
            raise ValueError("no NormalizeObservation in this environment stack")
        env_state = env_state.env_state
    return env_state.obs_stats


@struct.dataclass
class NormalizeRewardState:
    env_state: Any
    discounted_return: jax.Array  # per environment, reset at episode ends
    return_stats: RunningMeanStd  # scalar statistics of the discounted return


class NormalizeReward(Wrapper):
    """Scales rewards by the running standard deviation of the discounted return (as in the published PPO
    implementations); the mean is not subtracted, so the sign of a reward is kept. `gamma` may be a traced array:
    an agent passes its own (swept) discount, so the two stay consistent without a recompile."""

    keeps_observation_values = True

    def __init__(self, env: Any, gamma: float | jax.Array, clip: float | None = 10.0, eps: float = 1e-8):
        super().__init__(env)
        self.gamma, self.clip, self.eps = gamma, clip, eps

    def reset(self, key, params=None):
        obs, env_state = self.env.reset(key, params)
        obs_ndim = len(self.env.observation_space(params).shape)
        batch_shape = jnp.shape(obs)[: jnp.ndim(obs) - obs_ndim]  # () for one env, (num_envs,) under VecEnv
        state = NormalizeRewardState(env_state, jnp.zeros(batch_shape, jnp.float32), init_running_stats(()))
        return obs, state

    def step(self, key, state, action, params=None):
        obs, env_state, reward, terminated, truncated, info = self.env.step(key, state.env_state, action, params)
        discounted = state.discounted_return * self.gamma + reward
        stats = update_running_stats(state.return_stats, discounted)
        scaled = reward / jnp.sqrt(stats.var + self.eps)
        if self.clip is not None:
            scaled = jnp.clip(scaled, -self.clip, self.clip)
        done = jnp.logical_or(terminated, truncated)
        new_state = NormalizeRewardState(env_state, jnp.where(done, 0.0, discounted), stats)
        return obs, new_state, scaled, terminated, truncated, info
