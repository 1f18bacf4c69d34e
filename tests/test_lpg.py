"""LPG: the agent's loss against a hand computation, the rule's backward recurrence with restarts at episode ends,
rule files, and the agent on the runner through `jaxrl train lpg --rule FILE`."""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl import load
from jaxrl.agents import lpg
from jaxrl.cli import main


def test_agent_loss_equals_a_hand_computation():
    # T = 2 steps of one environment, K = 2 prediction bins.
    pi = [0.5, 0.25]  # pi(a_t|s_t)
    pi_hat = [1.0, -2.0]
    y = [[0.5, 0.5], [0.9, 0.1]]
    y_hat = [[0.25, 0.75], [0.5, 0.5]]
    alpha = 0.5
    policy = -(1.0 * math.log(0.5) + -2.0 * math.log(0.25)) / 2
    kl_0 = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    kl_1 = 0.9 * math.log(0.9 / 0.5) + 0.1 * math.log(0.1 / 0.5)
    expected = policy + alpha * (kl_0 + kl_1) / 2  # = -1.0397 + 0.5 * 0.2559

    column = lambda v: jnp.asarray(v, jnp.float32)[:, None]
    loss, terms = lpg.agent_loss(jnp.log(column(pi)), jnp.log(column(y)), column(pi_hat), jnp.log(column(y_hat)), alpha)
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    assert float(terms["policy_loss"]) == pytest.approx(policy, rel=1e-5)
    assert float(terms["prediction_kl"]) == pytest.approx((kl_0 + kl_1) / 2, rel=1e-5)


def test_descending_the_loss_follows_pi_hat_and_moves_y_towards_y_hat():
    """The sign convention: a step down L raises log pi(a|s) where pi_hat > 0, lowers it where pi_hat < 0, and
    brings y closer to y_hat."""
    logits, y_logits = jnp.zeros((2, 1, 3)), jnp.zeros((2, 1, 4))
    action = jnp.array([[0], [1]])
    pi_hat = jnp.array([[1.0], [-1.0]])
    log_y_hat = jnp.log(jnp.array([0.7, 0.1, 0.1, 0.1]))[None, None].repeat(2, axis=0)

    def loss(logits, y_logits):
        log_pi = jnp.take_along_axis(jax.nn.log_softmax(logits), action[..., None], axis=-1)[..., 0]
        return lpg.agent_loss(log_pi, jax.nn.log_softmax(y_logits), pi_hat, log_y_hat, 1.0)[0]

    g_logits, g_y = jax.grad(loss, argnums=(0, 1))(logits, y_logits)
    new_pi = jax.nn.softmax(logits - 0.1 * g_logits)
    assert new_pi[0, 0, 0] > 1 / 3 > new_pi[1, 0, 1]
    kl = lambda l: float(jnp.sum(jax.nn.softmax(l) * (jax.nn.log_softmax(l) - log_y_hat)))
    assert kl(y_logits - 0.1 * g_y) < kl(y_logits)


@pytest.fixture(scope="module")
def rule():
    module = lpg.LPGRule(target_width=4, embedding_width=8, gru_width=16, lifetime_conditioning=True)
    return module, lpg.init_rule(module, jax.random.key(1))


def _rule_inputs(T: int = 6, N: int = 2):
    k = iter(jax.random.split(jax.random.key(2), 4))
    done = jnp.zeros((T, N), bool).at[2].set(True)  # episodes end at t = 2 in every environment
    return {
        "reward": jax.random.normal(next(k), (T, N)),
        "terminated": done,
        "done": done,
        "pi_taken": jax.random.uniform(next(k), (T, N)),
        "y": jax.nn.softmax(jax.random.normal(next(k), (T, N, 4))),
        "next_y": jax.nn.softmax(jax.random.normal(next(k), (T, N, 4))),
    }


def test_the_rule_reads_each_episode_backwards_and_restarts_at_its_end(rule):
    module, params = rule
    apply = jax.jit(lambda x: module.apply(params, **x, gamma=0.99, progress=0.5, log_lifetime=jnp.log(100.0)))
    base = _rule_inputs()
    pi_hat, log_y_hat = apply(base)
    assert pi_hat.shape == (6, 2) and log_y_hat.shape == (6, 2, 4)
    np.testing.assert_allclose(jnp.exp(log_y_hat).sum(-1), 1.0, rtol=1e-5)

    def changed_steps(t: int) -> list[int]:
        """Steps whose outputs move when the reward at step t (of environment 0) changes."""
        moved, _ = apply({**base, "reward": base["reward"].at[t, 0].add(1.0)})
        assert np.allclose(moved[:, 1], pi_hat[:, 1]), "environments are independent"
        return [s for s in range(6) if not np.isclose(moved[s, 0], pi_hat[s, 0], atol=1e-7)]

    # Backwards within an episode: step t informs steps <= t of its own episode; the restart at the end of the
    # first episode (t = 2) keeps the second (t = 3..5) from reaching into it.
    assert changed_steps(1) == [0, 1]
    assert changed_steps(2) == [0, 1, 2]
    assert changed_steps(4) == [3, 4]
    assert changed_steps(5) == [3, 4, 5]


