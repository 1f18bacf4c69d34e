"""PQN, DQN and SAC: the replay buffer, the targets by hand, the squashed Gaussian's density against a numerical change
of variables, and short runs through `jaxrl train` that learn what the untrained policy cannot. (A DQN run, replay
buffer included, shared by two processes, interrupted and resumed, equals one uninterrupted process: tests/test_multihost.py.)"""

from __future__ import annotations

import json
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrl
from jaxrl.agents import dqn, pqn, sac
from jaxrl.agents.offpolicy import Step, Transition, replay_buffer
from jaxrl.cli import main
from jaxrl.networks import squashed_sample
from jaxrl.returns import q_lambda_returns


def test_replay_buffer_wraps_around_samples_only_filled_slots_and_seeds_are_independent():
    buffer = replay_buffer(capacity=16, batch_size=16, min_size=1)

    def fill_and_sample(key, count):
        state = buffer.init({"x": jnp.int32(0)})
        for start in range(0, count, 3):  # adds of 3 items, as an update adds num_envs x num_steps
            state = buffer.add(state, {"x": jnp.arange(start, start + 3, dtype=jnp.int32)})
        return buffer.sample(state, key).experience["x"]

    few = np.asarray(jax.jit(fill_and_sample, static_argnums=1)(jax.random.key(0), 3))
    assert set(few.tolist()) == {0, 1, 2}  # only the filled slots
    many = np.concatenate([np.asarray(jax.jit(fill_and_sample, static_argnums=1)(k, 30)) for k in jax.random.split(jax.random.key(0), 8)])
    assert set(many.tolist()) == set(range(14, 30))  # 30 items through 16 slots: the oldest 14 were overwritten

    keys = jax.random.split(jax.random.key(1), 3)
    batched = np.asarray(jax.jit(jax.vmap(lambda k: fill_and_sample(k, 30)))(keys))
    assert not np.array_equal(batched[0], batched[1])  # each seed draws its own minibatch
    for i in range(3):  # and the same one as alone
        np.testing.assert_array_equal(batched[i], np.asarray(fill_and_sample(keys[i], 30)))


def _fixed_q_agent(double: bool) -> dqn.DQN:
    """A DQN whose "network" returns its params: Q values are whatever the test puts there."""
    agent = dqn.make_agent(dqn.DQNConfig(double=double, buffer_size=1000, learning_starts=100, batch_size=10))
    return dqn.DQN(agent.config, agent.env, agent.default_env_params, agent.spaces, types.SimpleNamespace(apply=lambda p, obs: p), agent.buffer)


def test_dqn_targets_by_hand_double_uses_the_online_argmax_and_time_limits_bootstrap():
    online = jnp.array([[1.0, 5.0], [4.0, 0.0], [0.0, 3.0]])
    target = jnp.array([[10.0, 2.0], [1.0, 7.0], [6.0, 9.0]])
    batch = Transition(obs=jnp.zeros((3, 4)), action=jnp.zeros(3, jnp.int32), reward=jnp.array([1.0, 2.0, 3.0]),
                           terminated=jnp.array([False, False, True]), next_obs=jnp.zeros((3, 4)))
    gamma = 0.9
    double = _fixed_q_agent(True).td_targets(online, target, batch, gamma)
    # online argmax: 1, 0 -> target's 2.0 and 1.0; the third terminated: the reward alone.
    np.testing.assert_allclose(double, [1 + gamma * 2.0, 2 + gamma * 1.0, 3.0], rtol=1e-6)
    plain = _fixed_q_agent(False).td_targets(online, target, batch, gamma)
    np.testing.assert_allclose(plain, [1 + gamma * 10.0, 2 + gamma * 7.0, 3.0], rtol=1e-6)

    # A time limit (done, not terminated) is stored with its final observation and bootstraps from it.
    agent = dqn.make_agent(dqn.DQNConfig(num_envs=2, buffer_size=100, learning_starts=10, batch_size=4))
    carry = jax.jit(agent.init)(jax.random.key(0), agent.default_hparams())
    final = jnp.full((1, 2, 4), 7.0)
    steps = Step(obs=jnp.zeros((1, 2, 4)), action=jnp.zeros((1, 2), jnp.int32), reward=jnp.ones((1, 2)),
                 terminated=jnp.array([[False, True]]), done=jnp.array([[True, True]]), final_obs=final, episode_return=jnp.zeros((1, 2)))
    stored = agent.store(carry, steps).buffer.experience
    np.testing.assert_array_equal(stored.terminated[0, :2], [False, True])
    np.testing.assert_array_equal(stored.next_obs[0, :2], final[0])


def test_squashed_gaussian_log_prob_is_the_change_of_variables():
    """log pi(a) of the tanh-squashed, rescaled Gaussian against log N(u) - log |da/du|, the Jacobian taken by central
    finite differences of the map u -> a (diagonal: each action dimension depends on its own u)."""
    mean, log_std = jnp.array([0.3, -1.2, 2.0]), jnp.array([-0.5, 0.1, -1.0])
    low, high = jnp.array([-2.0, 0.0, -1.0]), jnp.array([2.0, 1.0, 3.0])
    noise = jnp.array([0.7, -1.1, 0.4])
    action, log_prob = squashed_sample(mean, log_std, noise, low, high)

    u = np.float64(mean + jnp.exp(log_std) * noise)
    std = np.exp(np.float64(log_std))
    to_action = lambda v: 0.5 * (np.float64(high) + np.float64(low)) + 0.5 * (np.float64(high) - np.float64(low)) * np.tanh(v)
    h = 1e-6
    jacobian = (to_action(u + h) - to_action(u - h)) / (2 * h)
    log_normal = -0.5 * ((u - np.float64(mean)) / std) ** 2 - np.log(std) - 0.5 * np.log(2 * np.pi)
    np.testing.assert_allclose(action, to_action(u), rtol=1e-5)
    np.testing.assert_allclose(log_prob, np.sum(log_normal - np.log(jacobian)), rtol=1e-4)
    assert np.all((np.asarray(action) > np.asarray(low)) & (np.asarray(action) < np.asarray(high)))


