"""GAE against a plain NumPy reference with terminations and truncations inside one rollout."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxrl.returns import gae, values_after


def numpy_gae(rewards, values, final_values, last_value, terminated, truncated, gamma, lam):
    """Textbook per-environment loop. final_values[t] is V(final observation at t); at the last step of the
    rollout with no episode end, the bootstrap is last_value (= V of the next observation)."""
    T, N = rewards.shape
    adv = np.zeros((T, N))
    for n in range(N):
        running = 0.0
        for t in reversed(range(T)):
            if terminated[t, n]:
                next_v, running = 0.0, 0.0
            elif truncated[t, n]:
                next_v, running = final_values[t, n], 0.0
            else:
                next_v = values[t + 1, n] if t + 1 < T else last_value[n]
            delta = rewards[t, n] + gamma * next_v - values[t, n]
            running = delta + gamma * lam * running
            adv[t, n] = running
    return adv, adv + values


def test_gae_matches_numpy_with_truncation_and_termination():
    rng = np.random.default_rng(0)
    T, N, gamma, lam = 12, 3, 0.97, 0.9
    rewards = rng.normal(size=(T, N))
    values = rng.normal(size=(T, N))
    final_values = rng.normal(size=(T, N))
    last_value = rng.normal(size=N)
    terminated = np.zeros((T, N), bool)
    truncated = np.zeros((T, N), bool)
    terminated[3, 0] = terminated[9, 1] = True
    truncated[6, 0] = truncated[2, 2] = truncated[T - 1, 1] = True
    done = terminated | truncated
    # What the agent passes: V(final observation) everywhere, which is V(s_{t+1}) where nothing ended.
    next_values = np.where(done, final_values, np.vstack([values[1:], last_value[None]]))
    adv, targets = gae(
        jnp.asarray(rewards), jnp.asarray(values), jnp.asarray(next_values), jnp.asarray(terminated), jnp.asarray(done), gamma, lam
    )
    ref_adv, ref_targets = numpy_gae(rewards, values, final_values, last_value, terminated, truncated, gamma, lam)
    np.testing.assert_allclose(adv, ref_adv, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(targets, ref_targets, rtol=1e-5, atol=1e-5)
    # The truncated step bootstraps (its target depends on the final value); the terminated one does not.
    assert abs(ref_adv[6, 0] - (rewards[6, 0] + gamma * final_values[6, 0] - values[6, 0])) < 1e-9
    assert abs(ref_adv[3, 0] - (rewards[3, 0] - values[3, 0])) < 1e-9



def test_values_after_reads_final_observations_only_at_time_limits():
    # Three runs (vmapped, so the loop's stopping test is batched) of a (T, N) rollout. Run 0: env 0 truncates three
    # times, env 1 twice, env 2 never; run 1 has no truncation at all; run 2 truncates at the last step.
    T, N = 10, 3
    rng = np.random.default_rng(1)
    values, final_values, last = rng.normal(size=(3, T, N)), rng.normal(size=(3, T, N)), rng.normal(size=(3, N))
    truncated = np.zeros((3, T, N), bool)
    truncated[0, [1, 4, 9], 0] = truncated[0, [0, 5], 1] = True
    truncated[2, T - 1, :] = True
    calls = []

    def one_run(values, final_values, last, truncated):
        def at_time_limit(rows):
            picked = rows(final_values)
            calls.append(picked.shape)
            return picked

        return values_after(values, last, truncated, at_time_limit)

    got = np.asarray(jax.jit(jax.vmap(one_run))(values, final_values, last, truncated))
    following = np.concatenate([values[:, 1:], last[:, None]], axis=1)  # V(s_{t+1}); the last step: V(last obs)
    np.testing.assert_array_equal(got, np.where(truncated, final_values, following).astype(np.float32))
    assert calls == [(N,)]  # traced once: one critic pass over the N environments per loop iteration


def numpy_q_lambda(rewards, q_next_obs, q_final_obs, q_last, terminated, truncated, gamma, lam):
    """Peng's Q(lambda) as the textbook loop: the lambda-return mixes the one-step bootstrap max Q(s_{t+1}) with the
    longer return, per environment, restarting at episode ends. q_next_obs[t] = max Q(s_{t+1}) of the rollout's next
    observation, q_final_obs[t] = max Q(final observation at t) (what a truncation bootstraps from), q_last the
    bootstrap after the rollout's last step."""
    T, N = rewards.shape
    out = np.zeros((T, N))
    for n in range(N):
        later = None  # G_{t+1}, None where the episode (or the rollout) ends after t
        for t in reversed(range(T)):
            if terminated[t, n]:
                g = rewards[t, n]
            elif truncated[t, n]:
                g = rewards[t, n] + gamma * q_final_obs[t, n]
            elif later is None:
                g = rewards[t, n] + gamma * q_last[n]
            else:
                g = rewards[t, n] + gamma * ((1 - lam) * q_next_obs[t, n] + lam * later)
            out[t, n] = g
            later = g
    return out


def test_q_lambda_matches_numpy_with_truncation_and_termination():
    from jaxrl.returns import q_lambda_returns

    rng = np.random.default_rng(1)
    T, N, gamma, lam = 10, 3, 0.99, 0.65
    rewards = rng.normal(size=(T, N))
    q_next_obs, q_final_obs, q_last = rng.normal(size=(T, N)), rng.normal(size=(T, N)), rng.normal(size=N)
    terminated = np.zeros((T, N), bool)
    truncated = np.zeros((T, N), bool)
    terminated[2, 0] = terminated[7, 2] = True
    truncated[5, 0] = truncated[T - 1, 1] = truncated[0, 2] = True
    done = terminated | truncated
    # What the agent passes: max Q of the final observation, which is the next observation where nothing ended.
    shifted = np.vstack([q_next_obs[:-1], q_last[None]])
    next_q_max = np.where(done, q_final_obs, shifted)
    got = q_lambda_returns(jnp.asarray(rewards), jnp.asarray(next_q_max), jnp.asarray(terminated), jnp.asarray(done), gamma, lam)
    want = numpy_q_lambda(rewards, shifted, q_final_obs, q_last, terminated, truncated, gamma, lam)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # lambda = 0 is one-step Q-learning: r + gamma (1 - terminated) max Q(s').
    one_step = q_lambda_returns(jnp.asarray(rewards), jnp.asarray(next_q_max), jnp.asarray(terminated), jnp.asarray(done), gamma, 0.0)
    np.testing.assert_allclose(one_step, rewards + gamma * next_q_max * ~terminated, rtol=1e-5, atol=1e-5)
