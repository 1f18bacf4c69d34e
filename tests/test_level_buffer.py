"""The PLR level buffer (jaxrl.meta.levels.buffer), the level scores and ACCEL's maze edits."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl.envs import maze
from jaxrl.envs.errors import InvalidChoiceError
from jaxrl.meta.levels import buffer as plr
from jaxrl.meta.levels import edits, scores

# A tiny level pytree: the buffer must be generic, and small leaves keep the tests fast.
def toy_level(i: int) -> dict:
    return {"a": jnp.array([i, i + 1], jnp.int32), "b": jnp.array(float(i), jnp.float32)}


def numpy_mazes(seed: int, n: int, num_walls: int = 25) -> maze.MazeLevel:
    """n random valid maze levels (batched) built with numpy: no compile, unlike a vmapped `random_level`."""
    rng = np.random.default_rng(seed)
    cells = np.stack([rng.permutation(maze.NUM_CELLS)[: num_walls + 2] for _ in range(n)])
    walls = np.zeros((n, maze.NUM_CELLS), bool)
    np.put_along_axis(walls, cells[:, :num_walls], True, axis=1)
    pos = lambda c: np.stack(np.divmod(c, maze.GRID_SIZE), axis=-1)
    return maze.make_level(
        walls.reshape(n, maze.GRID_SIZE, maze.GRID_SIZE), pos(cells[:, -1]), rng.integers(0, 4, n), pos(cells[:, -2])
    )


def toy_batch(ids) -> dict:
    return jax.tree.map(lambda *xs: jnp.stack(xs), *[toy_level(i) for i in ids])


insert = jax.jit(plr.insert)
update_scores = jax.jit(plr.update_scores)
replay_weights = jax.jit(plr.replay_weights, static_argnums=1)
sample_replay = jax.jit(plr.sample_replay, static_argnums=(2, 3))


def make(capacity: int, ids, level_scores) -> plr.LevelBuffer:
    """The state `insert` of distinct levels into an empty buffer leaves (checked once below), built directly:
    compiling `insert` for every (capacity, batch) shape would dominate this file's run time."""
    ids = list(ids)
    n = len(ids)
    # numpy first, one transfer at the end: eager jnp updates would compile per shape.
    a = np.zeros((capacity, 2), np.int32)
    a[:n] = [[i, i + 1] for i in ids]
    b = np.zeros(capacity, np.float32)
    b[:n] = ids
    level_scores_np = np.zeros(capacity, np.float32)
    level_scores_np[:n] = level_scores
    return plr.LevelBuffer(
        levels={"a": jnp.asarray(a), "b": jnp.asarray(b)},
        scores=jnp.asarray(level_scores_np),
        last_sampled=jnp.asarray((np.arange(capacity) < n).astype(np.int32)),
        filled=jnp.asarray(np.arange(capacity) < n),
        step=jnp.asarray(1, jnp.int32),
    )


def test_make_matches_insert():
    built = make(5, [1, 2, 3], [0.5, -1.0, 2.0])
    inserted = insert(plr.init_buffer(toy_level(0), 5), toy_batch([1, 2, 3]), jnp.array([0.5, -1.0, 2.0]))
    for a, b in zip(jax.tree.leaves(built), jax.tree.leaves(inserted)):
        np.testing.assert_array_equal(a, b)


def stored_ids(buf: plr.LevelBuffer) -> set[int]:
    return {int(x) for x, f in zip(np.asarray(buf.levels["b"]), np.asarray(buf.filled)) if f}


# --- buffer invariants ------------------------------------------------------------------------------------


def test_size_never_exceeds_capacity():
    buf = plr.init_buffer(toy_level(0), 4)
    for start in range(0, 30, 5):
        buf = insert(buf, toy_batch(range(start, start + 5)), jnp.arange(start, start + 5, dtype=jnp.float32))
        assert int(plr.size(buf)) <= 4
    assert int(plr.size(buf)) == 4
    assert stored_ids(buf) == {26, 27, 28, 29}  # the 4 highest scores survive


