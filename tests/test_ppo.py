"""The PPO training loop: determinism, vmap equivalences, A2C as a special case, time-limit bootstrapping,
recurrent and continuous variants, and learning on CartPole."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import flax.linen as nn
from flax import struct

from jaxrl import envs, objectives
from jaxrl.agents.ppo import PPOConfig, PPOHparams, _flat, make_agent
from jaxrl.config import apply_overrides, build, load_yaml
from jaxrl.networks import ActorCritic
from jaxrl.returns import gae
from jaxrl.envs import InvalidChoiceError

SMALL = PPOConfig(num_envs=4, num_steps=32, total_timesteps=4 * 32 * 6, eval_episodes=8)


def to_numpy(tree):
    is_key = lambda x: jnp.issubdtype(x.dtype, jax.dtypes.prng_key)
    return jax.tree.map(lambda x: np.asarray(jax.random.key_data(x) if is_key(x) else x), tree)


@functools.lru_cache(maxsize=None)
def small_agent():
    agent = make_agent(SMALL)
    return agent, jax.jit(agent.train)


def test_same_key_is_bit_identical():
    agent, train = small_agent()
    hp = agent.default_hparams()
    a = to_numpy(train(jax.random.key(5), hp))
    b = to_numpy(train(jax.random.key(5), hp))
    jax.tree.map(np.testing.assert_array_equal, a, b)
    c = train(jax.random.key(6), hp)
    assert not np.allclose(a[1]["loss"], c[1]["loss"])


def test_vmapped_seeds_equal_single_runs():
    agent, train = small_agent()
    hp = agent.default_hparams()
    keys = jax.random.split(jax.random.key(0), 3)
    _, batched = jax.jit(jax.vmap(agent.train, in_axes=(0, None)))(keys, hp)
    for i in range(3):
        _, single = train(keys[i], hp)
        for name in ("loss", "approx_kl", "episode_return", "final_return"):
            np.testing.assert_allclose(batched[name][i], single[name], rtol=1e-4, atol=1e-5, err_msg=name)


def test_vmapped_hparams_equal_separate_runs():
    agent, train = small_agent()
    hp = agent.default_hparams()
    lrs = jnp.array([1e-3, 2.5e-4])
    batch = hp.replace(lr=lrs, ent_coef=jnp.array([0.0, 0.01]), objective={"clip_eps": jnp.array([0.1, 0.3])})
    axes = jax.tree.map(lambda x: 0 if jnp.ndim(x) else None, batch)
    _, batched = jax.jit(jax.vmap(agent.train, in_axes=(None, axes)))(jax.random.key(1), batch)
    for i in range(2):
        one = jax.tree.map(lambda x: x[i] if jnp.ndim(x) else x, batch)
        _, single = train(jax.random.key(1), one)  # same compiled function: hparams are data
        np.testing.assert_allclose(batched["loss"][i], single["loss"], rtol=1e-4, atol=1e-5)
    assert not np.allclose(batched["loss"][0], batched["loss"][1])


def test_a2c_config_equals_a_hand_written_a2c_update():
    """experiments/configs/a2c.yaml's settings: two updates of `ppo` equal A2C written out by hand: n-step returns
    from a NumPy loop, raw advantages, policy gradient + 0.5 x squared value error, global-norm clipping and
    RMSprop (decay 0.99, eps 1e-5 outside the root, mean square starting at 0) coded directly. Two updates, so the
    mean square's decay is exercised."""
    settings = {**load_yaml("experiments/configs/a2c.yaml"), "num_envs": 4, "num_steps": 16, "total_timesteps": 64 * 4}
    config, overrides = build(PPOConfig, PPOHparams, settings)
    agent = make_agent(config)
    hp = apply_overrides(agent.default_hparams(), overrides)
    gamma, lr, max_norm = float(hp.gamma), float(hp.lr), float(hp.max_grad_norm)
    network = ActorCritic(2, 1)
    value_of = jax.jit(lambda params, obs: network.apply(params, obs)[1])
    carry = jax.jit(agent.init)(jax.random.key(2), hp)
    expected, mean_square = carry.params, jax.tree.map(jnp.zeros_like, carry.params)
    collect, learn = jax.jit(agent.collect), jax.jit(agent.learn)

    @jax.jit  # one compile for the hand-written update instead of one per eager operation
    def a2c_update(params, mean_square, obs, actions, adv, targets):
        def a2c_loss(params):
            pi, value = network.apply(params, obs)
            return -jnp.mean(pi.log_prob(actions) * adv) + 0.5 * jnp.mean((value - targets) ** 2)

        grads = jax.grad(a2c_loss)(params)
        norm = jnp.sqrt(sum(jnp.sum(g**2) for g in jax.tree.leaves(grads)))
        grads = jax.tree.map(lambda g: g * jnp.minimum(1.0, max_norm / norm), grads)
        mean_square = jax.tree.map(lambda m, g: 0.99 * m + 0.01 * g**2, mean_square, grads)
        return jax.tree.map(lambda p, g, m: p - lr * g / (jnp.sqrt(m) + 1e-5), params, grads, mean_square), mean_square

    for _ in range(2):
        carry, batch = collect(carry, hp)
        params = carry.params
        traj = jax.tree.map(np.asarray, batch.traj)
        values = np.asarray(value_of(params, traj.obs), np.float64)
        next_values = np.asarray(value_of(params, traj.final_obs), np.float64)
        returns, following = np.zeros_like(values), next_values[-1]
        for t in reversed(range(traj.reward.shape[0])):  # R_t = r_t + gamma (0 if terminal; V(s') at a cut; else R_t+1)
            bootstrap = np.where(traj.done[t], next_values[t], following)
            returns[t] = traj.reward[t] + gamma * (1.0 - traj.terminated[t]) * bootstrap
            following = returns[t]
        adv = jnp.asarray((returns - values).reshape(-1), jnp.float32)
        obs, actions, targets = traj.obs.reshape(-1, 4), traj.action.reshape(-1), jnp.asarray(returns.reshape(-1), jnp.float32)
        expected, mean_square = a2c_update(params, mean_square, obs, actions, adv, targets)
        carry, _ = learn(carry, batch, hp)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-4, atol=1e-6), carry.params, expected)
        assert not np.allclose(jax.tree.leaves(expected)[0], jax.tree.leaves(params)[0])


