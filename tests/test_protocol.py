"""The agent protocol: a custom agent written in a few lines (the README's example) runs through the runner
unchanged; PPO satisfies the protocol; levels are data (a batch of CartPole pole lengths in one program)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxrl import envs
from jaxrl.agents.base import AgentProtocol
from jaxrl.runner import RunPlan, run


def readme_agent():
    """The README's example agent, executed from the README itself so the two cannot drift apart."""
    text = (Path(__file__).parent.parent / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    (code,) = [b for b in blocks if "class RandomAgent(Agent)" in b]
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    return namespace["RandomAgent"]


def test_a_custom_agent_runs_through_the_runner(tmp_path):
    agent = readme_agent()(num_updates=40)
    assert isinstance(agent, AgentProtocol)
    summary = run(agent, RunPlan("random", {}, {}, [0, 1, 2, 3]), {}, tmp_path / "out", chunk_updates=20, progress=False)
    assert summary["status"] == "finished" and len(summary["runs"]) == 4
    curves = np.load(tmp_path / "out" / "curves.npz")
    assert curves["episode_return"].shape == (1, 4, 40)
    assert curves["episode_return_valid"].any()  # random CartPole episodes last about 20 steps
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["config"]["env_id"] == "CartPole-v1"


def test_ppo_satisfies_the_protocol():
    from jaxrl.agents.ppo import PPOConfig, make_agent

    agent = make_agent(PPOConfig(num_envs=2, num_steps=8, total_timesteps=32, eval_episodes=2))
    assert isinstance(agent, AgentProtocol)
    assert agent.steps_per_update == 16 and agent.num_updates == 2
    carry = jax.jit(agent.init)(jax.random.key(0), agent.default_hparams())
    action = agent.act(carry.params, carry.obs, jax.random.key(1))
    assert action.shape == (2,) and set(np.asarray(action).tolist()) <= {0, 1}


def test_a_batch_of_levels_equals_single_runs():
    """4 CartPole copies with 4 different pole lengths, one program (VecEnv over a batch of params), step for step
    equal to 4 single-environment runs with the same keys and actions."""
    env, params = envs.make("CartPole-v1")
    lengths = jnp.array([0.25, 0.5, 1.0, 2.0])
    # gymnax's CartPole also keeps masspole x length as its own parameter: keep the two consistent.
    level = lambda length: params.replace(length=length, polemass_length=params.masspole * length)
    batched = jax.vmap(level)(lengths)
    vec = envs.VecEnv(env, 4, per_env_params=True)
    steps = 60
    actions = jax.random.bernoulli(jax.random.key(0), 0.5, (steps, 4)).astype(jnp.int32)
    step_keys = jax.random.split(jax.random.key(1), steps)

    @jax.jit
    def batch_run():
        obs, state = vec.reset(jax.random.key(2), batched)

        def body(state, xs):
            key, action = xs
            obs, state, reward, term, trunc, info = vec.step(key, state, action, batched)
            return state, (obs, reward, term)

        return jax.lax.scan(body, state, (step_keys, actions))[1]

    @jax.jit
    def single_run(i, length):
        p = level(length)
        key = jax.random.split(jax.random.key(2), 4)[i]
        obs, state = env.reset(key, p)

        def body(state, xs):
            key, action = xs
            obs, state, reward, term, trunc, info = env.step(jax.random.split(key, 4)[i], state, action[i], p)
            return state, (obs, reward, term)

        return jax.lax.scan(body, state, (step_keys, actions))[1]

    obs, reward, term = batch_run()
    for i in range(4):
        o, r, t = single_run(i, lengths[i])
        np.testing.assert_allclose(obs[:, i], o, rtol=1e-5, atol=1e-6)  # vector and scalar code may round apart
        np.testing.assert_array_equal(term[:, i], t)
    # The pole lengths matter: the shortest pole falls first.
    first_end = [int(np.argmax(np.asarray(term[:, i]))) for i in range(4)]
    assert len(set(first_end)) > 1


def test_ppo_levels_live_in_the_carry():
    """reset_to puts a batch of levels in PPO's carry; the rollout then runs on them (a time limit of 3 ends
    every episode at step 3) and the observation statistics carry over."""
    from jaxrl.agents.ppo import PPOConfig, make_agent

    agent = make_agent(PPOConfig(num_envs=4, num_steps=8, total_timesteps=64, eval_episodes=2, normalize_obs=True))
    hp = agent.default_hparams()
    carry = jax.jit(agent.init)(jax.random.key(0), hp)
    carry, _ = jax.jit(agent.update)(carry, hp)
    levels = jax.vmap(lambda limit: agent.default_env_params.replace(max_steps_in_episode=limit))(jnp.array([3, 3, 500, 500]))
    moved = jax.jit(agent.reset_to)(carry, levels, jax.random.key(5), hp)
    stats = envs.find_obs_stats(carry.env_state)
    np.testing.assert_array_equal(envs.find_obs_stats(moved.env_state).count, stats.count)
    # The new first observations are normalised with the kept statistics, not with statistics of the reset alone.
    raw_obs, _ = jax.jit(envs.VecEnv(agent.env, 4, per_env_params=True).reset)(jax.random.key(5), levels)
    np.testing.assert_allclose(moved.obs, np.clip((raw_obs - stats.mean) / np.sqrt(stats.var + 1e-8), -10, 10), rtol=1e-5, atol=1e-6)
    _, batch = jax.jit(agent.collect)(moved, hp)
    done = np.asarray(batch.traj.done)
    assert done[2, :2].all() and done[5, :2].all() and not done[:, 2:].any()
