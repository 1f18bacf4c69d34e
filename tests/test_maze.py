"""The UED maze (jaxrl.envs.maze): rules, egocentric view, levels as data, generator, held-out mazes, rendering.

Expected values are written out by hand (cells, rewards, view positions) rather than recomputed with the
module's own tables. Every rollout has 250 steps and every batch 8 levels, so the file compiles few programs.
"""

from __future__ import annotations

from collections import deque

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl import envs
from jaxrl.envs import maze as M
from conftest import scripted_rollout
from jaxrl.envs.errors import InvalidChoiceError

T = 250
N = 8
LEFT, RIGHT, FORWARD = 0, 1, 2
EAST, SOUTH, WEST, NORTH = 0, 1, 2, 3
MOVES = {EAST: (0, 1), SOUTH: (1, 0), WEST: (0, -1), NORTH: (-1, 0)}

ENV = M.Maze()
STEP = jax.jit(ENV.step)
RESET = jax.jit(ENV.reset)


def level(walls=(), agent=(6, 6), direction=EAST, goal=(12, 12)) -> M.MazeLevel:
    wall_map = np.zeros((13, 13), bool)
    for cell in walls:
        wall_map[cell] = True
    return M.make_level(wall_map, agent, direction, goal)


def params_of(lvl: M.MazeLevel, max_steps: int = T) -> M.MazeParams:
    return M.MazeParams(level=lvl, max_steps_in_episode=jnp.asarray(max_steps, jnp.int32))


FIELDS = {"pos": "agent_pos", "dir": "agent_dir", "time": "time"}


def _rollout(params: M.MazeParams, actions: jax.Array) -> dict:
    """Steps one environment through `actions` (length T) from a reset; per-step records."""
    return scripted_rollout(ENV, params, actions, jax.random.split(jax.random.key(1), actions.shape[0]), FIELDS)


ROLLOUT = jax.jit(_rollout)
# One compiled generator and one compiled checker serve every test that needs random levels.
RANDOM_LEVELS = jax.jit(jax.vmap(M.random_level))  # (keys (n,), wall counts (n,)) -> n levels
CHECK_LEVELS = jax.jit(jax.vmap(lambda lvl: (M.shortest_path_length(lvl), M.level_is_valid(lvl))))
WALL_COUNTS = np.tile([25, 60, 25, 0, 25, 1, 25, 167], 32)  # 256 levels; the count may be traced


@pytest.fixture(scope="module")
def random_levels() -> M.MazeLevel:
    return RANDOM_LEVELS(jax.random.split(jax.random.key(3), WALL_COUNTS.size), jnp.asarray(WALL_COUNTS))


def pick(levels: M.MazeLevel, index) -> M.MazeLevel:
    return jax.tree.map(lambda x: x[index], levels)
VEC = envs.VecEnv(ENV, N, per_env_params=True)


@jax.jit
def vec_rollout(params: M.MazeParams, actions: jax.Array) -> dict:
    """`actions` (T, N): N environments, environment i on params[i], through VecEnv."""
    # The maze's steps are deterministic (the key only feeds the auto-reset, which restarts the same level).
    records = scripted_rollout(VEC, params, actions, jax.random.split(jax.random.key(2), actions.shape[0]), FIELDS)
    return jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), records)


def padded(actions: list[int], length: int = T, fill: int = LEFT) -> jax.Array:
    assert len(actions) <= length
    return jnp.asarray(actions + [fill] * (length - len(actions)), jnp.int32)


def bfs_path(lvl: M.MazeLevel) -> list[tuple[int, int]] | None:
    """Cells from the agent to the goal (both included) by breadth-first search, or None."""
    walls = np.asarray(lvl.wall_map)
    start, goal = tuple(int(v) for v in lvl.agent_pos), tuple(int(v) for v in lvl.goal_pos)
    parent = {start: None}
    queue = deque([start])
    while queue:
        cell = queue.popleft()
        if cell == goal:
            path = []
            while cell is not None:
                path.append(cell)
                cell = parent[cell]
            return path[::-1]
        for dr, dc in MOVES.values():
            nxt = (cell[0] + dr, cell[1] + dc)
            if 0 <= nxt[0] < 13 and 0 <= nxt[1] < 13 and not walls[nxt] and nxt not in parent:
                parent[nxt] = cell
                queue.append(nxt)
    return None