@struct.dataclass
class ConstantState:
    time: jax.Array


@struct.dataclass
class ConstantParams:
    max_steps_in_episode: int = 8


class ConstantRewardEnv:
    """Reward 1 every step, a time limit, and nothing to observe: the only correct value is 1 / (1 - gamma)."""

    default_params = ConstantParams()

    def observation_space(self, params=None):
        return envs.Box(0.0, 1.0, (1,), jnp.float32)

    def action_space(self, params=None):
        return envs.Discrete(2)

    def reset(self, key, params=None):
        return jnp.zeros((1,)), ConstantState(jnp.zeros((), jnp.int32))

    def step(self, key, state, action, params=None):
        params = self.default_params if params is None else params
        time = state.time + 1
        truncated = time >= params.max_steps_in_episode
        obs = jnp.zeros((1,))
        info = {"final_observation": obs}
        return obs, ConstantState(jnp.where(truncated, 0, time)), jnp.float32(1.0), jnp.bool_(False), truncated, info


class EarlyEndEnv(ConstantRewardEnv):
    """Reward 1 per step; terminates after 3 steps, well inside the time limit of 8 that bounds evaluation."""

    def step(self, key, state, action, params=None):
        time = state.time + 1
        terminated = time >= 3
        obs = jnp.zeros((1,))
        return obs, ConstantState(jnp.where(terminated, 0, time)), jnp.float32(1.0), terminated, jnp.bool_(False), {"final_observation": obs}