def _train(tmp_path, argv: list[str]) -> dict:
    assert main(["train", *argv, "--out", str(tmp_path), "--quiet"]) == 0
    return json.loads((tmp_path / "summary.json").read_text())


def _untrained(module, settings: dict, seeds: int = 8) -> np.ndarray:
    """Final-evaluation returns of freshly initialised agents (a random Q-network's greedy policy sometimes balances
    CartPole for a while, so the tests compare with the mean over seeds)."""
    agent = module.make_agent(module.Config(**settings))
    carries = jax.jit(jax.vmap(agent.init, in_axes=(0, None)))(jax.random.split(jax.random.key(9), seeds), agent.default_hparams())
    return np.asarray(jax.jit(jax.vmap(agent.evaluate))(carries, jax.random.split(jax.random.key(10), seeds)))


def test_pqn_targets_reuse_the_rollouts_q_and_read_final_observations_only_at_time_limits():
    # CartPole cut at 5 steps: every environment truncates at least twice in 16 steps. The targets bootstrap from
    # the max Q the rollout computed to act, and from final observations only at time limits; they must equal
    # Q(lambda) over a full pass of max Q over every step's final observation.
    agent = pqn.make_agent(pqn.PQNConfig(env_id="CartPole-v1", num_envs=4, num_steps=16, num_minibatches=2, total_timesteps=4 * 16))
    hp = agent.default_hparams()
    carry = jax.jit(agent.init)(jax.random.key(0), hp)
    carry = carry.replace(env_params=carry.env_params.replace(max_steps_in_episode=jnp.full((4,), 5, jnp.int32)))
    after, steps = jax.jit(agent.collect)(carry, hp)
    assert np.asarray(steps.done & ~steps.terminated).sum(axis=0).min() >= 2
    got = jax.jit(agent.targets)(carry.params, steps, after.obs, hp)
    final_q_max = agent.q_values(carry.params, steps.final_obs).max(axis=-1)
    expected = q_lambda_returns(steps.reward * hp.reward_scale, final_q_max, steps.terminated, steps.done, hp.gamma, hp.q_lambda)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_pqn_learns_cartpole(tmp_path):
    summary = _train(tmp_path, ["pqn", "--env", "CartPole-v1", "--steps", "98304", "--seeds", "2", "--set", "eval_episodes=16"])
    finals = [r["final_return"] for r in summary["runs"]]
    untrained = _untrained(pqn, {"eval_episodes": 16})
    assert untrained.mean() < 100 and min(finals) > 150, (untrained, finals)


def test_dqn_learns_cartpole_and_its_policy_loads_and_evaluates(tmp_path):
    summary = _train(tmp_path, ["dqn", "--env", "CartPole-v1", "--steps", "20000", "--seeds", "2", "--set", "eval_episodes=16"])
    finals = [r["final_return"] for r in summary["runs"]]
    untrained = _untrained(dqn, {"eval_episodes": 16})
    assert untrained.mean() < 100 and min(finals) > 150, (untrained, finals)
    trained = jaxrl.load(tmp_path)
    obs = jnp.zeros((3, 4))
    np.testing.assert_array_equal(trained.policy(obs, run=1), jnp.argmax(trained.agent.q_values(trained.policy_state(1)["params"], obs), -1))
    assert main(["eval", str(tmp_path), "--episodes", "4"]) == 0


def test_sac_learns_pendulum_and_renders(tmp_path):
    settings = ["--set", "hidden=[64,64]", "--set", "learning_starts=500", "--set", "eval_episodes=8"]
    summary = _train(tmp_path, ["sac", "--env", "Pendulum-v1", "--steps", "4000", "--seeds", "2", *settings])
    finals = [r["final_return"] for r in summary["runs"]]
    untrained = _untrained(sac, {"hidden": (64, 64), "learning_starts": 500, "eval_episodes": 8})
    assert untrained.mean() < -800 and min(finals) > -600, (untrained, finals)
    assert main(["render", str(tmp_path), "--out", str(tmp_path / "episode.gif"), "--max-steps", "20"]) == 0
    assert (tmp_path / "episode.gif").stat().st_size > 1000


@pytest.mark.parametrize("argv, message", [
    (["pqn", "--env", "Pendulum-v1"], "pqn needs discrete actions"),
    (["sac", "--env", "CartPole-v1"], "sac needs continuous actions"),
    (["dqn", "--set", "buffer_size=10"], "buffer_size=10 must hold a minibatch"),
    (["dqn", "--set", "tau=2"], "invalid tau 2.0"),
])
def test_bad_settings_are_one_line(argv, message, capsys, tmp_path):
    assert main(["train", *argv, "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and message in err, err
