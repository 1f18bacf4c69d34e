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
from jaxrl.meta.lpg import MetaLPG, MetaLPGConfig, Task, algorithmic_regret, train_on_level, win_lose

TINY_AGENT = (("num_envs", 4), ("num_steps", 5), ("gru_width", 16))
# One device: fewer dispatches per call (conftest makes four), and the device count changes no result.


def test_win_lose_scores_each_pair_and_regret_is_antagonist_minus_the_pairs_mean():
    # Pairs (0, 3), (1, 4), (2, 5): the first member wins, loses, ties.
    returns = np.array([1.0, 0.2, 0.5, 0.4, 0.9, 0.5])
    np.testing.assert_array_equal(win_lose(returns), [1.0, 0.0, 0.5, 0.0, 1.0, 0.5])
    antagonist = np.array([2.0, 0.0, 0.5])
    np.testing.assert_allclose(algorithmic_regret(antagonist, returns), [2.0 - 0.7, 0.0 - 0.55, 0.5 - 0.5])


@pytest.fixture(scope="module")
def meta():
    config = MetaLPGConfig(curriculum="groove", population=4, lifetime=6, min_lifetime=2, lifetime_conditioning=True, eval_episodes=4,
                           buffer_capacity=4, checkpoint_every=1, heldout_every=2, agent=TINY_AGENT, max_devices=1)
    return MetaLPG(config)


def test_pairs_share_their_level_and_initial_agent(meta):
    """Member i and member i + P/2 train on task i with key i: identical rules there give identical returns, while
    the two pairs (different levels) do not."""
    rule = meta.hparams.objective
    other = jax.tree.map(lambda x: x + 0.5, rule)
    rules = jax.tree.map(lambda a, b: jnp.stack([a, b, a, b]), rule, other)  # pairs (0, 2) and (1, 3): each the same rule twice
    tasks = jax.jit(jax.vmap(meta.new_task))(jax.random.split(jax.random.key(3), 2))
    returns = meta.protagonist_returns(rules, tasks, jax.random.split(jax.random.key(4), 2))
    assert returns.shape == (4,)
    assert returns[0] == returns[2] and returns[1] == returns[3]
    sparse = tasks.replace(level=jax.tree.map(lambda x: jnp.stack([x, x]), gridworld.lpg_level("sparse")), lifetime=jnp.array([3, 3], jnp.int32))
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


def test_a_resumed_run_equals_an_uninterrupted_one_and_writes_a_loadable_rule(meta, tmp_path):
    full, cut = tmp_path / "full", tmp_path / "cut"
    meta.run(full, generations=3, progress=False)
    meta.run(cut, generations=2, progress=False)
    b = meta.run(cut, resume=True, generations=3, progress=False)
    a = json.loads((full / "meta_summary.json").read_text())
    assert [h["returns"] for h in a["history"]] == [h["returns"] for h in b["history"]]
    assert [h["regret"] for h in a["history"]] == [h["regret"] for h in b["history"]]
    assert [h["lifetimes"] for h in a["history"]] == [h["lifetimes"] for h in b["history"]]
    # The held-out evaluation (generations 0 and 2, the second one after the resume) is drawn the same way.
    assert [h["heldout"] for h in a["history"]] == [h["heldout"] for h in b["history"]]
    assert [h["heldout"] is not None for h in a["history"]] == [True, False, True]
    assert list(a["history"][0]["heldout"]) == list(gridworld.LPG_LEVELS[:4]), "one agent each on the first P = 4 levels"
    with np.load(full / "rule.npz") as x, np.load(cut / "rule.npz") as y:
        assert all(np.array_equal(x[k], y[k]) for k in x.files)
    assert {"rule.npz", "returns.png", "regret.png", "buffer.png", "heldout.png", "meta_summary.json"} <= {p.name for p in full.iterdir()}
    assert a["timing"]["agent_env_steps_per_s"] > 0 and len(a["history"][0]["regret"]) == 2
    rule = lpg.load_rule(str(full / "rule.npz"), meta.agent.rule)  # what `jaxrl train lpg --rule` reads
    assert not jax.tree.all(jax.tree.map(lambda r, h: bool(jnp.array_equal(r, h)), rule, meta.hparams.objective)), "the ES moved the rule"


def test_cli_runs_resumes_and_refuses_bad_input_in_one_line(tmp_path, capsys):
    common = ["meta", "lpg", "--curriculum", "plr", "--population", "4", "--lifetime", "4", "--eval-episodes", "4",
              "--buffer-capacity", "4", "--devices", "1", "--quiet", *[arg for k, v in TINY_AGENT for arg in ("--set", f"{k}={v}")]]
    out = tmp_path / "run"
    assert main([*common, "--generations", "1", "--out", str(out)]) == 0
    # Resuming a finished run with no more generations rebuilds it from meta.json and rewrites its results.
    (out / "meta_summary.json").unlink()
    assert main(["meta", "lpg", "--resume", str(out), "--devices", "1", "--quiet"]) == 0
    summary = json.loads((out / "meta_summary.json").read_text())
    assert summary["generations_done"] == 1 and summary["config"]["curriculum"] == "plr" and summary["history"][0]["kind"] == "new"
    capsys.readouterr()

    for argv, message in [
        (["--population", "3"], "even number"),
        (["--curriculum", "plrr"], "unknown curriculum 'plrr'"),
        (["--level", "maze"], "unknown level 'maze'"),
        (["--heldout-every", "-1"], "heldout_every=-1"),
        (["--set", "lifetime=3"], "set by meta lpg itself"),
    ]:
        assert main([*common, *argv, "--out", str(tmp_path / "bad")]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "bad").exists()
    assert main(["meta", "lpg", "--resume", str(out), "--population", "8"]) == 2
    assert "only --generations may change" in capsys.readouterr().err


def test_a_short_meta_training_on_one_easy_level_learns_a_rule_that_trains_agents():
    """A 3x3 level: +1 to the right of the start, -1 to the left, both end the episode. The untrained rule's agents
    score about 0 after their 8-update lifetime; after 4 generations of 8 rules, agents trained by the ES mean (on
    keys no generation used) reach the +1 object nearly every episode (about 0.98 when measured)."""
    level = gridworld.make_level(3, (1, 1), [(1, 2, 0), (1, 0, 1)], kind_reward=[1.0, -1.0], kind_terminate=[1.0, 1.0],
                                 kind_respawn=[0.0, 0.0], max_steps=10)

    class OneLevel(MetaLPG):
        def new_task(self, key):
            return Task(level, jnp.int32(self.config.lifetime), jnp.float32(jnp.nan), jnp.float32(jnp.nan))

    meta = OneLevel(MetaLPGConfig(curriculum="uniform", population=8, lifetime=8, eval_episodes=16, lr=0.05, max_devices=1,
                                  agent=(("num_envs", 8), ("num_steps", 8), ("gru_width", 16))))
    tasks = jax.jit(jax.vmap(meta.new_task))(jax.random.split(jax.random.key(9), 4))
    keys = jax.random.split(jax.random.key(10), 4)

    def score(rule) -> float:
        return float(meta.protagonist_returns(jax.tree.map(lambda x: jnp.stack([x] * 8), rule), tasks, keys).mean())

    state = meta._init_state(jax.random.key(0))
    before = score(meta.mean_rule(state))
    for g in range(4):
        state, _ = meta.generation(state, jax.random.key(1), g)
    after = score(meta.mean_rule(state))
    assert before < 0.3 and after > 0.8, (before, after)