def test_evaluation_counts_each_episode_once():
    # EarlyEndEnv has no step_env, so evaluation steps it with its auto-reset for all 8 steps and must mask what
    # follows the end of each episode: every episode returns exactly 3.
    envs.register("EarlyEnd-test", EarlyEndEnv, overwrite=True)
    agent = make_agent(PPOConfig(env_id="EarlyEnd-test", num_envs=2, num_steps=4, total_timesteps=8, eval_episodes=3))
    hp = agent.default_hparams()
    carry = jax.jit(agent.init)(jax.random.key(0), hp)
    assert float(jax.jit(agent.evaluate)(carry, jax.random.key(1))) == 3.0


def test_values_bootstrap_through_time_limits():
    envs.register("ConstantReward-test", ConstantRewardEnv, overwrite=True)
    config = PPOConfig(env_id="ConstantReward-test", num_envs=4, num_steps=32, total_timesteps=4 * 32 * 150, anneal_lr=False, eval_episodes=1)
    agent = make_agent(config)
    gamma = 0.9
    hp = agent.default_hparams().replace(lr=jnp.float32(0.02), gamma=jnp.float32(gamma), value_clip_eps=jnp.float32(1e3))
    carry, _ = jax.jit(agent.train)(jax.random.key(0), hp)
    _, batch = jax.jit(agent.collect)(carry, hp)
    # Treating the limit as a terminal state would give values of 1..(1-0.9^8)/0.1 ~ 5.7 at most.
    np.testing.assert_allclose(batch.traj.value, 1.0 / (1.0 - gamma), rtol=0.05)



@pytest.mark.parametrize("recurrent", [False, True])
def test_collect_bootstraps_from_final_observations_exactly_at_time_limits(recurrent):
    # CartPole cut at 5 steps truncates every environment several times in a 16-step rollout. The critic reads final
    # observations only there (returns.values_after); the advantages must equal GAE with a critic pass over every
    # step's final observation (with the memory after the step, for a recurrent policy).
    config = PPOConfig(env_id="CartPole-v1", num_envs=4, num_steps=16, num_minibatches=2, total_timesteps=4 * 16,
                       recurrent=recurrent, gru_size=8, eval_episodes=1)
    agent = make_agent(config)
    hp = agent.default_hparams()
    carry = jax.jit(agent.init)(jax.random.key(0), hp)
    carry = carry.replace(env_params=carry.env_params.replace(max_steps_in_episode=jnp.full((4,), 5, jnp.int32)))  # per env
    _, batch = jax.jit(agent.collect)(carry, hp)
    traj = batch.traj
    truncated = np.asarray(traj.done & ~traj.terminated)
    assert truncated.sum(axis=0).min() >= 2, truncated.sum(axis=0)
    hidden = _flat(traj.hidden_after)[0] if recurrent else None
    starts = jnp.zeros((1, config.batch_size), bool) if recurrent else None
    final_values = jax.jit(agent.policy.apply)(carry.params, hidden, _flat(traj.final_obs), starts)[2].reshape(traj.value.shape)
    advantages, _ = jax.jit(gae)(traj.reward, traj.value, final_values, traj.terminated, traj.done, hp.gamma, hp.gae_lambda)
    np.testing.assert_allclose(batch.advantages, advantages, rtol=1e-5, atol=1e-5)


def test_recurrent_policy_runs_on_memory_chain():
    """Shapes and finiteness only; learning with memory is tests/test_learning.py's."""
    config = PPOConfig(env_id="MemoryChain-bsuite", recurrent=True, gru_size=32, num_envs=8, num_steps=16, total_timesteps=8 * 16 * 4, num_minibatches=2, eval_episodes=4)
    agent = make_agent(config)
    carry, metrics = jax.jit(agent.train)(jax.random.key(0), agent.default_hparams())
    assert carry.hidden.shape == (8, 32)
    assert np.isfinite(np.asarray(metrics["loss"])).all() and np.isfinite(float(metrics["final_return"]))