def test_time_limits_bootstrap_and_terminal_states_do_not(rule):
    """The rule sees (1 - terminated) phi(y(s_t+1)): a prediction after a terminal state is ignored, after a time
    limit (done but not terminated) it is used; the restart happens at both."""
    module, params = rule
    apply = jax.jit(lambda x: module.apply(params, **x, gamma=0.99, progress=0.5, log_lifetime=jnp.log(100.0))[0])
    base = _rule_inputs()
    other_next_y = base["next_y"].at[2].set(jnp.array([1.0, 0.0, 0.0, 0.0]))
    terminal = {**base, "terminated": base["done"]}
    truncated = {**base, "terminated": jnp.zeros_like(base["done"])}
    assert np.allclose(apply({**terminal, "next_y": other_next_y})[2], apply(terminal)[2])
    assert not np.allclose(apply({**truncated, "next_y": other_next_y})[2], apply(truncated)[2])


def test_the_lifetime_inputs_matter_only_with_lifetime_conditioning(rule):
    module, params = rule
    x = _rule_inputs()
    out = lambda m, p, progress: m.apply(p, **x, gamma=0.99, progress=progress, log_lifetime=jnp.log(100.0))[0]
    assert not np.allclose(out(module, params, 0.1), out(module, params, 0.9))
    plain = module.clone(lifetime_conditioning=False)
    plain_params = lpg.init_rule(plain, jax.random.key(1))
    assert np.allclose(out(plain, plain_params, 0.1), out(plain, plain_params, 0.9))


def test_rule_files_round_trip_and_refuse_another_architecture(tmp_path, rule):
    module, params = rule
    path = tmp_path / "rule.npz"
    lpg.save_rule(str(path), module, params)
    back = lpg.load_rule(str(path), module)
    assert jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.array_equal(a, b)), params, back))
    with pytest.raises(lpg.InvalidChoiceError, match="gru_width=16"):
        lpg.load_rule(str(path), module.clone(gru_width=32))
    with pytest.raises(lpg.InvalidChoiceError, match="cannot read rule file"):
        lpg.load_rule(str(tmp_path / "missing.npz"), module)


def test_train_lpg_with_a_rule_file_runs_loads_and_refuses_bad_input(tmp_path, capsys):
    """`jaxrl train lpg --rule FILE` on the runner: two seeds, the rule's parameters and architecture (from the
    file, no flag needed) in the run, kept policies that load; a missing file, --rule with --objective and an
    architecture setting that contradicts the file are one line, exit 2."""
    config = lpg.LPGConfig(gru_width=32)
    module = lpg.rule_of(config)
    params = jax.jit(lambda key: lpg.init_rule(module, key))(jax.random.key(7))
    rule_file = tmp_path / "rule.npz"
    lpg.save_rule(str(rule_file), module, params)

    out = tmp_path / "run"
    common = ["--steps", str(64 * 20 * 4), "--set", "eval_episodes=8", "--devices", "1", "--quiet"]
    assert main(["train", "lpg", "--rule", str(rule_file), "--seeds", "2", "--out", str(out), *common]) == 0
    trained = load(out)
    curves = np.load(out / "curves.npz")
    assert np.isfinite(curves["final_return"]).all() and curves["loss"].shape == (1, 2, 4)  # (grid points, seeds, updates)
    agent = trained.agent
    assert agent.config.gru_width == 32 and agent.rule.gru_width == 32
    used = agent.default_hparams().objective
    assert jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.array_equal(a, b)), used, params))
    obs = jnp.zeros((3, agent.spaces.obs_dim)).at[:, 0].set(1.0)
    assert trained.policy(obs, run=1).shape == (3,)
    capsys.readouterr()

    assert main(["train", "lpg", "--rule", str(tmp_path / "nope.npz"), "--out", str(tmp_path / "a"), *common]) == 2
    assert main(["train", "lpg", "--rule", str(rule_file), "--objective", "ppo_clip", "--out", str(tmp_path / "b"), *common]) == 2
    assert main(["train", "lpg", "--rule", str(rule_file), "--set", "gru_width=16", "--out", str(tmp_path / "c"), *common]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(errors) == 3 and "cannot read rule file" in errors[0] and "not both" in errors[1], errors
    assert "was saved with gru_width=32" in errors[2], errors



def test_levels_come_from_reset_to_and_the_lifetime_reaches_the_rule():
    """`reset_to` puts every environment on the caller's level (what meta-training does); hparams.lifetime is the N
    of the rule's inputs n / N and log N: with lifetime conditioning it changes the update, without it does not."""
    from jaxrl.envs import gridworld

    level = gridworld.GridParams(level=gridworld.lpg_level("sparse"))

    def one_update(config):
        agent = lpg.make_agent(config)

        @jax.jit
        def params_after(lifetime):  # traced: one compile for both lifetimes
            hparams = agent.default_hparams().replace(lifetime=lifetime)
            carry = agent.init(jax.random.key(0), hparams)
            carry = agent.reset_to(carry, jax.tree.map(lambda x: jnp.broadcast_to(x, (4, *x.shape)), level), jax.random.key(1))
            return agent.update(carry, hparams)[0]

        short, long = params_after(jnp.float32(2)), params_after(jnp.float32(50))
        assert np.array_equal(short.env_params.level.size, np.full(4, level.level.size))
        return same(short.params, long.params)

    same = lambda a, b: jax.tree.all(jax.tree.map(lambda x, y: bool(jnp.array_equal(x, y)), a, b))
    config = lpg.LPGConfig(num_envs=4, num_steps=5, total_timesteps=4 * 5 * 4, gru_width=16, eval_episodes=2, lifetime_conditioning=True)
    assert not one_update(config)
    assert one_update(dataclasses.replace(config, lifetime_conditioning=False))