def actions_along(path: list[tuple[int, int]], direction: int) -> list[int]:
    """Turn and move actions that walk `path` starting with the agent facing `direction`."""
    actions = []
    for a, b in zip(path, path[1:]):
        need = next(d for d, v in MOVES.items() if (a[0] + v[0], a[1] + v[1]) == b)
        turns = (need - direction) % 4
        actions += {0: [], 1: [RIGHT], 2: [RIGHT, RIGHT], 3: [LEFT]}[turns] + [FORWARD]
        direction = need
    return actions


def view_of(obs) -> np.ndarray:
    """(79,) observation -> (5, 5) codes 0 wall, 1 goal, 2 empty; checks that the channels are one-hot."""
    image, _ = M.split_observation(np.asarray(obs))
    image = np.asarray(image)
    np.testing.assert_array_equal(image.sum(-1), 1.0)
    return image.argmax(-1)


# ---------------------------------------------------------------------------------------------------------------
# Rules


def test_reset_reproduces_the_level_exactly(random_levels):
    lvl = pick(random_levels, 1)  # 60 walls
    params = params_of(lvl)
    obs_a, state_a = RESET(jax.random.key(0), params)
    obs_b, state_b = RESET(jax.random.key(123), params)  # the key does not matter: the level is the params'
    np.testing.assert_array_equal(obs_a, obs_b)
    np.testing.assert_array_equal(state_a.agent_pos, lvl.agent_pos)
    assert int(state_a.agent_dir) == int(lvl.agent_dir) and int(state_a.time) == 0
    obs_c, state_c = jax.jit(ENV.reset_to)(jax.random.key(5), lvl)
    np.testing.assert_array_equal(obs_c, obs_a)
    np.testing.assert_array_equal(state_c.agent_pos, state_a.agent_pos)
    # Another level starts elsewhere or sees something else, and a held-out maze resets to its file's start.
    other_obs, other_state = RESET(jax.random.key(0), params_of(pick(random_levels, 3)))
    assert not (np.array_equal(other_obs, obs_a) and np.array_equal(other_state.agent_pos, state_a.agent_pos))
    _, lab = RESET(jax.random.key(0), M.Maze("Labyrinth").default_params)
    assert tuple(np.asarray(lab.agent_pos)) == (0, 0) and int(lab.agent_dir) == EAST


def test_forward_into_a_wall_or_the_edge_does_nothing_and_turns_change_direction():
    params = params_of(level(walls=[(6, 7)], agent=(6, 6), direction=EAST))
    obs, state = RESET(jax.random.key(0), params)
    obs2, state2, reward, term, trunc, _ = STEP(jax.random.key(1), state, FORWARD, params)
    np.testing.assert_array_equal(state2.agent_pos, [6, 6])
    assert int(state2.agent_dir) == EAST and int(state2.time) == 1 and float(reward) == 0.0
    np.testing.assert_array_equal(obs2, obs)
    _, noop, *_ = STEP(jax.random.key(1), state, 7, params)  # an action outside 0..2 does nothing
    np.testing.assert_array_equal(noop.agent_pos, [6, 6])
    assert int(noop.agent_dir) == EAST
    # Turns: right of east is south, left of east is north; four rights come back to east.
    _, right, *_ = STEP(jax.random.key(1), state, RIGHT, params)
    _, left, *_ = STEP(jax.random.key(1), state, LEFT, params)
    assert int(right.agent_dir) == SOUTH and int(left.agent_dir) == NORTH
    np.testing.assert_array_equal(right.agent_pos, [6, 6])
    s = state
    for _ in range(4):
        _, s, *_ = STEP(jax.random.key(1), s, RIGHT, params)
    assert int(s.agent_dir) == EAST
    # Facing south the way is free: forward moves one row down.
    _, moved, *_ = STEP(jax.random.key(1), right, FORWARD, params)
    np.testing.assert_array_equal(moved.agent_pos, [7, 6])
    # The grid's edge is a wall too.
    edge = params_of(level(agent=(0, 0), direction=NORTH))
    _, s = RESET(jax.random.key(0), edge)
    _, s, *_ = STEP(jax.random.key(1), s, FORWARD, edge)
    np.testing.assert_array_equal(s.agent_pos, [0, 0])


