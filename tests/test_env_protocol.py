"""The gymnax 1.0 protocol across families: jit, vmap == loop of singles, auto-reset, time-limit truncation."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from conftest import compiled_rollouts, with_time_limit

# A sample of every family: classic control (discrete and continuous), MinAtar, bsuite, misc, Brax.
SAMPLE = [
    "CartPole-v1",
    "Acrobot-v1",
    "Pendulum-v1",
    "Breakout-MinAtar",
    "Catch-bsuite",
    "MemoryChain-bsuite",
    "MetaMaze-misc",
    "brax/inverted_pendulum",  # the adapter is the same for every Brax env (against Brax's own step: test_brax_adapter.py)
]
STEPS = 64
N = 4


def episode_lengths_at_done(done: np.ndarray) -> np.ndarray:
    """Length of each episode that ends at a step where done is true (episodes start at step 0)."""
    lengths, current = [], 0
    for d in done:
        current += 1
        if d:
            lengths.append(current)
            current = 0
    return np.asarray(lengths)


@pytest.mark.parametrize("env_id", SAMPLE)
def test_vmap_equals_single_and_autoreset(env_id):
    env, params, single, batched = compiled_rollouts(env_id, STEPS)
    limit = 16  # short, so every environment hits it (or terminates first) inside the rollout
    params = with_time_limit(params, limit)
    keys = jax.random.split(jax.random.key(3), N)
    batch = jax.tree.map(np.asarray, batched(keys, params))

    for i in range(N):
        one = jax.tree.map(np.asarray, single(keys[i], params))
        for name in one:
            np.testing.assert_allclose(batch[name][i], one[name], rtol=1e-4, atol=1e-4, err_msg=f"{env_id}:{name}")

    term, trunc = batch["terminated"], batch["truncated"]
    assert term.dtype == bool and trunc.dtype == bool
    for i in range(N):
        done = term[i] | trunc[i]
        assert done.any(), f"{env_id}: no episode ended in {STEPS} steps with limit {limit}"
        # Auto-reset: a finished step returns a different (fresh) observation, and the pre-reset one is in
        # final_observation; an unfinished step's final_observation is the returned observation itself.
        steps = np.arange(STEPS)
        for t in steps[~done]:
            np.testing.assert_array_equal(batch["final_obs"][i, t], batch["next_obs"][i, t])
        for t in steps[done]:
            assert not np.array_equal(batch["final_obs"][i, t], batch["next_obs"][i, t]), f"{env_id}: no reset at {t}"
        # Truncation happens exactly at the time limit and never beyond it.
        lengths = episode_lengths_at_done(done)
        assert lengths.max() <= limit
        np.testing.assert_array_equal(lengths[trunc[i][done] & ~term[i][done]], limit)
        assert (lengths[~trunc[i][done]] <= limit).all()


@pytest.mark.parametrize("env_id", ["CartPole-v1", "brax/inverted_pendulum"])
def test_truncation_is_not_termination(env_id):
    env, params, single, _ = compiled_rollouts(env_id, STEPS)
    limit = 4  # too short for either environment to fail from its initial state
    rec = jax.tree.map(np.asarray, single(jax.random.key(0), with_time_limit(params, limit)))
    assert not rec["terminated"].any()
    expected = (np.arange(STEPS) + 1) % limit == 0
    np.testing.assert_array_equal(rec["truncated"], expected)


def test_cartpole_reset_is_a_fresh_episode():
    _, params, single, _ = compiled_rollouts("CartPole-v1", 200)
    rec = jax.tree.map(np.asarray, single(jax.random.key(1), params))
    ended = rec["terminated"]
    assert ended.sum() >= 3
    # The old episode ended out of bounds; the new one starts in CartPole's reset box of +-0.05.
    final = rec["final_obs"][ended]
    assert ((np.abs(final[:, 0]) > 2.4) | (np.abs(final[:, 2]) > 0.2094)).all()
    assert (np.abs(rec["next_obs"][ended]) <= 0.05).all()