def test_gru_resets_exactly_at_episode_starts():
    from jaxrl.networks import ResetGRU

    gru = ResetGRU(8)
    x = jax.random.normal(jax.random.key(0), (6, 2, 3))
    resets = jnp.zeros((6, 2), bool).at[3, 0].set(True)
    h0 = jax.random.normal(jax.random.key(1), (2, 8))
    params = gru.init(jax.random.key(2), h0, x, resets)
    _, out = gru.apply(params, h0, x, resets)
    _, fresh = gru.apply(params, jnp.zeros((2, 8)), x[3:], jnp.zeros((3, 2), bool))
    np.testing.assert_allclose(out[3:, 0], fresh[:, 0], atol=1e-6)  # env 0 restarted at t = 3
    assert not np.allclose(out[3:, 1], fresh[:, 1])  # env 1 kept its memory


@pytest.mark.parametrize("mode", ["clip", "tanh"])
def test_continuous_actions(mode):
    config = PPOConfig(env_id="Pendulum-v1", continuous_actions=mode, normalize_obs=True, normalize_reward=True, num_envs=4, num_steps=32, total_timesteps=4 * 32 * 3, eval_episodes=2)
    agent = make_agent(config)
    carry, metrics = jax.jit(agent.train)(jax.random.key(0), agent.default_hparams())
    assert np.isfinite(np.asarray(metrics["loss"])).all() and np.isfinite(float(metrics["final_return"]))
    # Whether it learns is tests/test_learning.py's (an untrained Pendulum policy scores about -1200).


def test_objective_file_is_accepted(tmp_path):
    obj = objectives.make("lpo", ppo_init=True, init_scale=0.1)
    params = obj.init(jax.random.key(4))
    path = tmp_path / "obj.npz"
    objectives.save(path, obj, params)
    agent = make_agent(PPOConfig(num_envs=4, num_steps=16, total_timesteps=64, objective=str(path), eval_episodes=1))
    hp = agent.default_hparams()
    np.testing.assert_array_equal(hp.objective["w1"], params["w1"])
    with pytest.raises(InvalidChoiceError, match="objective"):
        make_agent(PPOConfig(objective="no_such_objective"))


def test_bad_config_is_one_clear_error():
    with pytest.raises(InvalidChoiceError, match="num_minibatches=3 must divide"):
        make_agent(PPOConfig(num_minibatches=3))
    with pytest.raises(InvalidChoiceError, match="unknown environment"):
        make_agent(PPOConfig(env_id="CartPole"))


def test_ppo_solves_cartpole():
    """The shipped CartPole setting (500k steps); 4 seeds in one vmapped program."""
    agent = make_agent(PPOConfig())
    keys = jax.random.split(jax.random.key(42), 4)
    _, metrics = jax.jit(jax.vmap(agent.train, in_axes=(0, None)))(keys, agent.default_hparams())
    final = np.asarray(metrics["final_return"])
    assert final.mean() >= 475, final


def test_squashed_entropy_is_the_entropy_of_the_squashed_action():
    """H[a] for a = low + (tanh(u) + 1)/2 (high - low), u ~ N(mu, sigma): the one-sample estimate averaged over many
    samples equals a numerical change of variables (a histogram-free estimate: -E[log p_a(a)] with p_a from the
    density of u divided by |da/du|, computed in float64 NumPy)."""
    import distrax

    from jaxrl.agents.ppo import Spaces, squashed_entropy

    spaces = Spaces(obs_dim=1, num_actions=0, action_dim=1, low=jnp.array([-2.0]), high=jnp.array([2.0]))
    mu, sigma = 0.7, 1.5
    pi = distrax.MultivariateNormalDiag(jnp.full((200_000, 1), mu), jnp.full((200_000, 1), sigma))
    u = pi.sample(seed=jax.random.key(0))
    estimate = float(jnp.mean(squashed_entropy(pi, u, spaces)))
    # Reference by quadrature: H[a] = integral of p_u(u) (-log p_u(u) + log |da/du|) du on a fine float64 grid.
    grid = np.linspace(mu - 12 * sigma, mu + 12 * sigma, 400_001)
    log_pu = -0.5 * ((grid - mu) / sigma) ** 2 - np.log(sigma * np.sqrt(2 * np.pi))
    log_jac = np.log(2.0) + np.log1p(-np.tanh(grid) ** 2)  # da/du = (high - low)/2 (1 - tanh^2)
    reference = float(np.sum(np.exp(log_pu) * (-log_pu + log_jac)) * (grid[1] - grid[0]))
    assert estimate == pytest.approx(reference, abs=0.01)  # Monte Carlo error of the estimate ~0.002
    gaussian = float(jnp.mean(pi.entropy()))
    assert gaussian - estimate > 0.3  # the Gaussian's entropy alone overstates it