@pytest.mark.parametrize("max_steps", [T, 100])
def test_reaching_the_goal_terminates_with_the_time_discounted_reward(max_steps):
    # Facing south at (0, 0), the goal three cells east: turn left, then three moves = 4 steps.
    lvl = level(agent=(0, 0), direction=SOUTH, goal=(0, 3))
    rec = jax.tree.map(np.asarray, ROLLOUT(params_of(lvl, max_steps), padded([LEFT, FORWARD, FORWARD, FORWARD])))
    expected = 1.0 - 0.9 * 4 / max_steps  # 0.9856 for T = 250, 0.964 for T = 100
    np.testing.assert_allclose(rec["reward"][3], expected, rtol=1e-6)
    np.testing.assert_array_equal(rec["reward"][:3], 0.0)
    assert rec["terminated"][3] and not rec["terminated"][:3].any() and not rec["truncated"][:4].any()
    # The auto-reset restarts the same level; the observation at the goal is in final_observation.
    np.testing.assert_array_equal(rec["pos"][3], [0, 0])
    assert rec["dir"][3] == SOUTH and rec["time"][3] == 0
    np.testing.assert_array_equal(rec["next_obs"][3], rec["obs"][0])
    assert view_of(rec["final_obs"][3])[4, 2] == 1  # the agent stands on the goal


def test_no_auto_reset_wrapper_stops_at_the_goal():
    env = envs.NoAutoReset(M.Maze())
    params = params_of(level(agent=(0, 0), direction=EAST, goal=(0, 1)))
    _, state = jax.jit(env.reset)(jax.random.key(0), params)
    _, state, reward, term, trunc, info = jax.jit(env.step)(jax.random.key(1), state, FORWARD, params)
    assert bool(term) and not bool(trunc)
    np.testing.assert_array_equal(state.agent_pos, [0, 1])  # not reset
    np.testing.assert_allclose(reward, 1 - 0.9 / T, rtol=1e-6)


def test_truncation_at_250_steps_is_not_termination():
    params = params_of(level(agent=(6, 5), direction=EAST, goal=(6, 7)))
    rec = jax.tree.map(np.asarray, ROLLOUT(params, padded([])))  # only turns: never reaches the goal
    expected = np.zeros(T, bool)
    expected[T - 1] = True
    np.testing.assert_array_equal(rec["truncated"], expected)
    assert not rec["terminated"].any() and (rec["reward"] == 0).all()
    assert rec["time"][T - 2] == T - 1 and rec["time"][T - 1] == 0  # reset after the limit
    # Reaching the goal on the last allowed step terminates (reward 1 - 0.9 = 0.1) and is not truncated.
    rec = jax.tree.map(np.asarray, ROLLOUT(params, padded([LEFT] * (T - 2) + [FORWARD, FORWARD])))  # 248 turns: east
    assert rec["terminated"][T - 1] and not rec["truncated"][T - 1]
    np.testing.assert_allclose(rec["reward"][T - 1], 0.1, rtol=1e-5)


# ---------------------------------------------------------------------------------------------------------------
# Egocentric view


# Per direction, the grid cells (agent at (6, 6)) of: one ahead, one to the right, four ahead and two to the
# left (the view's far-left corner), and two ahead one to the right (where the goal goes). Worked out by hand.
VIEW_CASES = {
    EAST: dict(ahead=(6, 7), right=(7, 6), far_left=(4, 10), goal=(7, 8)),
    SOUTH: dict(ahead=(7, 6), right=(6, 5), far_left=(10, 8), goal=(8, 5)),
    WEST: dict(ahead=(6, 5), right=(5, 6), far_left=(8, 2), goal=(5, 4)),
    NORTH: dict(ahead=(5, 6), right=(6, 7), far_left=(2, 4), goal=(4, 7)),
}


