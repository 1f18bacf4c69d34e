"""Level score functions for PLR / ACCEL: how much a level is worth replaying, from the student's rollout on it.

All take time-major arrays with the time axis first, (T, ...) with any trailing batch axes (e.g. (T, N) for N
levels), and a `valid` mask of the same shape (False on padding / steps after the level's last counted step);
they reduce over time and return one score per level, shape (...). A level with no valid step scores 0 rather
than NaN. They are pure and jittable, and `SCORE_FUNCTIONS` / `get_score_function` make them pluggable by name.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxrl.envs.errors import invalid_choice


def _masked_time_mean(x: jax.Array, valid: jax.Array | None) -> jax.Array:
    """Mean over axis 0 restricted to valid steps; 0 where a column has none."""
    if valid is None:
        return jnp.mean(x, axis=0)
    valid = jnp.broadcast_to(valid, x.shape)
    count = jnp.sum(valid, axis=0)
    total = jnp.sum(jnp.where(valid, x, 0.0), axis=0)
    return jnp.where(count > 0, total / jnp.maximum(count, 1), 0.0)


def positive_value_loss(advantages: jax.Array, valid: jax.Array | None = None) -> jax.Array:
    """Positive value loss (Jiang et al. 2021, "Prioritized Level Replay"):

        S = (1 / |valid|) * sum_{t valid} max(A_t, 0),   A_t the GAE(gamma, lambda) advantage.

    advantages, valid: (T, ...) -> (...) score. High where the student did better than its critic predicted,
    a proxy for regret the student can still close.
    """
    return _masked_time_mean(jnp.maximum(jnp.asarray(advantages, jnp.float32), 0.0), valid)


def max_mc(values: jax.Array, max_returns: jax.Array, valid: jax.Array | None = None) -> jax.Array:
    """MaxMC (Jiang et al. 2021, "Replay-Guided Adversarial Environment Design" (robust PLR); used by
    Parker-Holder et al. 2022, ACCEL):

        S = (1 / |valid|) * sum_{t valid} (R_max - V(s_t)),   R_max the highest return ever seen on the level.

    values, valid: (T, ...); max_returns: (...) per level (broadcast over time) -> (...) score. Keep R_max per
    level with `update_max_return`.
    """
    values = jnp.asarray(values, jnp.float32)
    return _masked_time_mean(jnp.asarray(max_returns, jnp.float32)[None] - values, valid)


def update_max_return(max_return: jax.Array, episode_returns: jax.Array, episode_done: jax.Array) -> jax.Array:
    """Running R_max for MaxMC. max_return: (...); episode_returns, episode_done: (T, ...), the return of an
    episode counted at the step it ends (`episode_done` True) -> (...) new maximum. Start from -inf (or from a
    known lower bound such as 0 for the maze) for a level never seen."""
    ended = jnp.where(episode_done, jnp.asarray(episode_returns, jnp.float32), -jnp.inf)
    return jnp.maximum(max_return, jnp.max(ended, axis=0))


def success_rate(num_solved: jax.Array, num_episodes: jax.Array) -> jax.Array:
    """p = solved / episodes per level (0 when no episode finished). Shapes broadcast; -> (...)."""
    num_episodes = jnp.asarray(num_episodes, jnp.float32)
    return jnp.where(num_episodes > 0, jnp.asarray(num_solved, jnp.float32) / jnp.maximum(num_episodes, 1.0), 0.0)


def learnability(success: jax.Array) -> jax.Array:
    """Learnability (Rutherford et al. 2024, "No Regrets: Investigating and Improving Regret Approximations for
    Curriculum Discovery"):

        S = p * (1 - p),   p the student's success rate on the level (e.g. `success_rate`).

    success: (...) -> (...). Highest (1/4) at p = 1/2, zero for levels always or never solved. p is clipped into
    [0, 1] so a stray value cannot give a negative score.
    """
    p = jnp.clip(jnp.asarray(success, jnp.float32), 0.0, 1.0)
    return p * (1.0 - p)


def rollout_scores(name: str, advantages: jax.Array, values: jax.Array, done: jax.Array, episode_return: jax.Array) -> jax.Array:
    """Score `name` of each level from one rollout on it, all arrays (T, B), B levels (one per environment):
    advantages (GAE), values V(s_t), done (an episode ended at step t), episode_return (the return of the episode
    that ended at t, where done). -> (B,).

    - pvl: `positive_value_loss` over the whole rollout.
    - maxmc: `max_mc` with R_max the highest return of an episode that ended in this rollout (0 when none did;
      for levels whose returns are >= 0, as the maze's).
    - learnability: p (1 - p), p the fraction of the rollout's finished episodes that were solved (return > 0).
    """
    if name == "pvl":
        return positive_value_loss(advantages)
    if name == "maxmc":
        max_return = update_max_return(jnp.zeros(done.shape[1:]), episode_return, done)
        return max_mc(values, max_return)
    if name == "learnability":
        solved = jnp.sum(done & (episode_return > 0), axis=0)
        return learnability(success_rate(solved, jnp.sum(done, axis=0)))
    raise invalid_choice("score function", name, SCORE_FUNCTIONS)


SCORE_FUNCTIONS: dict[str, Callable[..., jax.Array]] = {
    "pvl": positive_value_loss,
    "maxmc": max_mc,
    "learnability": learnability,
}


def get_score_function(name: str) -> Callable[..., jax.Array]:
    """The score function registered as `name`; InvalidChoiceError naming the choices otherwise."""
    if name not in SCORE_FUNCTIONS:
        raise invalid_choice("score function", name, SCORE_FUNCTIONS)
    return SCORE_FUNCTIONS[name]
