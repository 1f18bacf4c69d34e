"""Advantage and return estimators over rollouts of shape (T, N) (time, environments)."""

from __future__ import annotations

from collections.abc import Callable

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


def values_after(
    values: jax.Array,
    last_values: jax.Array,
    truncated: jax.Array,
    value_at_time_limit: Callable[[Callable[[jax.Array], jax.Array]], jax.Array],
) -> jax.Array:
    """V of the observation that followed each step before any auto-reset: `next_values` for `gae`.

    Within an episode that observation is the next step's own, whose value the critic has already computed; only
    where the episode ended does the environment reset, and only at a time limit does the target bootstrap from
    the truncated episode's last state (at a terminal state it is multiplied by 0). So the critic reads
    `final_observation` only at time limits: a loop of one pass over the environments per truncation, the first
    remaining one of every environment each time (MinAtar's or Brax's 1000-step episodes truncate at most once per
    environment in a rollout of up to 1000 steps), instead of a second pass over the whole (T, N) batch.

    Args:
      values: V(s_t), (T, N).
      last_values: V of the observation after the rollout's last step, (N,).
      truncated: the episode hit its time limit at t without terminating, (T, N).
      value_at_time_limit: rows -> V of each environment's final observation at its time limit, (N,); `rows` picks
        those steps from any (T, N, ...) array of the rollout, as (N, ...) (e.g. `rows(final_obs)`).

    Returns next_values (T, N): V(s_{t+1}) where the episode went on, V(final observation) at time limits, and
    V of the next episode's first observation where it terminated (unused there).
    """
    next_values = jnp.concatenate([values[1:], last_values[None]])
    columns = jnp.arange(values.shape[1])

    def fill_first_remaining(state):
        next_values, remaining = state
        t = jnp.argmax(remaining, axis=0).astype(jnp.int32)  # (N,) the first remaining time limit, 0 if none
        hit = remaining[t, columns]
        at_limit = value_at_time_limit(lambda x: x[t, columns])
        next_values = next_values.at[t, columns].set(jnp.where(hit, at_limit, next_values[t, columns]))
        return next_values, remaining.at[t, columns].set(False)

    next_values, _ = jax.lax.while_loop(lambda state: state[1].any(), fill_first_remaining, (next_values, truncated))
    return next_values


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