@pytest.mark.parametrize("direction", [EAST, SOUTH, WEST, NORTH])
def test_egocentric_view_puts_what_is_ahead_at_the_expected_cell(direction):
    case = VIEW_CASES[direction]
    # Two walls on the opposite side, outside the view, must not appear.
    behind = {EAST: (6, 5), SOUTH: (5, 6), WEST: (6, 7), NORTH: (7, 6)}[direction]
    lvl = level(walls=[case["ahead"], case["right"], case["far_left"], behind], direction=direction, goal=case["goal"])
    obs, _ = RESET(jax.random.key(0), params_of(lvl))
    expected = np.full((5, 5), 2)  # empty
    expected[3, 2] = 0  # directly ahead: row 3 (one row above the agent's row 4), centre column
    expected[4, 3] = 0  # right of the agent, on its own row
    expected[0, 0] = 0  # four ahead, two left
    expected[2, 3] = 1  # the goal, two ahead and one right
    np.testing.assert_array_equal(view_of(obs), expected)
    np.testing.assert_array_equal(M.split_observation(obs)[1], np.eye(4)[direction])


def test_cells_off_the_grid_read_as_walls():
    obs, _ = RESET(jax.random.key(0), params_of(level(agent=(0, 0), direction=NORTH)))
    expected = np.zeros((5, 5), int)  # all wall ahead (rows -1..-4) and to the left (cols -1, -2)
    expected[4, 2:] = 2  # the agent's cell and (0, 1), (0, 2) to its right
    np.testing.assert_array_equal(view_of(obs), expected)


def test_split_observation_keeps_batch_axes():
    obs = jnp.arange(2 * 3 * M.OBS_SIZE, dtype=jnp.float32).reshape(2, 3, M.OBS_SIZE)
    image, direction = M.split_observation(obs)
    assert image.shape == (2, 3, 5, 5, 3) and direction.shape == (2, 3, 4)
    assert float(image[1, 2, 0, 0, 1]) == float(obs[1, 2, 1]) and float(direction[0, 0, 0]) == 75.0
    assert ENV.observation_space(ENV.default_params).shape == (M.OBS_SIZE,) == (79,)


# ---------------------------------------------------------------------------------------------------------------
# Levels as data


def test_vecenv_runs_different_levels_like_single_environments(random_levels):
    levels = pick(random_levels, slice(0, N))  # 0 to 167 walls
    # Different episode limits too, so truncation and auto-reset happen inside the rollout.
    limits = jnp.asarray([17, 30, 250, 45, 250, 23, 64, 250], jnp.int32)
    params = M.MazeParams(level=levels, max_steps_in_episode=limits)
    # Forward-heavy random actions, so agents move about.
    actions = jax.random.choice(jax.random.key(1), 3, (T, N), p=jnp.asarray([0.2, 0.2, 0.6])).astype(jnp.int32)
    batch = jax.tree.map(np.asarray, vec_rollout(params, actions))
    for i in range(N):
        one = jax.tree.map(lambda x: x[i], params)
        single = jax.tree.map(np.asarray, ROLLOUT(one, actions[:, i]))
        for name in single:
            np.testing.assert_array_equal(batch[name][i], single[name], err_msg=f"level {i}: {name}")
    assert batch["truncated"][0].sum() >= 10  # the 17-step limit
    assert batch["terminated"][3].any()  # no walls there: the random walk finds the goal
    assert len({batch["obs"][i, 0].tobytes() for i in range(N)}) == N  # eight different starts


def test_build_stack_takes_batched_levels():
    env, _ = envs.make("Maze-v0")
    stack = envs.build_stack(env, envs.StackSpec(num_envs=N, per_env_params=True))
    params = M.MazeParams(level=M.held_out_levels(), max_steps_in_episode=jnp.full(N, T, jnp.int32))
    obs, _ = jax.jit(stack.reset)(jax.random.key(0), params)
    assert obs.shape == (N, 79) and envs.observation_size(env) == 79
    assert envs.family_of("Maze-v0") == "ued" and "Maze-v0" in envs.registered_ids("ued")


# ---------------------------------------------------------------------------------------------------------------
# Generator


