"""Meta-training an update rule (`jaxrl meta lpg`): fitness within antithetic pairs, algorithmic regret, pairs that
share their level and initial agent, lifetimes in one program, resume equal to an uninterrupted run, and the CLI's
files."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl.agents import lpg
from jaxrl.cli import main
from jaxrl.envs import gridworld
from jaxrl.meta.lpg import MetaLPG, MetaLPGConfig, algorithmic_regret, train_on_level, win_lose

TINY_AGENT = (("num_envs", 4), ("num_steps", 5), ("gru_width", 16))


def test_win_lose_scores_each_pair_and_regret_is_antagonist_minus_the_pairs_mean():
    # Pairs (0, 3), (1, 4), (2, 5): the first member wins, loses, ties.
    returns = np.array([1.0, 0.2, 0.5, 0.4, 0.9, 0.5])
    np.testing.assert_array_equal(win_lose(returns), [1.0, 0.0, 0.5, 0.0, 1.0, 0.5])
    antagonist = np.array([2.0, 0.0, 0.5])
    np.testing.assert_allclose(algorithmic_regret(antagonist, returns), [2.0 - 0.7, 0.0 - 0.55, 0.5 - 0.5])


@pytest.fixture(scope="module")
def meta():
    config = MetaLPGConfig(curriculum="groove", population=4, lifetime=6, min_lifetime=2, lifetime_conditioning=True, eval_episodes=4,
                           buffer_capacity=8, agent=TINY_AGENT)
    return MetaLPG(config)


def test_pairs_share_their_level_and_initial_agent(meta):
    """Member i and member i + P/2 train on task i with key i: identical rules there give identical returns, while
    the two pairs (different levels) do not."""
    rule = meta.hparams.objective
    other = jax.tree.map(lambda x: x + 0.5, rule)
    rules = jax.tree.map(lambda a, b: jnp.stack([a, b, a, b]), rule, other)  # pairs (0, 2) and (1, 3): each the same rule twice
    tasks = jax.vmap(meta.new_task)(jax.random.split(jax.random.key(3), 2))
    returns = meta.protagonist_returns(rules, tasks, jax.random.split(jax.random.key(4), 2))
    assert returns.shape == (4,)
    assert returns[0] == returns[2] and returns[1] == returns[3]
    sparse = jax.tree.map(lambda x: jnp.stack([x, x]), meta.new_task(jax.random.key(0)).replace(level=gridworld.lpg_level("sparse")))
    shared = meta.protagonist_returns(jax.tree.map(lambda x: jnp.stack([x, x, x, x]), rule), sparse, jnp.stack([jax.random.key(5)] * 2))
    assert len(set(shared.tolist())) == 1, "same rule, level, lifetime and key: the same agent"


def test_an_agent_past_its_lifetime_is_the_agent_at_its_end():
    """train_on_level with lifetime 2 in a program of 4 updates gives the agent a 2-update program gives."""
    level = gridworld.lpg_level("sparse")

    def final_params(num_updates: int):
        agent = lpg.make_agent(lpg.LPGConfig(num_envs=4, num_steps=5, total_timesteps=20 * num_updates, gru_width=16))
        return jax.jit(lambda key: train_on_level(agent, agent.default_hparams(), level, jnp.int32(2), key).params)(jax.random.key(0))

    four, two = final_params(4), final_params(2)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7), four, two)


def test_cli_writes_a_loadable_rule_and_a_resumed_run_equals_an_uninterrupted_one(tmp_path, capsys):
    common = ["meta", "lpg", "--curriculum", "groove", "--population", "4", "--lifetime", "4", "--eval-episodes", "4",
              "--buffer-capacity", "4", "--checkpoint-every", "1", "--quiet",
              *[arg for k, v in TINY_AGENT for arg in ("--set", f"{k}={v}")]]
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert main([*common, "--generations", "3", "--out", str(full)]) == 0
    assert main([*common, "--generations", "2", "--out", str(cut)]) == 0
    assert main(["meta", "lpg", "--resume", str(cut), "--generations", "3", "--quiet"]) == 0
    a, b = (json.loads((d / "meta_summary.json").read_text()) for d in (full, cut))
    assert [h["returns"] for h in a["history"]] == [h["returns"] for h in b["history"]]
    assert [h["regret"] for h in a["history"]] == [h["regret"] for h in b["history"]]
    with np.load(full / "rule.npz") as x, np.load(cut / "rule.npz") as y:
        assert all(np.array_equal(x[k], y[k]) for k in x.files)
    assert {"rule.npz", "returns.png", "regret.png", "buffer.png", "meta_summary.json", "meta.json"} <= {p.name for p in full.iterdir()}
    assert a["timing"]["agent_env_steps_per_s"] > 0 and len(a["history"][0]["regret"]) == 2

    # The saved rule trains an agent through `jaxrl train lpg --rule` (same architecture settings).
    run = tmp_path / "train"
    assert main(["train", "lpg", "--rule", str(full / "rule.npz"), "--set", "gru_width=16", "--set", "num_envs=4", "--set", "num_steps=5",
                 "--set", "eval_episodes=4", "--steps", "40", "--out", str(run), "--quiet"]) == 0
    capsys.readouterr()

    # Bad input: one line, exit 2, nothing written.
    for argv, message in [
        (["--population", "3"], "even number"),
        (["--curriculum", "plrr"], "unknown curriculum 'plrr'"),
        (["--level", "maze"], "unknown level 'maze'"),
        (["--set", "lifetime=3"], "set by meta lpg itself"),
    ]:
        assert main([*common, *argv, "--out", str(tmp_path / "bad")]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "bad").exists()
    assert main(["meta", "lpg", "--resume", str(cut), "--population", "8"]) == 2
