"""UED: the DR / PLR / ACCEL curriculum, the UED agent in the runner (snapshots, resume), the `jaxrl ued` command,
level scores from a rollout, and a short DR run that learns."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import interrupt_after_first_chunk

from jaxrl.cli import main
from jaxrl.envs import maze
from jaxrl.envs.errors import InvalidChoiceError
from jaxrl.meta import ued, ued_report
from jaxrl.meta.levels import curriculum as cur
from jaxrl.meta.levels.buffer import PLRConfig, insert, size
from jaxrl.meta.levels.scores import rollout_scores
from jaxrl.runner import RunPlan, run

SMALL = dict(num_envs=8, num_steps=32, gru_size=16, capacity=16, min_fill=0.25, eval_episodes=1,
             eval_mazes=("SixteenRooms", "Labyrinth"), total_timesteps=8 * 32 * 6, top_levels=4)


@pytest.fixture(scope="module")
def plr_agent():
    return ued.make_agent(ued.UEDConfig(method="plr", **SMALL))


@pytest.fixture(scope="module")
def plr_update(plr_agent):
    hparams = plr_agent.default_hparams()
    return jax.jit(lambda c: plr_agent.update(c, hparams)), jax.jit(plr_agent.init)(jax.random.key(0), hparams)


def _tree_equal(a, b) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


# ------------------------------------------------------------------------------------------------ the curriculum


def _maze_curriculum(method: str, **kwargs) -> cur.Curriculum:
    return cur.Curriculum(method, lambda k: maze.random_level(k, 25), batch_size=8, plr=PLRConfig(capacity=16, min_fill=0.5),
                          edit_level=maze_edit(), **kwargs)


def maze_edit():
    from jaxrl.meta.levels.edits import edit_maze

    return edit_maze


def test_dr_always_proposes_new_levels_and_trains_on_them():
    c = _maze_curriculum("dr")
    state = c.init(jax.random.key(0))
    for i in range(3):
        proposal = c.propose(state, jax.random.key(i))
        assert int(proposal.kind) == cur.NEW and bool(c.trains_on(proposal))
        assert (np.asarray(proposal.levels.wall_map).sum((1, 2)) == 25).all()
        state = c.observe(state, proposal, jnp.zeros(8))
    assert int(size(state.buffer)) == 0


def test_plr_never_replays_before_min_fill_and_robust_plr_trains_only_on_replay():
    # Jitted: run op by op, these compiled ~100 small programs.
    c = _maze_curriculum("plr")
    state = jax.jit(c.init)(jax.random.key(0))
    random_levels = jax.jit(jax.vmap(lambda k: maze.random_level(k, 25)))
    levels = random_levels(jax.random.split(jax.random.key(1), 7))
    state = state.replace(buffer=jax.jit(insert)(state.buffer, levels, jnp.arange(7.0)))  # 7 < min_levels = 8
    propose = jax.jit(c.propose)
    kinds = [int(propose(state, jax.random.key(i)).kind) for i in range(20)]
    assert kinds == [cur.NEW] * 20
    new = propose(state, jax.random.key(0))
    assert not bool(c.trains_on(new))
    assert bool(c.trains_on(new.replace(kind=jnp.int32(cur.REPLAY))))
    assert bool(_maze_curriculum("plr", robust=False).trains_on(new))  # the original PLR trains on new levels too

    full = state.replace(buffer=jax.jit(insert)(state.buffer, random_levels(jax.random.split(jax.random.key(2), 1)), jnp.array([9.0])))
    kinds = np.array([int(propose(full, jax.random.key(i)).kind) for i in range(200)])
    assert 0.7 < (kinds == cur.REPLAY).mean() < 0.9  # replay_prob 0.8 once the buffer holds min_fill * capacity


def test_accel_edits_the_replayed_levels_after_a_replay():
    c = _maze_curriculum("accel", max_edits=3)
    state = c.init(jax.random.key(0))
    replayed = jax.vmap(lambda k: maze.random_level(k, 25))(jax.random.split(jax.random.key(1), 8))
    state = state.replace(last_kind=jnp.int32(cur.REPLAY), last_levels=replayed)
    proposal = c.propose(state, jax.random.key(5))
    assert int(proposal.kind) == cur.EDIT and not bool(c.trains_on(proposal))
    flips = (np.asarray(proposal.levels.wall_map) != np.asarray(replayed.wall_map)).sum((1, 2))
    moved = (np.asarray(proposal.levels.goal_pos) != np.asarray(replayed.goal_pos)).any(1) | (
        np.asarray(proposal.levels.agent_pos) != np.asarray(replayed.agent_pos)).any(1)
    assert ((flips > 0) | moved).all() and (flips <= 3).all()  # 1..max_edits edits, each changes the level
    assert all(bool(maze.level_is_valid(jax.tree.map(lambda x: x[i], proposal.levels))) for i in range(8))
    # After an edit the next proposal is new or replayed, never a second edit.
    after = c.observe(state, proposal, jnp.zeros(8))
    assert int(c.propose(after, jax.random.key(6)).kind) != cur.EDIT


def test_capacity_smaller_than_the_batch_is_refused():
    with pytest.raises(InvalidChoiceError, match="capacity 4 is smaller than the batch of 8"):
        cur.Curriculum("plr", lambda k: maze.random_level(k), batch_size=8, plr=PLRConfig(capacity=4))


# ------------------------------------------------------------------------------------------------ scores


def test_rollout_scores_against_hand_computation():
    # T = 4 steps, B = 2 levels. Level 0: an episode ends at t = 1 with return 0.6 (solved), another at t = 3 with
    # return 0 (not solved). Level 1: no episode ends.
    advantages = np.array([[0.5, -1.0], [-0.2, 2.0], [0.1, 0.0], [0.0, 1.0]], np.float32)
    values = np.array([[0.1, 0.2], [0.3, 0.2], [0.0, 0.4], [0.2, 0.2]], np.float32)
    done = np.array([[False, False], [True, False], [False, False], [True, False]])
    returns = np.array([[0.0, 0.0], [0.6, 0.0], [0.0, 0.0], [0.0, 0.0]], np.float32)
    pvl = rollout_scores("pvl", advantages, values, done, returns)
    np.testing.assert_allclose(pvl, [(0.5 + 0.1) / 4, (2.0 + 1.0) / 4], rtol=1e-6)
    maxmc = rollout_scores("maxmc", advantages, values, done, returns)
    np.testing.assert_allclose(maxmc, [0.6 - values[:, 0].mean(), 0.0 - values[:, 1].mean()], rtol=1e-6)
    learn = rollout_scores("learnability", advantages, values, done, returns)
    np.testing.assert_allclose(learn, [0.5 * 0.5, 0.0], rtol=1e-6)


# ------------------------------------------------------------------------------------------------ the agent


def test_robust_plr_update_leaves_the_student_untouched_on_new_levels(plr_update):
    update, carry = plr_update
    after, metrics = update(carry)  # the buffer is empty: the first update explores new levels
    assert not bool(metrics["replay"]) and not bool(metrics["learned"])
    assert _tree_equal(after.student.params, carry.student.params)
    assert _tree_equal(after.student.opt_state, carry.student.opt_state)
    assert int(after.student.update) == 1 and int(size(after.curriculum.buffer)) == 8
    # The levels the student played are exactly the ones now in the buffer (reset_to puts them in the carry).
    played = after.student.env_params.level
    assert _tree_equal(played, jax.tree.map(lambda x: x[:8], after.curriculum.buffer.levels))

    while True:  # then, once it replays, it learns, on the replayed levels
        carry = after
        after, metrics = update(carry)
        if bool(metrics["replay"]):
            break
    assert bool(metrics["learned"]) and not _tree_equal(after.student.params, carry.student.params)
    buffer = carry.curriculum.buffer
    played = after.student.env_params.level
    stored = jax.tree.map(lambda x: x[np.asarray(buffer.filled)], buffer.levels)
    for i in range(8):  # every replayed level is a stored one
        one = jax.tree.map(lambda x: x[i], played)
        assert any(_tree_equal(one, jax.tree.map(lambda x: x[j], stored)) for j in range(int(size(buffer))))


def test_ued_in_the_runner_snapshots_resume_and_report(plr_agent, tmp_path, monkeypatch):
    plan = RunPlan("ued", {"method": "plr"}, {}, [0, 1])
    full = run(plr_agent, plan, {}, tmp_path / "full", chunk_updates=2, checkpoint_every=1, max_devices=1, progress=False)
    with monkeypatch.context() as m:
        interrupt_after_first_chunk(m)
        cut = run(plr_agent, plan, {}, tmp_path / "cut", chunk_updates=2, checkpoint_every=1, max_devices=1, progress=False)
    assert cut["status"] == "interrupted"
    resumed = run(plr_agent, plan, {}, tmp_path / "cut", chunk_updates=2, checkpoint_every=1, max_devices=1, progress=False, resume=True)
    assert resumed["status"] == full["status"] == "finished"
    a, b = np.load(tmp_path / "full" / "curves.npz"), np.load(tmp_path / "cut" / "curves.npz")
    assert a["snapshot_maze_solved"].shape == (1, 2, 3, 2)  # grid point, seed, chunk, maze
    assert a["snapshot_buffer_score"].shape == (1, 2, 3, 16)
    np.testing.assert_array_equal(a["snapshot_env_steps"], [2 * 256, 4 * 256, 6 * 256])
    for name in a.files:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)

    section = ued_report.write(tmp_path / "full", full)
    summary = json.loads((tmp_path / "full" / "summary.json").read_text())
    assert summary["ued"]["held_out_mazes"] == ["SixteenRooms", "Labyrinth"]
    row = summary["ued"]["held_out"][0]
    assert set(row["mazes"]) == {"SixteenRooms", "Labyrinth"} and row["mean_solve_rate"]["n"] == 2
    assert section["buffer"]["size_per_seed"] == [int(x) for x in a["snapshot_buffer_filled"][0, :, -1].sum(-1)]
    for name in ("heldout.png", "levels.png", "buffer.png"):
        assert (tmp_path / "full" / name).stat().st_size > 1000
    assert "Held-out mazes" in (tmp_path / "full" / "report.md").read_text()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--method", "poet"], "unknown UED method 'poet'"),
        (["--score", "regret"], "unknown score function 'regret'"),
        (["--set", "eval_mazes=SixteenRoom"], "unknown held-out maze 'SixteenRoom'"),
        (["--set", "capacity=16"], "capacity 16 is smaller than the batch of 32"),
        (["--env", "CartPole-v1"], "unknown UED environment 'CartPole-v1'"),
    ],
)
def test_ued_bad_input_is_one_line_exit_2_and_writes_nothing(argv, message, capsys, tmp_path):
    assert main(["ued", *argv, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "o").exists()


def test_dr_on_empty_rooms_learns():
    """Easy levels (no walls, random agent and goal): 60 DR updates of a small student lift the solve rate on
    64 fresh levels from about 0.3 (untrained, 0.34 seen) to above 0.6 (0.80 seen)."""
    config = ued.UEDConfig(method="dr", num_walls=0, num_envs=16, num_steps=128, gru_size=64, total_timesteps=16 * 128 * 60,
                           eval_episodes=1, eval_mazes=("SixteenRooms",))
    agent = ued.make_agent(config)
    hparams = agent.default_hparams().replace(lr=jnp.float32(1e-3))
    levels = jax.vmap(lambda k: maze.random_level(k, 0))(jax.random.split(jax.random.key(99), 64))
    test_params = ued.with_levels(ued.batch_default(agent.student, 64), levels)

    @jax.jit
    def solve_rate_before_and_after(key):
        carry = agent.init(key, hparams)
        before = agent.student.episode_returns(agent.student.policy_state(carry.student), jax.random.key(1), test_params)
        carry, _ = jax.lax.scan(lambda c, _: agent.update(c, hparams), carry, None, agent.num_updates)
        after = agent.student.episode_returns(agent.student.policy_state(carry.student), jax.random.key(1), test_params)
        return (before > 0).mean(), (after > 0).mean()

    before, after = solve_rate_before_and_after(jax.random.key(0))
    assert before < 0.45 and after > 0.6 and after > before + 0.3, (before, after)