def test_random_levels_have_the_requested_walls_never_under_agent_or_goal(random_levels):
    walls = np.asarray(random_levels.wall_map)
    np.testing.assert_array_equal(walls.sum((1, 2)), WALL_COUNTS)
    rows = np.arange(WALL_COUNTS.size)
    agent, goal = np.asarray(random_levels.agent_pos), np.asarray(random_levels.goal_pos)
    assert not walls[rows, agent[:, 0], agent[:, 1]].any() and not walls[rows, goal[:, 0], goal[:, 1]].any()
    assert (agent != goal).any(1).all()
    assert set(np.asarray(random_levels.agent_dir).tolist()) == {0, 1, 2, 3}
    assert walls[WALL_COUNTS == 25].any(0).all()  # 128 x 25 draws cover every cell: walls spread over the grid
    assert np.asarray(CHECK_LEVELS(random_levels)[1]).all()
    with pytest.raises(ValueError, match="num_walls"):
        M.random_level(jax.random.key(0), 168)
    empty = M.empty_level()
    assert not np.asarray(empty.wall_map).any() and bool(M.level_is_valid(empty))


def test_shortest_path_and_validity_against_a_plain_bfs(random_levels):
    lengths, valid = map(np.asarray, CHECK_LEVELS(random_levels))
    for i in range(WALL_COUNTS.size):
        path = bfs_path(pick(random_levels, i))
        assert lengths[i] == (-1 if path is None else len(path) - 1), i
    assert (lengths == -1).any() and (lengths > 0).any()  # with 60 and 167 walls some goals are cut off
    bad = [level(agent=(3, 3), goal=(3, 3)), level(walls=[(3, 3)], agent=(3, 3)), level(goal=(13, 0))]
    _, valid = CHECK_LEVELS(jax.tree.map(lambda *xs: jnp.stack(xs), *bad))
    assert not np.asarray(valid).any()


# ---------------------------------------------------------------------------------------------------------------
# Held-out mazes


@pytest.mark.parametrize("name", M.HELD_OUT_MAZES)
def test_held_out_maze_loads_reaches_its_goal_and_renders(name):
    lvl = M.load_maze(name)
    assert np.asarray(lvl.wall_map).shape == (13, 13) and bool(M.level_is_valid(lvl))
    path = bfs_path(lvl)
    assert path is not None, f"{name}: goal unreachable"
    assert int(M.shortest_path_length(lvl)) == len(path) - 1
    assert M.format_level(lvl) == M._maze_text(name)  # the file round-trips through parse and format
    image = M.render_level(lvl, tile=6)
    assert image.shape == (15 * 6, 15 * 6, 3) and image.dtype == np.uint8
    # Cell centres carry the cell's colour: walls, the goal, free cells (the agent's tile aside).
    centres = image[3::6, 3::6][1:-1, 1:-1]
    walls = np.asarray(lvl.wall_map)
    colours = M._COLOURS
    agent = tuple(np.asarray(lvl.agent_pos))
    goal = tuple(np.asarray(lvl.goal_pos))
    for r in range(13):
        for c in range(13):
            if (r, c) == agent:
                continue
            want = colours["wall"] if walls[r, c] else colours["goal"] if (r, c) == goal else colours["free"]
            assert tuple(centres[r, c]) == want, (name, r, c)


def test_held_out_mazes_are_solved_in_time_by_their_shortest_route():
    levels = M.held_out_levels()
    plans = [actions_along(bfs_path(M.load_maze(n)), int(M.load_maze(n).agent_dir)) for n in M.HELD_OUT_MAZES]
    actions = jnp.stack([padded(p) for p in plans], axis=1)
    params = M.MazeParams(level=levels, max_steps_in_episode=jnp.full(N, T, jnp.int32))
    rec = jax.tree.map(np.asarray, vec_rollout(params, actions))
    for i, (name, plan) in enumerate(zip(M.HELD_OUT_MAZES, plans)):
        first = int(np.argmax(rec["terminated"][i]))
        assert rec["terminated"][i].any() and first == len(plan) - 1, (name, first, len(plan))
        np.testing.assert_allclose(rec["reward"][i, first], 1 - 0.9 * len(plan) / T, rtol=1e-5)
        assert rec["reward"][i, first] > 0  # "solved" is a return above 0