def test_insert_only_above_lowest_when_full():
    # Capacity 5 and batches of 1 and 2 everywhere in these tests: one compile of `insert` per shape.
    buf = make(5, [1, 2, 3, 4, 5], [5.0, 1.0, 3.0, 4.0, 6.0])
    # Equal to the lowest (1.0) or below: rejected.
    same = insert(buf, toy_batch([7, 8]), jnp.array([1.0, 0.5]))
    assert stored_ids(same) == {1, 2, 3, 4, 5}
    np.testing.assert_allclose(np.sort(np.asarray(same.scores)), [1.0, 3.0, 4.0, 5.0, 6.0])
    # Above the lowest: replaces exactly the lowest (level 2, score 1.0).
    higher = insert(buf, toy_batch([9]), jnp.array([2.0]))
    assert stored_ids(higher) == {1, 3, 4, 5, 9}
    np.testing.assert_allclose(np.sort(np.asarray(higher.scores)), [2.0, 3.0, 4.0, 5.0, 6.0])


def test_duplicates_update_instead_of_adding():
    buf = make(5, [1, 2], [1.0, 2.0])
    buf = insert(buf, toy_batch([1, 1]), jnp.array([7.0, 9.0]))  # also a duplicate within one batch
    assert int(plr.size(buf)) == 2
    idx = int(np.argmax(np.asarray(buf.levels["b"]) == 1.0))
    assert float(buf.scores[idx]) == 9.0
    # A level differing in one leaf only is not a duplicate.
    other = jax.tree.map(lambda x: x, toy_level(1))
    other["b"] = jnp.array(1.5, jnp.float32)
    buf = insert(buf, jax.tree.map(lambda x: x[None], other), jnp.array([0.1]))
    assert int(plr.size(buf)) == 3
    # A duplicate of a full buffer's entry updates even with a score below the lowest.
    full = make(5, [1, 2, 3, 4, 5], [1.0, 2.0, 3.0, 4.0, 5.0])
    full = insert(full, toy_batch([2]), jnp.array([-5.0]))
    assert stored_ids(full) == {1, 2, 3, 4, 5} and sorted(np.asarray(full.scores).tolist()) == [-5.0, 1.0, 3.0, 4.0, 5.0]


def test_update_scores_repeated_index_last_wins():
    buf = make(4, [1, 2, 3, 4], [1.0, 2.0, 3.0, 4.0])
    buf = update_scores(buf, jnp.array([2, 0, 2, 2]), jnp.array([7.0, 8.0, 9.0, 5.0]))
    np.testing.assert_allclose(buf.scores, [8.0, 2.0, 5.0, 4.0])
    np.testing.assert_array_equal(buf.last_sampled, [2, 1, 2, 1])


def test_staleness_updates_on_sampling():
    config = plr.PLRConfig(capacity=4, staleness_coef=1.0, min_fill=0.0)
    buf = make(4, [1, 2, 3, 4], [1.0, 2.0, 3.0, 4.0])
    assert int(buf.step) == 1 and np.all(np.asarray(buf.last_sampled) == 1)
    # All equally fresh: staleness weights are uniform (no 0 / 0).
    np.testing.assert_allclose(replay_weights(buf, config), [0.25] * 4)
    idx = sample_replay(buf, jax.random.key(0), 2, config)
    buf = update_scores(buf, idx, jnp.array([0.5, 0.5]))
    replayed = set(np.asarray(idx).tolist())
    assert int(buf.step) == 2
    for i in range(4):
        assert int(buf.last_sampled[i]) == (2 if i in replayed else 1)
    buf = update_scores(buf, jnp.array([0]), jnp.array([0.5]))  # step 3: 0 fresh, others 1 or 2 steps stale
    stale = np.array([3 - int(buf.last_sampled[i]) for i in range(4)], np.float32)
    np.testing.assert_allclose(replay_weights(buf, config), stale / stale.sum(), rtol=1e-6)
    assert float(replay_weights(buf, config)[0]) == 0.0


@pytest.mark.parametrize("prioritization", ["rank", "topk"])
def test_weights_sum_to_one_and_zero_on_empty(prioritization):
    config = plr.PLRConfig(capacity=6, prioritization=prioritization, top_k=2, staleness_coef=0.4)
    buf = make(6, [1, 2, 3], [0.3, -1.0, 2.0])
    buf = update_scores(buf, jnp.array([1]), jnp.array([0.0]))
    w = np.asarray(replay_weights(buf, config))
    filled = np.asarray(buf.filled)
    assert filled.sum() == 3
    np.testing.assert_allclose(w[filled].sum(), 1.0, rtol=1e-6)
    assert np.all(w[~filled] == 0.0) and np.all(w >= 0)
    # An empty buffer: all zeros, no NaN.
    empty = np.asarray(replay_weights(plr.init_buffer(toy_level(0), 6), config))
    assert np.all(empty == 0.0)


