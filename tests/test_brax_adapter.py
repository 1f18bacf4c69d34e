"""The Brax adapter against Brax's own step and its EpisodeWrapper (the reference for time limits). The adapter does
not depend on the robot; inverted_pendulum (which falls over, so terminates, within the limit) compiles in half
hopper's time."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from jaxrl import envs

LIMIT = 12
STEPS = 40


@pytest.fixture(scope="module")
def pendulum():
    env, params = envs.make("brax/inverted_pendulum")
    return env, params.replace(max_steps_in_episode=LIMIT)


def test_adapter_agrees_with_brax_step(pendulum):
    from brax.envs.wrappers.training import EpisodeWrapper

    env, params = pendulum
    reference = EpisodeWrapper(env.brax_env, episode_length=LIMIT, action_repeat=1)
    key = jax.random.key(7)
    actions = jax.random.uniform(key, (STEPS, env.num_actions), minval=-1.0, maxval=1.0)
    step_keys = jax.random.split(jax.random.key(8), STEPS)

    @jax.jit
    def run_both(reset_key):
        _, ours = env.reset(reset_key, params)
        theirs = reference.reset(reset_key)

        def body(carry, xs):
            ours, theirs = carry
            action, step_key = xs
            obs, ours, reward, terminated, truncated, info = env.step(step_key, ours, action, params)
            theirs = reference.step(theirs, action)
            out = dict(
                reward=reward, terminated=terminated, truncated=truncated, final_obs=info["final_observation"],
                ref_reward=theirs.reward, ref_done=theirs.done, ref_trunc=theirs.info["truncation"], ref_obs=theirs.obs,
            )
            return (ours, theirs), out

        return jax.lax.scan(body, (ours, theirs), (actions, step_keys))[1]

    rec = jax.tree.map(np.asarray, run_both(jax.random.key(0)))
    done = rec["terminated"] | rec["truncated"]
    assert done.any()
    first = int(np.argmax(done)) + 1  # after the first end, Brax keeps stepping a finished episode; we reset
    np.testing.assert_allclose(rec["reward"][:first], rec["ref_reward"][:first], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(rec["final_obs"][:first], rec["ref_obs"][:first], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(done[:first], rec["ref_done"][:first].astype(bool))
    np.testing.assert_array_equal(rec["truncated"][:first], rec["ref_trunc"][:first].astype(bool))
    np.testing.assert_array_equal(rec["terminated"][:first], (rec["ref_done"] * (1 - rec["ref_trunc"]))[:first].astype(bool))


def test_spaces_and_backend_choice(pendulum):
    env, params = pendulum
    assert envs.NoAutoReset.supports(env)  # evaluation skips the auto-reset (step_env / is_truncated exist)
    assert env.observation_space(params).shape == (env.brax_env.observation_size,)
    assert env.action_space(params).shape == (env.brax_env.action_size,)
    assert env.backend == envs.DEFAULT_BRAX_BACKEND
    with pytest.raises(envs.InvalidChoiceError, match="backend 'warp'.*positional"):
        envs.make("brax/hopper", backend="warp")


def test_making_a_brax_env_prints_nothing():
    """mujoco prints "Failed to import warp" to stdout when its optional GPU backend is missing; on every Brax run
    that read like an error. Checked in a fresh process (the message comes once, at the first import)."""
    import subprocess
    import sys

    code = "from jaxrl import envs; envs.make('brax/hopper')"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-500:]
    assert result.stdout == "", result.stdout
