"""The gymnax 1.0 `step` built from an environment's `step_env` and `is_truncated`: one step, then an automatic
reset where the episode ended, with the pre-reset observation in `info["final_observation"]`. Shared by the
environments this project writes (the Brax adapter, the maze), so the flags and the reset work the same in each."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp


def step_with_auto_reset(
    env: Any, key: jax.Array, state: Any, action: jax.Array, params: Any, reset: Callable[[jax.Array, Any], tuple[Any, Any]]
) -> tuple[jax.Array, Any, jax.Array, jax.Array, jax.Array, dict]:
    """`env.step_env`, then `reset(key, params)` selected wherever the step terminated or was truncated.
    Returns (obs, state, reward, terminated, truncated, info) as gymnax 1.0's `step` does."""
    obs, stepped, reward, terminated, info = env.step_env(key, state, action, params)
    truncated = env.is_truncated(stepped, params)
    done = jnp.logical_or(terminated, truncated)
    reset_obs, reset_state = reset(key, params)
    new_state = jax.tree.map(lambda r, s: jnp.where(done, r, s), reset_state, stepped)
    info = {**info, "terminated": terminated, "truncated": truncated, "final_observation": obs}
    return jnp.where(done, reset_obs, obs), new_state, reward, terminated, truncated, info