def test_rank_temperature_against_hand_computation():
    # scores [3, 1, 2] -> ranks [1, 3, 2]; T = 0.5 -> h = (1/rank)^(1/T) = [1, 1/9, 1/4].
    config = plr.PLRConfig(capacity=3, temperature=0.5, staleness_coef=0.0)
    buf = make(3, [1, 2, 3], [3.0, 1.0, 2.0])
    h = np.array([1.0, 1.0 / 9.0, 1.0 / 4.0])
    expected = h / h.sum()
    w = np.asarray(replay_weights(buf, config))
    np.testing.assert_allclose(w, expected, rtol=1e-6)
    # The anchor bug: h = (1/rank) / T normalises to plain 1/rank weights [1, 1/3, 1/2] / sum. Must differ.
    divided = np.array([1.0, 1.0 / 3.0, 1.0 / 2.0]) / 0.5
    assert not np.allclose(w, divided / divided.sum(), rtol=1e-3)
    # Mixed with staleness: (1 - c) P_S + c P_C, here P_C uniform (all inserted at once).
    mixed = np.asarray(replay_weights(buf, plr.PLRConfig(capacity=3, temperature=0.5, staleness_coef=0.3)))
    np.testing.assert_allclose(mixed, 0.7 * expected + 0.3 / 3, rtol=1e-6)


def test_topk_weights():
    config = plr.PLRConfig(capacity=4, prioritization="topk", top_k=2, staleness_coef=0.0)
    buf = make(4, [1, 2, 3, 4], [0.1, 0.9, 0.5, 0.2])
    np.testing.assert_allclose(replay_weights(buf, config), [0.0, 0.5, 0.5, 0.0])


@pytest.mark.parametrize("temperature", [0.3, 1.0, 0.01])
def test_no_nan_with_one_entry_or_equal_scores(temperature):
    config = plr.PLRConfig(capacity=5, temperature=temperature)
    one = make(5, [1], [0.0])
    w = np.asarray(replay_weights(one, config))
    assert np.all(np.isfinite(w)) and w[0] == pytest.approx(1.0) and np.all(w[1:] == 0)
    equal = make(5, [1, 2, 3, 4, 5], [0.5] * 5)
    w = np.asarray(replay_weights(equal, config))
    assert np.all(np.isfinite(w)) and w.sum() == pytest.approx(1.0, rel=1e-6)
    zeros = make(5, [1, 2, 3], [0.0] * 3)
    w = np.asarray(replay_weights(zeros, plr.PLRConfig(capacity=5, prioritization="topk", top_k=5)))
    assert np.all(np.isfinite(w)) and w.sum() == pytest.approx(1.0, rel=1e-6)


def test_sample_replay_only_filled_and_follows_weights():
    config = plr.PLRConfig(capacity=8, temperature=1.0, staleness_coef=0.0)
    buf = make(8, [1, 2, 3], [3.0, 1.0, 2.0])
    idx = np.asarray(sample_replay(buf, jax.random.key(1), 4000, config))
    assert set(idx.tolist()) <= {0, 1, 2}
    freq = np.bincount(idx, minlength=3)[:3] / len(idx)
    h = np.array([1.0, 1 / 3, 1 / 2])
    np.testing.assert_allclose(freq, h / h.sum(), atol=0.03)


