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


def q_lambda_returns(
    rewards: jax.Array,
    next_q_max: jax.Array,
    terminated: jax.Array,
    done: jax.Array,
    gamma: jax.Array | float,
    lam: jax.Array | float,
) -> jax.Array:
    """Peng's Q(lambda) targets as PQN uses them (Gallici et al. 2024, eq. 7, written recursively):

        G_t = r_t + gamma (1 - terminated_t) [(1 - lambda) max_a Q(s'_t, a) + lambda G_{t+1}]   (within an episode)

    with the trace cut where the episode ended: at a time limit G_t = r_t + gamma max_a Q(s'_t, a), at a terminal
    state G_t = r_t; the last step of the rollout bootstraps fully (G_T = max_a Q(s'_{T-1}, a)).

    Args (all (T, N)):
      rewards: r_t.
      next_q_max: max_a Q(s'_t, a) for the observation s'_t that followed step t before any auto-reset (as in `gae`).
      terminated, done: as in `gae`.

    Returns the targets (T, N).
    """
    bootstrap = rewards + gamma * next_q_max * (1.0 - terminated.astype(rewards.dtype))
    trace = gamma * lam * (1.0 - done.astype(rewards.dtype))

    def backwards(next_return, xs):
        base, trace_t, q_next = xs
        target = base + trace_t * (next_return - q_next)
        return target, target

    _, targets = jax.lax.scan(backwards, next_q_max[-1], (bootstrap, trace, next_q_max), reverse=True)
    return targets
