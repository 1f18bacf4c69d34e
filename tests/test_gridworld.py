"""The LPG / GROOVE grid world (jaxrl.envs.gridworld): moves, objects, termination, respawn, truncation, levels
as data, the random-level ranges, the LPG levels and rendering.

Expected values are written out by hand (cells, rewards). Every rollout has T = 40 steps and goes through one
compiled function, so the file compiles few programs.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl import envs
from jaxrl.envs import gridworld as G
from conftest import scripted_rollout
from jaxrl.envs.errors import InvalidChoiceError

T = 40
UP, RIGHT, DOWN, LEFT, STAY = 0, 1, 2, 3, 4
ENV = G.GridWorld()


FIELDS = {"pos": "agent_pos", "present": "object_present", "object_pos": "object_pos", "time": "time"}


def _rollout(level: G.GridLevel, actions: jax.Array, keys: jax.Array) -> dict:
    """Steps one environment on `level` through `actions` (T,) with step keys `keys` (T,) from a reset;
    per-step records."""
    return scripted_rollout(ENV, G.GridParams(level=level), actions, keys, FIELDS)


ROLLOUT = jax.jit(_rollout)


def run(level: G.GridLevel, actions: list[int], seed: int = 1, fill: int = STAY) -> dict:
    assert len(actions) <= T
    padded = jnp.asarray(actions + [fill] * (T - len(actions)), jnp.int32)
    return jax.tree.map(np.asarray, ROLLOUT(level, padded, jax.random.split(jax.random.key(seed), T)))


def level(objects=(), kinds=((1.0, 0.0, 0.0),), walls=(), agent=(2, 2), size=5, max_steps=1000) -> G.GridLevel:
    """`kinds`: (reward, p_terminate, p_respawn) per kind."""
    reward, term, respawn = zip(*kinds)
    return G.make_level(size, agent, objects, reward, term, respawn, max_steps, walls=walls)


# ---------------------------------------------------------------------------------------------------------------
# Rules


def test_moves_and_walls_and_edges():
    # 5x5 level, agent at (2, 2), a wall right of it at (2, 3).
    lvl = level(walls=[(2, 3)])
    rec = run(lvl, [RIGHT, UP, UP, UP, LEFT, LEFT, LEFT, DOWN, STAY, 7])
    expected = [(2, 2), (1, 2), (0, 2), (0, 2), (0, 1), (0, 0), (0, 0), (1, 0), (1, 0), (1, 0)]
    np.testing.assert_array_equal(rec["pos"][:10], expected)  # wall, top edge, left edge, stay, bad action
    # The level's own size is a wall too: at (4, 4) of a 5x5 level, right and down stay put.
    rec = run(level(agent=(4, 4)), [RIGHT, DOWN, UP])
    np.testing.assert_array_equal(rec["pos"][:3], [(4, 4), (4, 4), (3, 4)])
    # At the 13x13 array's edge as well.
    rec = run(level(agent=(12, 12), size=13), [RIGHT, DOWN, LEFT])
    np.testing.assert_array_equal(rec["pos"][:3], [(12, 12), (12, 12), (12, 11)])
    assert not rec["terminated"].any() and not rec["truncated"].any()


def test_observation_is_the_agent_cell_and_the_present_bits():
    lvl = level(objects=[(2, 3, 0), (4, 4, 0)])
    rec = run(lvl, [RIGHT])
    obs = rec["obs"][0]
    assert obs.shape == (174,) and obs.sum() == 3.0
    assert obs[2 * 13 + 2] == 1.0 and list(obs[169:]) == [1, 1, 0, 0, 0]
    after = rec["next_obs"][0]
    assert after[2 * 13 + 3] == 1.0 and list(after[169:]) == [0, 1, 0, 0, 0]  # object 0 collected


def test_collecting_pays_the_kind_reward_and_removes_the_object():
    # Object 0 of kind 1 (reward -0.5) right of the agent, object 1 of kind 0 (reward 0.75) two further.
    lvl = level(objects=[(2, 3, 1), (2, 4, 0)], kinds=[(0.75, 0.0, 0.0), (-0.5, 0.0, 0.0)])
    rec = run(lvl, [RIGHT, RIGHT, LEFT, RIGHT])
    np.testing.assert_allclose(rec["reward"][:4], [-0.5, 0.75, 0.0, 0.0])
    np.testing.assert_array_equal(rec["present"][:4], [[0, 1, 0, 0, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]])
    assert rec["reward"][4:].sum() == 0.0  # nothing left to collect, no respawn


def test_termination_probability_one_ends_and_zero_never_does():
    ends = level(objects=[(2, 3, 0)], kinds=[(1.0, 1.0, 0.0)])
    # Two free cells (a 2x2 level with its bottom row walled): the object respawns on the cell the agent just
    # left, so walking back and forth collects it every other step.
    never = level(objects=[(0, 1, 0)], kinds=[(1.0, 0.0, 1.0)], size=2, agent=(0, 0), walls=[(1, 0), (1, 1)])
    for seed in range(3):
        rec = run(ends, [RIGHT], seed=seed)
        assert rec["terminated"][0] and rec["reward"][0] == 1.0 and not rec["truncated"][0]
        np.testing.assert_array_equal(rec["pos"][0], (2, 2))  # auto-reset to the start
        assert rec["final_obs"][0][2 * 13 + 3] == 1.0 and rec["present"][0][0]  # final obs then the restart
        rec = run(never, [RIGHT, LEFT] * (T // 2), seed=seed)
        assert rec["reward"].sum() == T // 2 and not rec["terminated"].any()


def test_respawn_probability_one_brings_it_back_next_step_and_zero_never():
    back = level(objects=[(0, 1, 0)], kinds=[(1.0, 0.0, 1.0)], size=3, agent=(0, 0))
    rec = run(back, [RIGHT, STAY, STAY])
    assert rec["present"][0][0] == 0 and rec["present"][1][0] == 1  # gone after the collection, back next step
    cell = tuple(rec["object_pos"][1][0])
    assert 0 <= cell[0] < 3 and 0 <= cell[1] < 3 and cell != (0, 1)  # a free cell inside the level, not the agent's
    # The respawn cell is random: over seeds it lands on several of the 7 free cells (never the agent's).
    cells = {tuple(run(back, [RIGHT, STAY], seed=seed)["object_pos"][1][0]) for seed in range(12)}
    assert len(cells) >= 4 and (0, 1) not in cells and all(0 <= r < 3 and 0 <= c < 3 for r, c in cells)
    # Respawn cells are always free: a 2x2 level where, after the agent collects object 0 at (0, 1), a wall at
    # (1, 0) and the present object 1 at (1, 1) leave (0, 0) the only free cell.
    walled = level(objects=[(0, 1, 0), (1, 1, 1)], kinds=[(1.0, 0.0, 1.0), (0.0, 0.0, 0.0)], size=2, agent=(0, 0),
                   walls=[(1, 0)])
    for seed in range(3):
        rec = run(walled, [RIGHT, STAY], seed=seed)
        np.testing.assert_array_equal(rec["object_pos"][1], [(0, 0), (1, 1), (0, 0), (0, 0), (0, 0)])
        np.testing.assert_array_equal(rec["present"][1][:2], [1, 1])
    # Two objects want to respawn and one cell is free: the first takes it, the second waits (never a wall).
    # A 3x3 level with only its top row free; slot 2 (kind 0, like slot 0) is switched on by hand.
    full = level(objects=[(0, 1, 0), (0, 2, 1)], kinds=[(1.0, 0.0, 1.0), (0.0, 0.0, 0.0)], size=3, agent=(0, 0),
                 walls=[(r, c) for r in (1, 2) for c in range(3)])
    full = full.replace(object_active=jnp.asarray([True, True, True, False, False]))
    state = G.GridState(agent_pos=jnp.asarray((0, 0)), object_pos=jnp.asarray([(0, 1), (0, 2), (0, 1), (0, 0), (0, 0)]),
                        object_present=jnp.asarray([False, True, False, False, False]), time=jnp.asarray(0),
                        terminated=jnp.asarray(False))
    _, after, *_ = jax.jit(ENV.step_env)(jax.random.key(0), state, STAY, G.GridParams(level=full))
    np.testing.assert_array_equal(after.object_present, [True, True, False, False, False])
    np.testing.assert_array_equal(after.object_pos[:2], [(0, 1), (0, 2)])
    gone = level(objects=[(2, 3, 0)], kinds=[(1.0, 0.0, 0.0)])
    rec = run(gone, [RIGHT])
    assert rec["present"][0].sum() == 0 and rec["present"].sum() == 0  # never returns in T steps


def test_truncation_at_the_level_max_steps():
    lvl = level(objects=[(0, 0, 0)], max_steps=7)
    rec = run(lvl, [STAY] * T)
    truncated = np.flatnonzero(rec["truncated"])
    np.testing.assert_array_equal(truncated, [6, 13, 20, 27, 34])  # every 7 steps, after the 7th
    assert not rec["terminated"].any()
    np.testing.assert_array_equal(rec["time"][5:8], [6, 0, 1])  # reset after the limit
    # A termination on the limit's step is a termination, not a truncation.
    lvl = level(objects=[(2, 3, 0)], kinds=[(1.0, 1.0, 0.0)], max_steps=1)
    rec = run(lvl, [RIGHT, STAY])
    assert rec["terminated"][0] and not rec["truncated"][0] and rec["truncated"][1]


# ---------------------------------------------------------------------------------------------------------------
# Levels as data

N = 4
VEC = envs.VecEnv(ENV, N, per_env_params=True)


@jax.jit
def vec_rollout(levels: G.GridLevel, actions: jax.Array, key: jax.Array) -> dict:
    """`actions` (T, N): N environments on N levels through VecEnv; the step keys VecEnv splits per env."""
    keys = jax.random.split(key, actions.shape[0])
    records = scripted_rollout(VEC, G.GridParams(level=levels), actions, keys, FIELDS)
    return jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), records)


def test_vecenv_over_different_levels_equals_single_runs():
    levels = G.lpg_levels(("dense", "sparse", "long", "longer"))
    # Short limits and likely termination/respawn on some, so resets and respawns happen inside the rollout.
    levels = levels.replace(max_steps=jnp.asarray([9, 50, 13, 2000], jnp.int32),
                            kind_respawn=levels.kind_respawn.at[0].set(jnp.asarray([1.0, 0.5, 0.9, 0.0, 0.0])))
    actions = jax.random.randint(jax.random.key(5), (T, N), 0, 5)
    key = jax.random.key(9)
    batch = jax.tree.map(np.asarray, vec_rollout(levels, actions, key))
    # The per-env key VecEnv uses at step t is split(keys[t], N)[i].
    step_keys = jax.random.split(key, T)
    for i in range(N):
        one = jax.tree.map(lambda x: x[i], levels)
        env_keys = jax.vmap(lambda k: jax.random.split(k, N)[i])(step_keys)
        single = jax.tree.map(np.asarray, ROLLOUT(one, actions[:, i], env_keys))
        for name in single:
            np.testing.assert_array_equal(batch[name][i], single[name], err_msg=f"level {i}: {name}")
    assert batch["truncated"][0].sum() >= 3 and batch["truncated"][2].sum() >= 2
    assert len({batch["obs"][i, 0].tobytes() for i in range(N)}) == N


def test_random_levels_stay_in_the_groove_ranges():
    levels = jax.tree.map(np.asarray, jax.jit(jax.vmap(G.random_level))(jax.random.split(jax.random.key(0), 512)))
    assert levels.size.min() == 4 and levels.size.max() == 10
    assert levels.max_steps.min() >= 20 and levels.max_steps.max() <= 750
    assert levels.max_steps.min() < 40 and levels.max_steps.max() > 500  # log-uniform reaches both ends
    np.testing.assert_array_less(0.0, levels.kind_reward[:, 0])  # first kind positive
    assert levels.kind_reward.min() >= -1.0 and levels.kind_reward.max() <= 1.0 and levels.kind_reward.min() < -0.9
    assert levels.kind_terminate.min() >= 0.01 and levels.kind_terminate.max() <= 1.0
    assert np.median(levels.kind_terminate) < 0.2  # log-uniform, not uniform (median 0.1)
    assert levels.kind_respawn.min() >= 0.001 and levels.kind_respawn.max() <= 0.1
    counts = levels.object_active.sum(1)
    assert counts.min() == 1 and counts.max() == 5 and levels.object_active[:, 0].all()
    assert (levels.object_kind[:, 0] == 0).all() and levels.object_kind.max() == 4
    rows, cols = np.arange(13)[None, :, None], np.arange(13)[None, None, :]
    inside = (rows < levels.size[:, None, None]) & (cols < levels.size[:, None, None])
    assert (levels.wall_map | inside).all()  # outside the level: walls
    assert (levels.wall_map & inside).sum((1, 2)).max() == 15  # up to 15 walls inside
    n = levels.size.shape[0]
    cells = np.concatenate([levels.agent_pos[:, None], levels.object_pos], axis=1)  # (n, 6, 2)
    flat = cells[..., 0] * 13 + cells[..., 1]
    used = np.concatenate([np.ones((n, 1), bool), levels.object_active], axis=1)
    assert not (levels.wall_map.reshape(n, -1)[np.arange(n)[:, None], flat] & used).any()  # never on a wall
    assert all(len(set(f[u])) == u.sum() for f, u in zip(flat, used))  # agent and objects on distinct cells


# ---------------------------------------------------------------------------------------------------------------
# LPG levels, registry, rendering


@pytest.mark.parametrize("name,size,max_steps", [("dense", 11, 500), ("sparse", 13, 50), ("long", 11, 1000),
                                                 ("longer", 9, 2000), ("long_dense", 11, 2000)])
def test_lpg_levels_load_and_render(name, size, max_steps):
    lvl = G.lpg_level(name)
    assert int(lvl.size) == size and int(lvl.max_steps) == max_steps
    assert lvl.kind_reward.max() > 0 and lvl.object_active.any()
    image = G.render_level(lvl)
    assert image.shape == (15 * 8, 15 * 8, 3) and image.dtype == np.uint8
    agent = (int(lvl.agent_pos[0]) + 1) * 8 + 4, (int(lvl.agent_pos[1]) + 1) * 8 + 4
    np.testing.assert_array_equal(image[agent], (230, 50, 40))
    first = np.asarray(lvl.object_pos[0]) + 1
    np.testing.assert_array_equal(image[first[0] * 8 + 4, first[1] * 8 + 4], G.KIND_COLOURS[int(lvl.object_kind[0])])
    # With a state after collecting nothing the picture matches the level's.
    _, state = ENV.reset(jax.random.key(0), G.GridParams(level=lvl))
    np.testing.assert_array_equal(G.render_level(lvl, state), image)


def test_render_follows_the_state():
    lvl = level(objects=[(2, 3, 0)])
    rec = run(lvl, [RIGHT])
    state = G.GridState(agent_pos=rec["pos"][0], object_pos=rec["object_pos"][0], object_present=rec["present"][0],
                        time=rec["time"][0], terminated=rec["terminated"][0])
    image = G.render_level(lvl, state)
    np.testing.assert_array_equal(image[3 * 8 + 4, 4 * 8 + 4], (230, 50, 40))  # agent on the object's cell
    np.testing.assert_array_equal(image[3 * 8 + 4, 3 * 8 + 4], (24, 24, 24))  # old cell free
    np.testing.assert_array_equal(image[7 * 8 + 4, 7 * 8 + 4], (70, 70, 70))  # beyond the 5x5 level


def test_unknown_lpg_level_and_registry():
    with pytest.raises(InvalidChoiceError, match="dense"):
        G.lpg_level("denes")
    env, params = envs.make("GridWorld-v0", level="sparse")
    assert int(params.level.size) == 13 and envs.family_of("GridWorld-v0") == "ued"
    assert "GridWorld-v0" in envs.registered_ids("ued")
    assert envs.GridWorld is G.GridWorld and envs.random_grid_level is G.random_level
    assert env.observation_space(params).shape == (174,) and envs.observation_size(env) == 174
    # The whole wrapper stack takes batched levels (the five LPG levels, one per environment).
    stack = envs.build_stack(env, envs.StackSpec(num_envs=5, per_env_params=True))
    obs, _ = jax.jit(stack.reset)(jax.random.key(0), G.GridParams(level=G.lpg_levels()))
    assert obs.shape == (5, 174)
    np.testing.assert_array_equal(np.asarray(obs)[:, 169:].sum(1), [5, 1, 4, 4, 5])  # objects per level


def test_make_level_rejects_bad_levels():
    with pytest.raises(ValueError, match="size"):
        level(size=14)
    with pytest.raises(ValueError, match="outside"):
        level(objects=[(5, 0, 0)])  # row 5 of a 5x5 level
    with pytest.raises(ValueError, match="wall"):
        level(objects=[(1, 1, 0)], walls=[(1, 1)])
    with pytest.raises(ValueError, match="distinct"):
        level(objects=[(2, 2, 0)])  # on the agent
    with pytest.raises(ValueError, match="at most 5"):
        level(objects=[(0, c, 0) for c in range(5)] + [(1, 0, 0)])
    with pytest.raises(ValueError, match="kind"):
        level(objects=[(0, 0, 5)])
    with pytest.raises(ValueError, match="max_steps"):
        level(max_steps=0)