def test_should_replay_respects_min_fill():
    config = plr.PLRConfig(capacity=10, replay_prob=1.0, min_fill=0.5)
    should = jax.jit(plr.should_replay, static_argnums=2)
    key = jax.random.key(0)
    assert not bool(should(make(10, [1, 2, 3, 4], [0.0] * 4), key, config))
    assert bool(should(make(10, [1, 2, 3, 4, 5], [0.0] * 5), key, config))
    never = plr.PLRConfig(capacity=10, replay_prob=0.0, min_fill=0.0)
    assert not bool(should(make(10, [1, 2, 3, 4, 5], [0.0] * 5), key, never))
    # min_fill 0 still needs one level: an empty buffer is never sampled.
    assert not bool(should(plr.init_buffer(toy_level(0), 10), key, plr.PLRConfig(capacity=10, replay_prob=1.0, min_fill=0.0)))
    # ceil(min_fill * capacity), without binary rounding asking for one level more.
    assert plr.PLRConfig(capacity=100, min_fill=0.07).min_levels == 7
    assert plr.PLRConfig(capacity=10, min_fill=0.25).min_levels == 3
    assert plr.PLRConfig(capacity=4000, min_fill=0.5).min_levels == 2000
    # replay_prob is a probability.
    keys = jax.random.split(jax.random.key(3), 2000)
    half = plr.PLRConfig(capacity=10, replay_prob=0.3, min_fill=0.5)
    full = make(10, range(10), [0.0] * 10)
    rate = float(jax.jit(lambda b, ks: jnp.mean(jax.vmap(lambda k: plr.should_replay(b, k, half))(ks)))(full, keys))
    assert rate == pytest.approx(0.3, abs=0.04)


def test_buffer_in_a_jitted_carry_with_maze_levels():
    """The buffer holds MazeLevels and goes through scan as part of a carry."""
    config = plr.PLRConfig(capacity=16, min_fill=0.25)
    buf = plr.init_buffer(maze.empty_level(), config.capacity)

    pool = numpy_mazes(1, 40)

    @jax.jit
    def run(buf, key):
        def body(buf, key):
            k_lvl, k_score, k_rep, k_sample = jax.random.split(key, 4)
            # New levels drawn from a fixed pool, so duplicates happen too.
            levels = jax.tree.map(lambda x: x[jax.random.randint(k_lvl, (4,), 0, 40)], pool)
            new = plr.insert(buf, levels, jax.random.uniform(k_score, (4,)))
            idx = plr.sample_replay(new, k_sample, 4, config)
            replayed = plr.update_scores(new, idx, jax.random.uniform(k_score, (4,)))
            return jax.lax.cond(plr.should_replay(new, k_rep, config), lambda: replayed, lambda: new), None

        out = jax.lax.scan(body, buf, jax.random.split(key, 6))[0]
        # Checked inside the compiled program: eager checks would compile op by op.
        stored_valid = jnp.all(jax.vmap(maze.level_is_valid)(out.levels) | ~out.filled)
        return plr.size(out), stored_valid, out.step

    size, stored_valid, step = run(buf, jax.random.key(0))
    assert 4 <= int(size) <= 16 and bool(stored_valid) and int(step) >= 6


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"prioritization": "softmax"}, "'softmax'"),
        ({"capacity": 0}, "capacity 0"),
        ({"temperature": 0.0}, "temperature 0.0"),
        ({"temperature": -1.0}, "temperature -1.0"),
        ({"capacity": 10.5}, "capacity 10.5"),
        ({"replay_prob": 1.5}, "replay_prob 1.5"),
    ],
)
def test_bad_config_is_one_clear_line(kwargs, fragment):
    with pytest.raises(InvalidChoiceError) as info:
        plr.PLRConfig(**kwargs)
    message = str(info.value)
    assert fragment in message and "\n" not in message
    if "prioritization" in kwargs:
        assert "rank" in message and "topk" in message


def test_init_buffer_rejects_bad_capacity():
    with pytest.raises(InvalidChoiceError, match="capacity 0"):
        plr.init_buffer(toy_level(0), 0)
    assert plr.init_buffer(toy_level(0), np.int64(3)).capacity == 3  # numpy integers are fine


# --- scores -----------------------------------------------------------------------------------------------


def test_positive_value_loss_hand_computed():
    adv = jnp.array([[1.0, -2.0], [-1.0, 0.5], [3.0, 0.5]])  # (T=3, N=2)
    valid = jnp.array([[True, True], [True, True], [True, False]])
    # level 0: (1 + 0 + 3) / 3; level 1: (0 + 0.5) / 2
    np.testing.assert_allclose(scores.positive_value_loss(adv, valid), [4 / 3, 0.25], rtol=1e-6)
    np.testing.assert_allclose(scores.positive_value_loss(adv), [4 / 3, 1 / 3], rtol=1e-6)
    assert float(scores.positive_value_loss(adv[:, 0], jnp.zeros(3, bool))) == 0.0  # no valid step: 0, not NaN


