"""Wrapper statistics against plain NumPy computations of the same quantities."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct

from jaxrl import envs
from jaxrl.envs.wrappers import ClipAction, EpisodeStatistics, FlattenObservation, NoAutoReset, NormalizeObservation, NormalizeReward, VecEnv

NUM_ENVS, STEPS, GAMMA = 4, 150, 0.99


def run(env, params, key, num_steps, actions_fn):
    """Scan `env` for `num_steps`, recording reward, flags, info and the wrapper state after each step."""

    def body(carry, step_key):
        obs, state = carry
        act_key, env_key = jax.random.split(step_key)
        obs, state, reward, terminated, truncated, info = env.step(env_key, state, actions_fn(act_key), params)
        return (obs, state), dict(obs=obs, reward=reward, terminated=terminated, truncated=truncated, info=info, state=state)

    reset_key, key = jax.random.split(key)
    obs0, state = env.reset(reset_key, params)
    _, rec = jax.lax.scan(body, (obs0, state), jax.random.split(key, num_steps))
    return obs0, rec


def cartpole_actions(key):
    return jax.random.randint(key, (NUM_ENVS,), 0, 2)


@pytest.fixture(scope="module")
def cartpole():
    return envs.make("CartPole-v1")


@pytest.fixture(scope="module")
def stacked_run(cartpole):
    """The raw VecEnv and the full stack, stepped with the same keys and actions."""
    env, params = cartpole
    raw = VecEnv(env, NUM_ENVS)
    stack = NormalizeReward(NormalizeObservation(VecEnv(EpisodeStatistics(env), NUM_ENVS)), gamma=GAMMA)
    key = jax.random.key(11)
    raw_out = jax.jit(lambda k: run(raw, params, k, STEPS, cartpole_actions))(key)
    stack_out = jax.jit(lambda k: run(stack, params, k, STEPS, cartpole_actions))(key)
    return jax.tree.map(np.asarray, raw_out), jax.tree.map(np.asarray, stack_out)


def test_flags_pass_through_unchanged(stacked_run):
    (_, raw), (_, stack) = stacked_run
    np.testing.assert_array_equal(raw["terminated"], stack["terminated"])
    np.testing.assert_array_equal(raw["truncated"], stack["truncated"])
    assert raw["terminated"].any()


def test_episode_statistics_match_numpy(stacked_run):
    (_, raw), (_, stack) = stacked_run
    info = stack["info"]
    done = raw["terminated"] | raw["truncated"]
    for e in range(NUM_ENVS):
        ret, length, last_ret, last_len, finished = 0.0, 0, 0.0, 0, False
        for t in range(STEPS):
            ret += raw["reward"][t, e]
            length += 1
            if done[t, e]:
                last_ret, last_len, finished, ret, length = ret, length, True, 0.0, 0
            assert info["episode_return"][t, e] == pytest.approx(last_ret)
            assert info["episode_length"][t, e] == last_len
            assert info["has_finished"][t, e] == finished
            assert info["episode_done"][t, e] == done[t, e]


def test_observation_normalisation_matches_numpy(stacked_run):
    (raw_obs0, raw), (_, stack) = stacked_run
    seen = np.concatenate([raw_obs0[None], raw["obs"]], axis=0)  # (1 + STEPS, NUM_ENVS, 4), every obs returned
    for t in (0, 10, STEPS - 1):
        sample = seen[: t + 2].reshape(-1, 4).astype(np.float64)
        mean, var = sample.mean(0), sample.var(0)
        stats = stack["state"].env_state.obs_stats
        np.testing.assert_allclose(stats.mean[t], mean, rtol=1e-3, atol=1e-4)
        np.testing.assert_allclose(stats.var[t], var, rtol=1e-3, atol=1e-4)
        expected = np.clip((raw["obs"][t] - stats.mean[t]) / np.sqrt(stats.var[t] + 1e-8), -10, 10)
        np.testing.assert_allclose(stack["obs"][t], expected, rtol=1e-4, atol=1e-5)
        expected_final = np.clip((raw["info"]["final_observation"][t] - stats.mean[t]) / np.sqrt(stats.var[t] + 1e-8), -10, 10)
        np.testing.assert_allclose(stack["info"]["final_observation"][t], expected_final, rtol=1e-4, atol=1e-5)


def test_reward_normalisation_matches_numpy(stacked_run):
    (_, raw), (_, stack) = stacked_run
    done = raw["terminated"] | raw["truncated"]
    discounted = np.zeros(NUM_ENVS)
    returns_seen = []
    for t in range(STEPS):
        discounted = discounted * GAMMA + raw["reward"][t]
        returns_seen.append(discounted.copy())
        # Direct (non-streaming) variance of all returns so far plus the prior the statistics start from
        # (mean 0, variance 1, pseudo-count 1e-4).
        x, c0 = np.concatenate(returns_seen), 1e-4
        mean = x.sum() / (c0 + x.size)
        var = (c0 * 1.0 + (x**2).sum()) / (c0 + x.size) - mean**2
        expected = np.clip(raw["reward"][t] / np.sqrt(var + 1e-8), -10, 10)
        np.testing.assert_allclose(stack["reward"][t], expected, rtol=2e-3)
        discounted = np.where(done[t], 0.0, discounted)


def test_normalisers_are_per_seed_under_vmap(cartpole):
    env, params = cartpole
    stack = NormalizeReward(NormalizeObservation(VecEnv(env, NUM_ENVS)), gamma=GAMMA)
    one_run = jax.jit(lambda k: run(stack, params, k, 30, cartpole_actions)[1]["state"])
    keys = jax.random.split(jax.random.key(2), 3)
    batched = jax.jit(jax.vmap(lambda k: run(stack, params, k, 30, cartpole_actions)[1]["state"]))(keys)
    for i in range(3):
        single = one_run(keys[i])
        np.testing.assert_allclose(batched.env_state.obs_stats.mean[i], single.env_state.obs_stats.mean, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(batched.return_stats.var[i], single.return_stats.var, rtol=1e-5)
    assert not np.allclose(batched.env_state.obs_stats.mean[0], batched.env_state.obs_stats.mean[1])


@struct.dataclass
class EchoState:
    time: jax.Array


@struct.dataclass
class EchoParams:
    max_steps_in_episode: int = 5


class EchoEnv:
    """Observes the action it was given; a user-registered environment for the wrapper tests."""

    default_params = EchoParams()

    def action_space(self, params=None):
        return envs.Box(-1.0, 1.0, (2,), jnp.float32)

    def observation_space(self, params=None):
        return envs.Box(-jnp.inf, jnp.inf, (2, 1), jnp.float32)

    def reset(self, key, params=None):
        return jnp.zeros((2, 1)), EchoState(jnp.zeros((), jnp.int32))

    def step(self, key, state, action, params=None):
        time = state.time + 1
        truncated = time >= self.default_params.max_steps_in_episode
        obs = action.reshape(2, 1)
        info = {"final_observation": obs}
        next_state = EchoState(jnp.where(truncated, 0, time))
        return jnp.where(truncated, 0.0, obs), next_state, action.sum(), jnp.zeros((), bool), truncated, info


def test_clip_action_and_flatten_on_a_registered_env():
    envs.register("Echo-test", EchoEnv, overwrite=True)
    env, params = envs.make("Echo-test")
    wrapped = FlattenObservation(ClipAction(env))
    assert wrapped.observation_space(params).shape == (2,)
    _, state = wrapped.reset(jax.random.key(0), params)
    obs, _, reward, _, _, info = wrapped.step(jax.random.key(1), state, jnp.array([3.0, -0.5]), params)
    np.testing.assert_allclose(obs, [1.0, -0.5])
    np.testing.assert_allclose(info["final_observation"], [1.0, -0.5])
    assert float(reward) == pytest.approx(0.5)


def test_flatten_minatar():
    env, params = envs.make("Breakout-MinAtar")
    flat = FlattenObservation(env)
    assert flat.observation_space(params).shape == (400,)
    raw_obs, _ = env.reset(jax.random.key(0), params)
    obs, _ = flat.reset(jax.random.key(0), params)
    np.testing.assert_array_equal(obs, np.asarray(raw_obs).reshape(-1))


def test_no_auto_reset_matches_step_until_each_episode_ends(cartpole):
    env, params = cartpole
    assert NoAutoReset.supports(env) and not NoAutoReset.supports(VecEnv(env, NUM_ENVS))
    with pytest.raises(TypeError, match="bare environment"):
        NoAutoReset(EpisodeStatistics(env))
    key = jax.random.key(5)
    _, plain = jax.jit(lambda k: run(VecEnv(env, NUM_ENVS), params, k, STEPS, cartpole_actions))(key)
    _, held = jax.jit(lambda k: run(VecEnv(NoAutoReset(env), NUM_ENVS), params, k, STEPS, cartpole_actions))(key)
    plain, held = jax.tree.map(np.asarray, (plain, held))
    done = plain["terminated"] | plain["truncated"]
    for i in range(NUM_ENVS):
        end = int(np.argmax(done[:, i]))
        assert done[end, i]
        for name in ("reward", "terminated", "truncated"):
            np.testing.assert_array_equal(held[name][: end + 1, i], plain[name][: end + 1, i])
        np.testing.assert_array_equal(held["obs"][:end, i], plain["obs"][:end, i])
        # At the end the auto-reset returns a fresh observation; without it the last one is the episode's own.
        np.testing.assert_array_equal(held["obs"][end, i], plain["info"]["final_observation"][end, i])
        np.testing.assert_array_equal(held["info"]["final_observation"][: end + 1, i], plain["info"]["final_observation"][: end + 1, i])


def test_frozen_observation_statistics_are_used_and_kept(cartpole):
    env, params = cartpole
    stats = envs.RunningMeanStd(jnp.array([1.0, 2.0, 3.0, 4.0]), jnp.array([4.0, 4.0, 1.0, 0.25]), jnp.float32(10.0))
    frozen = NormalizeObservation(VecEnv(env, NUM_ENVS), stats=stats)
    raw = VecEnv(env, NUM_ENVS)
    key = jax.random.key(4)
    obs, state = frozen.reset(key, params)
    raw_obs, raw_state = raw.reset(key, params)
    np.testing.assert_allclose(obs, np.clip((raw_obs - stats.mean) / np.sqrt(stats.var + 1e-8), -10, 10), rtol=1e-6)
    obs, state, *_ = frozen.step(key, state, jnp.zeros(NUM_ENVS, jnp.int32), params)
    raw_obs, *_ = raw.step(key, raw_state, jnp.zeros(NUM_ENVS, jnp.int32), params)
    np.testing.assert_allclose(obs, np.clip((raw_obs - stats.mean) / np.sqrt(stats.var + 1e-8), -10, 10), rtol=1e-6)
    assert envs.find_obs_stats(state) is stats or np.array_equal(envs.find_obs_stats(state).count, stats.count)


def test_reward_normalisation_follows_a_traced_gamma(cartpole):
    """The discount of reward normalisation is data: two gammas in one compiled program give two different
    scalings, each equal to a run built with that gamma as a Python number."""
    env, params = cartpole

    def scaled_rewards(gamma):
        stack = NormalizeReward(VecEnv(env, NUM_ENVS), gamma=gamma)
        return run(stack, params, jax.random.key(6), 40, cartpole_actions)[1]["reward"]

    traced = jax.jit(jax.vmap(scaled_rewards))(jnp.array([0.5, 0.99]))
    for i, gamma in enumerate((0.5, 0.99)):
        np.testing.assert_allclose(traced[i], jax.jit(lambda: scaled_rewards(gamma))(), rtol=1e-5)
    assert not np.allclose(traced[0], traced[1])


# Every MinAtar game builds its observation from boolean channels; Asterix, Freeway and Seaquest pass this test too
# but compile for 7 s each, so the default suite checks the two that compile fastest.
BINARY_IDS = ["Breakout-MinAtar", "SpaceInvaders-MinAtar", "Maze-v0", "GridWorld-v0"]


@pytest.mark.parametrize("env_id", BINARY_IDS)
def test_declared_binary_observations_are_0_or_1_and_stored_exactly_as_bool(env_id):
    env, params = envs.make(env_id)
    stack = envs.build_stack(env, envs.StackSpec(num_envs=NUM_ENVS))
    num_actions = env.action_space(params).n
    actions = lambda key: jax.random.randint(key, (NUM_ENVS,), 0, num_actions)
    obs0, rec = jax.jit(lambda k: run(stack, params, k, 200, actions))(jax.random.key(3))
    for obs in (obs0, rec["obs"], rec["info"]["final_observation"]):
        assert obs.dtype == jnp.float32 and set(np.unique(np.asarray(obs))) <= {0.0, 1.0}
        stored = envs.compact_observations(stack, obs)
        assert stored.dtype == jnp.bool_
        np.testing.assert_array_equal(np.asarray(stored, np.float32), obs)
    assert rec["obs"].sum() > 0


def test_observations_stay_float_unless_declared_binary_and_unscaled():
    minatar, params = envs.make("Breakout-MinAtar")
    obs, _ = envs.build_stack(minatar, envs.StackSpec(num_envs=2)).reset(jax.random.key(0), params)
    normalized = envs.build_stack(minatar, envs.StackSpec(num_envs=2, normalize_obs=True))
    assert envs.compact_observations(normalized, obs).dtype == jnp.float32
    cartpole, _ = envs.make("CartPole-v1")
    assert envs.compact_observations(envs.build_stack(cartpole, envs.StackSpec(num_envs=2)), obs).dtype == jnp.float32

    # A wrapper of one's own that halves the observations: bool storage would round 0.5 to True. Only a wrapper that
    # says it keeps the values passes the declaration on.
    class Halve(envs.Wrapper):
        def reset(self, key, params=None):
            obs, state = self.env.reset(key, params)
            return 0.5 * obs, state

    class Keep(envs.Wrapper):
        keeps_observation_values = True

    for wrapper, stored in ((Halve, jnp.float32), (Keep, jnp.bool_)):
        stack = envs.build_stack(wrapper(minatar), envs.StackSpec(num_envs=2))
        assert envs.compact_observations(stack, obs).dtype == stored, wrapper
        assert envs.compact_observations(wrapper(stack), obs).dtype == stored, wrapper