def test_gru_equals_flax_gru_cell():
    """The fused GRU (one input projection for the whole sequence, one recurrent product per step) computes flax's
    GRUCell step for step, given the same weights laid side by side."""
    from jaxrl.networks import ResetGRU

    gru = ResetGRU(6)
    x = jax.random.normal(jax.random.key(0), (5, 3, 4))
    resets = jnp.zeros((5, 3), bool).at[2, 1].set(True)
    h0 = jax.random.normal(jax.random.key(1), (3, 6))
    params = gru.init(jax.random.key(2), h0, x, resets)["params"]
    noisy = jax.tree.map(lambda p: p + 0.1 * jax.random.normal(jax.random.key(3), p.shape), params)  # nonzero biases too
    _, out = gru.apply({"params": noisy}, h0, x, resets)

    cell = nn.GRUCell(6)
    wi, wh = np.split(np.asarray(noisy["input_kernel"]), 3, axis=1), np.split(np.asarray(noisy["hidden_kernel"]), 3, axis=1)
    bi = np.split(np.asarray(noisy["input_bias"]), 3)
    cell_params = {"params": {
        "ir": {"kernel": wi[0], "bias": bi[0]}, "iz": {"kernel": wi[1], "bias": bi[1]}, "in": {"kernel": wi[2], "bias": bi[2]},
        "hr": {"kernel": wh[0]}, "hz": {"kernel": wh[1]}, "hn": {"kernel": wh[2], "bias": np.asarray(noisy["hidden_bias"])},
    }}
    h = h0
    for t in range(5):
        h = jnp.where(resets[t][:, None], 0.0, h)
        h, y = cell.apply(cell_params, h, x[t])
        np.testing.assert_allclose(out[t], y, atol=1e-5)


def test_binary_observations_stored_as_bool_train_exactly_as_floats():
    # MinAtar declares 0/1 observations: the rollout keeps them as bool (a quarter of the bytes). The same update
    # with the declaration switched off (float32 storage) must give the same parameters.
    config = PPOConfig(env_id="Breakout-MinAtar", num_envs=4, num_steps=16, num_minibatches=2, total_timesteps=4 * 16 * 2,
                       activation="relu", eval_episodes=2)
    compact, plain = make_agent(config), make_agent(config)
    plain.env.binary_observations = False
    results = []
    for agent in (compact, plain):
        hparams = agent.default_hparams()
        carry, batch = jax.jit(lambda key, hp: agent.collect(agent.init(key, hp), hp))(jax.random.key(1), hparams)
        carry, _ = jax.jit(agent.learn)(carry, batch, hparams)
        results.append((batch, carry.params))
    (compact_batch, compact_params), (plain_batch, plain_params) = results
    assert compact_batch.traj.obs.dtype == jnp.bool_ and compact_batch.traj.final_obs.dtype == jnp.bool_
    assert plain_batch.traj.obs.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(compact_batch.traj.obs, np.float32), plain_batch.traj.obs)
    np.testing.assert_allclose(compact_batch.advantages, plain_batch.advantages, rtol=1e-6, atol=1e-7)
    for a, b in zip(jax.tree.leaves(compact_params), jax.tree.leaves(plain_params)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