def test_max_mc_hand_computed():
    values = jnp.array([[0.2, 0.0], [0.5, 0.1], [0.8, 0.4]])
    max_ret = jnp.array([1.0, 0.5])
    valid = jnp.array([[True, True], [True, False], [False, False]])
    # level 0: ((1 - .2) + (1 - .5)) / 2 = 0.65; level 1: 0.5 - 0 = 0.5
    np.testing.assert_allclose(scores.max_mc(values, max_ret, valid), [0.65, 0.5], rtol=1e-6)
    new_max = scores.update_max_return(
        jnp.array([0.3, -jnp.inf]), jnp.array([[0.9, 0.2], [0.1, 0.7]]), jnp.array([[False, True], [True, False]])
    )
    np.testing.assert_allclose(new_max, [0.3, 0.2])


def test_learnability_hand_computed():
    p = scores.success_rate(jnp.array([0, 1, 3, 4, 0]), jnp.array([4, 4, 4, 4, 0]))
    np.testing.assert_allclose(p, [0.0, 0.25, 0.75, 1.0, 0.0])
    np.testing.assert_allclose(scores.learnability(p), [0.0, 0.1875, 0.1875, 0.0, 0.0])
    assert float(scores.learnability(0.5)) == 0.25


def test_score_functions_are_pluggable_by_name():
    assert scores.get_score_function("maxmc") is scores.max_mc
    with pytest.raises(InvalidChoiceError, match="'regret'") as info:
        scores.get_score_function("regret")
    assert "\n" not in str(info.value)


# --- ACCEL edits ------------------------------------------------------------------------------------------


def test_accel_edits_keep_levels_valid_and_report_reachability():
    n = 64
    rows = jnp.arange(n)
    # One compiled edit (called twice) and one compiled check keep this test fast on 2 cores.
    edit = jax.jit(jax.vmap(edits.edit_maze, in_axes=(0, 0, None)), static_argnums=2)

    @jax.jit
    def check(lv):
        in_bounds = jnp.all((lv.agent_pos >= 0) & (lv.agent_pos < maze.GRID_SIZE)) & jnp.all(
            (lv.goal_pos >= 0) & (lv.goal_pos < maze.GRID_SIZE)
        )
        on_wall = jnp.any(lv.wall_map[rows, lv.agent_pos[:, 0], lv.agent_pos[:, 1]]) | jnp.any(
            lv.wall_map[rows, lv.goal_pos[:, 0], lv.goal_pos[:, 1]]
        )
        valid = jnp.all(jax.vmap(maze.level_is_valid)(lv)) & in_bounds & ~on_wall
        return valid, jax.vmap(maze.shortest_path_length)(lv)

    levels = numpy_mazes(0, n)
    assert bool(check(levels)[0])
    edited = edit(jax.random.split(jax.random.key(1), n), levels, 20)
    again = edit(jax.random.split(jax.random.key(2), n), edited, 20)
    assert bool(check(edited)[0])
    valid, paths = jax.device_get(check(again))
    assert valid
    # Edits change levels, and by at most num_edits wall cells.
    walls_changed = np.asarray(jnp.sum(edited.wall_map != levels.wall_map, axis=(1, 2)))
    assert walls_changed.max() <= 20 and walls_changed.sum() > 0
    assert bool(jnp.any(edited.goal_pos != levels.goal_pos)) and bool(jnp.any(edited.agent_pos != levels.agent_pos))
    # Reachability is reported, not assumed: per level a path length or -1.
    assert np.all((paths == -1) | (paths >= 1))
    print(f"ACCEL: {int((paths >= 1).sum())}/{n} levels with a reachable goal after 40 edits")


def test_accel_zero_edits_and_traced_count():
    level = jax.tree.map(lambda x: x[0], numpy_mazes(5, 1))
    edit = jax.jit(edits.edit_maze)  # num_edits traced: one compile for both calls
    same = edit(jax.random.key(0), level, jnp.int32(0))
    assert all(bool(jnp.all(a == b)) for a, b in zip(jax.tree.leaves(same), jax.tree.leaves(level)))
    one = edit(jax.random.key(0), maze.empty_level(), jnp.int32(1))
    diff = int(jnp.sum(one.wall_map)) + int(jnp.any(one.goal_pos != 12)) + int(jnp.any(one.agent_pos != 0))
    assert diff == 1  # exactly one thing changed
