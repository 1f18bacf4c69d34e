"""Advantage and return estimators over rollouts of shape (T, N) (time, environments)."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def gae(
    rewards: jax.Array,
    values: jax.Array,
    next_values: jax.Array,
    terminated: jax.Array,
    done: jax.Array,
    gamma: jax.Array | float,
    lam: jax.Array | float,
) -> tuple[jax.Array, jax.Array]:
    """Generalised advantage estimation that handles time limits correctly.

    Args (all (T, N)):
      rewards: r_t.
      values: V(s_t).
      next_values: V of the observation that followed s_t *before* any auto-reset, i.e. of
        `info["final_observation"]`. Without a reset this is V(s_{t+1}); at a time limit it is the value of the
        truncated episode's last state, which the target must bootstrap from.
      terminated: the episode ended in a terminal state at t: nothing to bootstrap.
      done: terminated or truncated at t: the lambda-trace stops here.

    Returns (advantages, value targets), each (T, N).
    """
    bootstrap = gamma * next_values * (1.0 - terminated.astype(values.dtype))
    deltas = rewards + bootstrap - values
    decay = gamma * lam * (1.0 - done.astype(values.dtype))

    def backwards(carry, xs):
        delta, decay_t = xs
        carry = delta + decay_t * carry
        return carry, carry

    _, advantages = jax.lax.scan(backwards, jnp.zeros_like(values[0]), (deltas, decay), reverse=True)
    return advantages, advantages + values