def test_held_out_layouts_have_their_described_shapes():
    def grid(name):
        return np.asarray(M.load_maze(name).wall_map)

    lab, flipped = M.load_maze("Labyrinth"), M.load_maze("LabyrinthFlipped")
    np.testing.assert_array_equal(grid("LabyrinthFlipped"), grid("Labyrinth")[:, ::-1])
    np.testing.assert_array_equal(flipped.goal_pos, [lab.goal_pos[0], 12 - lab.goal_pos[1]])
    assert int(flipped.agent_dir) == WEST and int(lab.agent_dir) == EAST
    for name in ("Labyrinth", "Labyrinth2"):
        np.testing.assert_array_equal(M.load_maze(name).goal_pos, [6, 6])  # the centre
    # The spiral is one corridor: every free cell but the two ends has exactly two free neighbours.
    free = ~grid("Labyrinth")
    padded_free = np.pad(free, 1)
    degree = padded_free[:-2, 1:-1].astype(int) + padded_free[2:, 1:-1] + padded_free[1:-1, :-2] + padded_free[1:-1, 2:]
    assert sorted(degree[free].tolist()).count(1) == 2 and set(degree[free].tolist()) <= {1, 2}
    # Sixteen rooms: wall lines at rows and columns 3, 6, 9 cut the free cells into 16 rooms.
    for name in ("SixteenRooms", "SixteenRooms2"):
        walls = grid(name)
        assert walls[[3, 6, 9]][:, [3, 6, 9]].all()
        assert walls[:, [0, 1, 2, 4, 5, 7, 8, 10, 11, 12]][[0, 1, 2, 4, 5, 7, 8, 10, 11, 12]].sum() == 0
    # Standard mazes are perfect: the free cells form a tree (connected, edges = cells - 1).
    for name in ("StandardMaze", "StandardMaze2", "StandardMaze3"):
        free = ~grid(name)
        edges = (free[1:] & free[:-1]).sum() + (free[:, 1:] & free[:, :-1]).sum()
        assert edges == free.sum() - 1, name


def test_unknown_maze_name_is_one_line_naming_the_choices():
    with pytest.raises(InvalidChoiceError) as info:
        M.load_maze("NoSuchMaze")
    message = str(info.value)
    assert "\n" not in message and "'NoSuchMaze'" in message
    assert all(name in message for name in M.HELD_OUT_MAZES)
    with pytest.raises(InvalidChoiceError, match="closest: SixteenRooms"):
        envs.make("Maze-v0", level="SixteenRoom")


def test_parse_rejects_malformed_layouts():
    good = M.format_level(M.load_maze("StandardMaze"))
    with pytest.raises(ValueError, match="13 rows"):
        M.parse_maze(good.splitlines()[0])
    with pytest.raises(ValueError, match="one agent and one goal"):
        M.parse_maze(good.replace("G", "."))
    with pytest.raises(ValueError, match="unknown characters"):
        M.parse_maze(good.replace("G", "X"))


# ---------------------------------------------------------------------------------------------------------------
# Rendering


def pointing(patch: np.ndarray) -> int:
    """Which way a red triangle in a tile points: its wide base is at the back, its tip at the front."""
    red = np.all(patch == M._COLOURS["agent"], axis=-1)
    rows, cols = np.nonzero(red)
    widths = {
        EAST: red[:, cols.min()].sum() - red[:, cols.max()].sum(),  # wide at the left, narrow at the right
        WEST: red[:, cols.max()].sum() - red[:, cols.min()].sum(),
        SOUTH: red[rows.min()].sum() - red[rows.max()].sum(),
        NORTH: red[rows.max()].sum() - red[rows.min()].sum(),
    }
    return max(widths, key=widths.get)


def test_render_shows_the_agent_direction_and_tiles_levels():
    lvl = level(agent=(4, 9), goal=(0, 0))
    tile = 10
    for d in (EAST, SOUTH, WEST, NORTH):
        state = M.MazeState(agent_pos=jnp.asarray([4, 9]), agent_dir=jnp.asarray(d), time=jnp.asarray(0))
        image = M.render_level(lvl, state, tile=tile, show_view=True)
        patch = image[5 * tile : 6 * tile, 10 * tile : 11 * tile]  # cell (4, 9) plus the one-cell border
        assert pointing(patch) == d
    grid = M.render_grid(M.held_out_levels(), columns=3, tile=4)
    side, gap = 15 * 4, 2
    assert grid.shape == (3 * side + 2 * gap, 3 * side + 2 * gap, 3) and grid.dtype == np.uint8
    np.testing.assert_array_equal(grid[:side, side + gap : 2 * side + gap], M.render_level(M.load_maze("SixteenRooms2"), tile=4))
    assert M.render_grid([lvl, lvl]).shape == (120, 2 * 120 + 4, 3)
