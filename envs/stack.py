"""The one recipe that turns a bare environment into what an agent trains on, or evaluates on.

    train_env = build_stack(env, StackSpec(num_envs=4, normalize_obs=True), reward_gamma=hparams.gamma)
    eval_env = build_stack(env, StackSpec(num_envs=64, normalize_obs=True), evaluation=True, obs_stats=stats)

Training: env -> FlattenObservation -> EpisodeStatistics -> VecEnv -> ClipAction -> NormalizeObservation ->
NormalizeReward (see wrappers.py for why in this order). Evaluation plays every episode once and masks it after
its end, so it skips the auto-reset (NoAutoReset) and the episode statistics, freezes the observation statistics
at the trained agent's and leaves rewards unscaled; otherwise it is the same stack, so the policy sees what it
saw in training.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxrl.envs.gymnax_import import spaces
from jaxrl.envs.running_stats import RunningMeanStd
from jaxrl.envs.wrappers import (
    ClipAction,
    EpisodeStatistics,
    EpisodeStatisticsState,
    FlattenObservation,
    NoAutoReset,
    NormalizeObservation,
    NormalizeObservationState,
    NormalizeReward,
    NormalizeRewardState,
    VecEnv,
)


@dataclasses.dataclass(frozen=True)
class StackSpec:
    """Static choices of the stack: batch size, per-copy parameters and the wrappers that are switched on."""

    num_envs: int
    clip_actions: bool = True  # continuous actions are clipped into the space (no effect on discrete ones)
    normalize_obs: bool = False
    normalize_reward: bool = False
    per_env_params: bool = False  # params carry a leading num_envs axis (levels as data, see VecEnv)


def build_stack(
    env: Any,
    spec: StackSpec,
    *,
    evaluation: bool = False,
    reward_gamma: float | jax.Array | None = None,
    obs_stats: RunningMeanStd | None = None,
) -> Any:
    """Wrap the bare `env` as `spec` says. reward_gamma: the discount of reward normalisation (training with
    `normalize_reward`); obs_stats: observation statistics to freeze (`normalize_obs`; required for evaluation,
    and used by a training stack to reset onto new levels without disturbing the statistics)."""
    params = env.default_params
    continuous = isinstance(env.action_space(params), spaces.Box)
    if evaluation and NoAutoReset.supports(env):
        env = NoAutoReset(env)
    if len(env.observation_space(params).shape) > 1:
        env = FlattenObservation(env)
    if not evaluation:
        env = EpisodeStatistics(env)
    env = VecEnv(env, spec.num_envs, per_env_params=spec.per_env_params)
    if spec.clip_actions and continuous:
        env = ClipAction(env)
    if spec.normalize_obs:
        if evaluation and obs_stats is None:
            raise ValueError("an evaluation stack with normalize_obs needs the trained agent's obs_stats")
        env = NormalizeObservation(env, stats=obs_stats)
    if spec.normalize_reward and not evaluation:
        if reward_gamma is None:
            raise ValueError("reward normalisation needs reward_gamma (the agent's discount)")
        env = NormalizeReward(env, gamma=reward_gamma)
    return env


def observation_size(env: Any, params: Any = None) -> int:
    """Length of the flat observation vector the stack produces."""
    return int(np.prod(env.observation_space(env.default_params if params is None else params).shape))


def compact_observations(env: Any, obs: jax.Array) -> jax.Array:
    """`obs` as a rollout or a replay buffer keeps them: bool when every observation of the stack `env` is 0 or 1 (the
    environment declares `binary_observations = True`, as MinAtar, the maze and the grid world do, and no wrapper
    rescales them), otherwise unchanged. Exact, and a quarter of float32's bytes to write, store and gather; the
    network layers take bool inputs as float32 (networks.Dense, networks.conv3x3)."""
    return obs.astype(jnp.bool_) if getattr(env, "binary_observations", False) else obs


def keep_statistics(old: Any, new: Any) -> Any:
    """`new` (a stack state just reset) with the running statistics of `old` (the same stack's state before):
    observation and return normalisation statistics, and the last finished episode's return and length. Used when
    environments are reset onto new levels in the middle of training."""
    if isinstance(new, NormalizeObservationState):
        return new.replace(env_state=keep_statistics(old.env_state, new.env_state), obs_stats=old.obs_stats)
    if isinstance(new, NormalizeRewardState):
        return new.replace(env_state=keep_statistics(old.env_state, new.env_state), return_stats=old.return_stats)
    if isinstance(new, EpisodeStatisticsState):
        return new.replace(
            returned_episode_return=old.returned_episode_return,
            returned_episode_length=old.returned_episode_length,
            has_finished=old.has_finished,
        )
    return new
