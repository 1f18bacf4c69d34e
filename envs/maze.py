"""A maze for unsupervised environment design (UED), after the JaxUED / minimax maze, on the gymnax 1.0 protocol.

The world is a 13x13 grid (`GRID_SIZE`) of free cells and walls, surrounded by an implicit wall. The agent has a
cell and one of 4 directions; a goal sits on another cell. Actions: 0 turn left, 1 turn right, 2 move forward
(into a wall or off the grid: nothing moves; any other action value does nothing). Reaching the goal terminates
the episode with reward `1 - 0.9 * t / T`, t the number of steps taken (this one included) and T the episode
limit (`max_steps_in_episode`, 250); every other step gives 0. At T steps without the goal the episode is
truncated (not terminated).

Conventions: positions are `(row, col)` int32 pairs, `wall_map[row, col]`; directions 0 east (col + 1),
1 south (row + 1), 2 west, 3 north, so `dir + 1` is a right (clockwise) turn on a picture with row 0 at the top.

Observation (`OBS_SIZE` = 79 float32 values, one flat vector):

    obs[:75]  the agent's 5x5 egocentric view, an image (5, 5, 3) flattened row-major; `split_observation`
              undoes it. View row 0 is farthest ahead, row 4 the agent's own row; column 0 is the agent's far
              left, column 2 straight ahead, column 4 its far right. The agent sits at view[4, 2] and looks up
              the image, so view[3, 2] is the cell directly in front of it. Each cell is one-hot over the
              channels (wall, goal, empty); cells off the grid read as walls. The view sees through walls (as
              JaxUED's default): only its 5x5 extent limits it.
    obs[75:]  the agent's direction, one-hot over 4.

Why one flat vector and not a dict or an (image, direction) tuple: every wrapper of the stack, the observation
normaliser, `final_observation`, the auto-reset select and rollout buffers all take one array, and a 1-D
observation passes through the stack unflattened. A conv network recovers the image with `split_observation`.

A level (`MazeLevel`: walls, agent cell and direction, goal) is a pytree carried by the params (`MazeParams`).
`reset` therefore starts exactly the params' level, and the auto-reset restarts the same level: choosing levels
is the curriculum's job, and `VecEnv(env, n, per_env_params=True)` runs n different levels in one program.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from importlib import resources
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxrl.envs.auto_reset import step_with_auto_reset
from jaxrl.envs.errors import invalid_choice
from jaxrl.envs.gymnax_import import spaces

GRID_SIZE = 13
NUM_CELLS = GRID_SIZE * GRID_SIZE
VIEW_SIZE = 5
NUM_DIRECTIONS = 4
NUM_CHANNELS = 3  # wall, goal, empty
CHANNEL_WALL, CHANNEL_GOAL, CHANNEL_EMPTY = 0, 1, 2
IMAGE_SHAPE = (VIEW_SIZE, VIEW_SIZE, NUM_CHANNELS)
IMAGE_SIZE = VIEW_SIZE * VIEW_SIZE * NUM_CHANNELS
OBS_SIZE = IMAGE_SIZE + NUM_DIRECTIONS
MAX_STEPS = 250
NUM_ACTIONS = 3
ACTION_LEFT, ACTION_RIGHT, ACTION_FORWARD = 0, 1, 2

# (drow, dcol) of one move forward, per direction: east, south, west, north.
DIRECTION_VECTORS = np.array([[0, 1], [1, 0], [0, -1], [-1, 0]], np.int32)


def _view_offsets() -> np.ndarray:
    """(4, 5, 5, 2) int32: the grid offset from the agent of each view cell, per direction. View cell (i, j)
    lies 4 - i cells ahead and j - 2 cells to the right of the agent; "right" of direction d is direction d + 1."""
    offsets = np.zeros((NUM_DIRECTIONS, VIEW_SIZE, VIEW_SIZE, 2), np.int32)
    for d in range(NUM_DIRECTIONS):
        forward, right = DIRECTION_VECTORS[d], DIRECTION_VECTORS[(d + 1) % NUM_DIRECTIONS]
        for i in range(VIEW_SIZE):
            for j in range(VIEW_SIZE):
                offsets[d, i, j] = (VIEW_SIZE - 1 - i) * forward + (j - VIEW_SIZE // 2) * right
    return offsets


VIEW_OFFSETS = _view_offsets()


@struct.dataclass
class MazeLevel:
    """One maze. Batched levels (a leading axis on every field) are what `VecEnv(per_env_params=True)` takes."""

    wall_map: jax.Array  # (13, 13) bool, indexed [row, col]
    agent_pos: jax.Array  # (2,) int32 (row, col)
    agent_dir: jax.Array  # () int32 in 0..3 (east, south, west, north)
    goal_pos: jax.Array  # (2,) int32 (row, col)


@struct.dataclass
class MazeParams:
    level: MazeLevel
    max_steps_in_episode: int = MAX_STEPS  # T of the reward and the truncation limit (a pytree leaf, may be traced)


@struct.dataclass
class MazeState:
    agent_pos: jax.Array  # (2,) int32 (row, col)
    agent_dir: jax.Array  # () int32
    time: jax.Array  # () int32: steps taken in this episode


def make_level(wall_map: Any, agent_pos: Any, agent_dir: Any, goal_pos: Any) -> MazeLevel:
    """A `MazeLevel` with the canonical dtypes (bool walls, int32 positions and direction)."""
    return MazeLevel(
        wall_map=jnp.asarray(wall_map, bool),
        agent_pos=jnp.asarray(agent_pos, jnp.int32),
        agent_dir=jnp.asarray(agent_dir, jnp.int32),
        goal_pos=jnp.asarray(goal_pos, jnp.int32),
    )


def empty_level(agent_pos: tuple[int, int] = (0, 0), agent_dir: int = 0, goal_pos: tuple[int, int] = (12, 12)) -> MazeLevel:
    """No walls; by default the agent in the top-left corner facing east and the goal in the opposite corner."""
    return make_level(np.zeros((GRID_SIZE, GRID_SIZE), bool), agent_pos, agent_dir, goal_pos)


def random_level(key: jax.Array, num_walls: int | jax.Array = 25) -> MazeLevel:
    """A uniformly random level: `num_walls` walls on distinct cells, then the goal and the agent on two more
    distinct cells (so never on a wall or on each other), and a uniform direction. The goal need not be reachable
    (`shortest_path_length` says). Pure and jittable; `num_walls` may be traced (clipped into 0..167 then)."""
    if isinstance(num_walls, (int, np.integer)) and not 0 <= num_walls <= NUM_CELLS - 2:
        raise ValueError(f"num_walls must be in 0..{NUM_CELLS - 2} (agent and goal need two free cells), got {num_walls}")
    num_walls = jnp.clip(jnp.asarray(num_walls, jnp.int32), 0, NUM_CELLS - 2)
    order_key, dir_key = jax.random.split(key)
    order = jax.random.permutation(order_key, NUM_CELLS)  # order[k]: the cell drawn k-th
    rank = jnp.zeros(NUM_CELLS, jnp.int32).at[order].set(jnp.arange(NUM_CELLS, dtype=jnp.int32))
    # The first num_walls cells drawn are walls; ranks (not a slice) keep num_walls a traced value.
    wall_map = (rank < num_walls).reshape(GRID_SIZE, GRID_SIZE)
    goal_cell, agent_cell = order[num_walls], order[num_walls + 1]
    return MazeLevel(
        wall_map=wall_map,
        agent_pos=jnp.stack(jnp.divmod(agent_cell, GRID_SIZE)).astype(jnp.int32),
        agent_dir=jax.random.randint(dir_key, (), 0, NUM_DIRECTIONS, jnp.int32),
        goal_pos=jnp.stack(jnp.divmod(goal_cell, GRID_SIZE)).astype(jnp.int32),
    )


def _neighbours(mask: jax.Array) -> jax.Array:
    """(13, 13) bool -> cells 4-adjacent to any true cell (the grid edge is a wall)."""
    padded = jnp.pad(mask, 1)
    return padded[:-2, 1:-1] | padded[2:, 1:-1] | padded[1:-1, :-2] | padded[1:-1, 2:]


def shortest_path_length(level: MazeLevel) -> jax.Array:
    """() int32: fewest forward moves from the agent to the goal through free cells (turns not counted), or -1
    when the goal is unreachable. A breadth-first flood fill; jittable and vmappable."""
    free = ~level.wall_map
    cells = jnp.arange(GRID_SIZE)
    start = (cells[:, None] == level.agent_pos[0]) & (cells[None, :] == level.agent_pos[1])
    goal = (cells[:, None] == level.goal_pos[0]) & (cells[None, :] == level.goal_pos[1])

    def searching(carry):
        reached, frontier, _ = carry
        return ~jnp.any(reached & goal) & jnp.any(frontier)

    def expand(carry):
        reached, frontier, dist = carry
        new = _neighbours(frontier) & free & ~reached
        return reached | new, new, dist + 1

    reached, _, dist = jax.lax.while_loop(searching, expand, (start, start, jnp.zeros((), jnp.int32)))
    return jnp.where(jnp.any(reached & goal), dist, -1)


def level_is_valid(level: MazeLevel) -> jax.Array:
    """() bool: agent and goal on the grid, on free cells, on different cells, direction in 0..3. Jittable."""

    def on_free_cell(pos: jax.Array) -> jax.Array:
        inside = jnp.all((pos >= 0) & (pos < GRID_SIZE))
        return inside & ~level.wall_map[jnp.clip(pos[0], 0, GRID_SIZE - 1), jnp.clip(pos[1], 0, GRID_SIZE - 1)]

    distinct = jnp.any(level.agent_pos != level.goal_pos)
    direction_ok = (level.agent_dir >= 0) & (level.agent_dir < NUM_DIRECTIONS)
    return on_free_cell(level.agent_pos) & on_free_cell(level.goal_pos) & distinct & direction_ok


def split_observation(obs: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(..., 79) -> image (..., 5, 5, 3) and direction one-hot (..., 4); any leading batch axes are kept."""
    obs = jnp.asarray(obs)
    image = obs[..., :IMAGE_SIZE].reshape(*obs.shape[:-1], *IMAGE_SHAPE)
    return image, obs[..., IMAGE_SIZE:]


class Maze:
    """The UED maze on the gymnax 1.0 protocol (see the module docstring for the rules and the observation).

    `level` is the level of `default_params`: a `MazeLevel`, a held-out maze's name (`HELD_OUT_MAZES`) or None
    for `empty_level()`. Training on other levels means passing params that carry them, e.g. batched levels
    under `VecEnv(env, n, per_env_params=True)`.
    """

    binary_observations = True  # the view's channels and the direction are one-hot (see envs.compact_observations)

    def __init__(self, level: MazeLevel | str | None = None, max_steps_in_episode: int = MAX_STEPS):
        if isinstance(level, str):
            level = load_maze(level)
        self.level = empty_level() if level is None else level
        if int(max_steps_in_episode) < 1:
            raise ValueError(f"max_steps_in_episode must be >= 1, got {max_steps_in_episode}")
        self.max_steps_in_episode = int(max_steps_in_episode)

    @property
    def name(self) -> str:
        return "Maze-v0"

    @property
    def num_actions(self) -> int:
        return NUM_ACTIONS

    @property
    def default_params(self) -> MazeParams:
        return MazeParams(level=self.level, max_steps_in_episode=self.max_steps_in_episode)

    def action_space(self, params: MazeParams | None = None) -> spaces.Discrete:
        return spaces.Discrete(NUM_ACTIONS)

    def observation_space(self, params: MazeParams | None = None) -> spaces.Box:
        return spaces.Box(0.0, 1.0, (OBS_SIZE,), jnp.float32)

    def get_obs(self, state: MazeState, params: MazeParams) -> jax.Array:
        """(79,) float32: the egocentric view and the direction (layout in the module docstring)."""
        level = params.level
        cells = state.agent_pos + jnp.asarray(VIEW_OFFSETS)[state.agent_dir]  # (5, 5, 2) grid cells in view
        inside = jnp.all((cells >= 0) & (cells < GRID_SIZE), axis=-1)
        rows, cols = jnp.clip(cells[..., 0], 0, GRID_SIZE - 1), jnp.clip(cells[..., 1], 0, GRID_SIZE - 1)
        wall = jnp.where(inside, level.wall_map[rows, cols], True)  # off the grid reads as wall
        goal = inside & ~wall & (rows == level.goal_pos[0]) & (cols == level.goal_pos[1])
        image = jnp.stack([wall, goal, ~wall & ~goal], axis=-1).astype(jnp.float32)
        direction = jax.nn.one_hot(state.agent_dir, NUM_DIRECTIONS, dtype=jnp.float32)
        return jnp.concatenate([image.reshape(-1), direction])

    def reset_env(self, key: jax.Array, params: MazeParams) -> tuple[jax.Array, MazeState]:
        """The params' level from its start; deterministic (`key` is unused), so a restart is exact."""
        level = params.level
        state = MazeState(
            agent_pos=jnp.asarray(level.agent_pos, jnp.int32),
            agent_dir=jnp.asarray(level.agent_dir, jnp.int32),
            time=jnp.zeros((), jnp.int32),
        )
        return self.get_obs(state, params), state

    def reset(self, key: jax.Array, params: MazeParams | None = None) -> tuple[jax.Array, MazeState]:
        return self.reset_env(key, self.default_params if params is None else params)

    def reset_to(self, key: jax.Array, level: MazeLevel, params: MazeParams | None = None) -> tuple[jax.Array, MazeState]:
        """Start `level` (with the episode limit of `params`, default 250). Keep the returned params' level for
        `step`: use `params.replace(level=level)` there, since the level lives in the params, not the state."""
        params = self.default_params if params is None else params
        return self.reset(key, params.replace(level=level))

    def _at_goal(self, state: MazeState, params: MazeParams) -> jax.Array:
        return jnp.all(state.agent_pos == params.level.goal_pos)

    def step_env(
        self, key: jax.Array, state: MazeState, action: jax.Array, params: MazeParams
    ) -> tuple[jax.Array, MazeState, jax.Array, jax.Array, dict]:
        """One step without the time limit or the auto-reset (gymnax's `step_env`)."""
        action = jnp.asarray(action)
        turned = jnp.where(action == ACTION_LEFT, state.agent_dir - 1, jnp.where(action == ACTION_RIGHT, state.agent_dir + 1, state.agent_dir))
        target = state.agent_pos + jnp.asarray(DIRECTION_VECTORS)[state.agent_dir]
        inside = jnp.all((target >= 0) & (target < GRID_SIZE))
        blocked = ~inside | params.level.wall_map[jnp.clip(target[0], 0, GRID_SIZE - 1), jnp.clip(target[1], 0, GRID_SIZE - 1)]
        moves = (action == ACTION_FORWARD) & ~blocked
        next_state = MazeState(
            agent_pos=jnp.where(moves, target, state.agent_pos).astype(jnp.int32),
            agent_dir=jnp.mod(turned, NUM_DIRECTIONS).astype(jnp.int32),
            time=state.time + 1,
        )
        terminated = self._at_goal(next_state, params)
        progress = next_state.time.astype(jnp.float32) / jnp.asarray(params.max_steps_in_episode, jnp.float32)
        reward = jnp.where(terminated, 1.0 - 0.9 * progress, 0.0).astype(jnp.float32)
        return self.get_obs(next_state, params), next_state, reward, terminated, {}

    def is_truncated(self, state: MazeState, params: MazeParams) -> jax.Array:
        """The episode limit is reached without the goal (a step that reaches the goal at the limit terminates)."""
        return (state.time >= params.max_steps_in_episode) & ~self._at_goal(state, params)

    def step(
        self, key: jax.Array, state: MazeState, action: jax.Array, params: MazeParams | None = None
    ) -> tuple[jax.Array, MazeState, jax.Array, jax.Array, jax.Array, dict]:
        params = self.default_params if params is None else params
        # The auto-reset restarts the same level (the params'); the curriculum changes levels through params.
        return step_with_auto_reset(self, key, state, action, params, self.reset_env)


# ---------------------------------------------------------------------------------------------------------------
# Text layouts and the held-out mazes

# The mazes researchers report held-out solve rates on. Layouts are this project's own (envs/mazes/*.txt),
# drawn from the published descriptions, not copies of any reference's files.
HELD_OUT_MAZES = (
    "SixteenRooms",
    "SixteenRooms2",
    "Labyrinth",
    "LabyrinthFlipped",
    "Labyrinth2",
    "StandardMaze",
    "StandardMaze2",
    "StandardMaze3",
)
# Text format: one line per row, '#' wall, '.' free, 'G' goal, the agent as '>' 'v' '<' '^' (facing east, south,
# west, north) or 'A' (facing east).
_AGENT_CHARS = {">": 0, "v": 1, "<": 2, "^": 3, "A": 0}
_DIRECTION_CHARS = ">v<^"


def parse_maze(text: str, name: str = "maze") -> MazeLevel:
    """A 13-line, 13-column text layout (format above; blank lines ignored) -> `MazeLevel`. Raises ValueError
    naming `name` for a malformed layout."""
    rows = [line.strip() for line in text.splitlines() if line.strip()]
    if len(rows) != GRID_SIZE or any(len(row) != GRID_SIZE for row in rows):
        raise ValueError(f"{name}: expected {GRID_SIZE} rows of {GRID_SIZE} characters, got {[len(r) for r in rows]}")
    unknown = sorted(set("".join(rows)) - set("#.G") - set(_AGENT_CHARS))
    if unknown:
        raise ValueError(f"{name}: unknown characters {unknown} (use # . G and one of > v < ^ A)")
    agents = [(r, c) for r, row in enumerate(rows) for c, ch in enumerate(row) if ch in _AGENT_CHARS]
    goals = [(r, c) for r, row in enumerate(rows) for c, ch in enumerate(row) if ch == "G"]
    if len(agents) != 1 or len(goals) != 1:
        raise ValueError(f"{name}: expected one agent and one goal, got {len(agents)} and {len(goals)}")
    walls = np.array([[ch == "#" for ch in row] for row in rows], bool)
    (ar, ac), goal = agents[0], goals[0]
    return make_level(walls, (ar, ac), _AGENT_CHARS[rows[ar][ac]], goal)


def format_level(level: MazeLevel) -> str:
    """`MazeLevel` (unbatched) -> the text layout `parse_maze` reads (the agent as an arrow)."""
    walls = np.asarray(level.wall_map)
    grid = np.where(walls, "#", ".").astype("<U1")
    grid[tuple(np.asarray(level.goal_pos))] = "G"
    grid[tuple(np.asarray(level.agent_pos))] = _DIRECTION_CHARS[int(level.agent_dir) % NUM_DIRECTIONS]
    return "\n".join("".join(row) for row in grid) + "\n"


@functools.lru_cache(maxsize=None)
def _maze_text(name: str) -> str:
    return resources.files("jaxrl.envs").joinpath("mazes", f"{name}.txt").read_text()


def load_maze(name: str) -> MazeLevel:
    """The held-out maze `name` (one of `HELD_OUT_MAZES`) as a `MazeLevel`; an unknown name raises
    InvalidChoiceError naming the valid ones."""
    if name not in HELD_OUT_MAZES:
        raise invalid_choice("maze", name, HELD_OUT_MAZES)
    return parse_maze(_maze_text(name), name)


def held_out_levels(names: Sequence[str] = HELD_OUT_MAZES) -> MazeLevel:
    """The named mazes stacked into one batched `MazeLevel` (leading axis len(names)), e.g. for an evaluation
    under `VecEnv(env, len(names), per_env_params=True)`."""
    levels = [load_maze(n) for n in names]
    return jax.tree.map(lambda *xs: jnp.stack(xs), *levels)


# ---------------------------------------------------------------------------------------------------------------
# Rendering (NumPy only)

_COLOURS = {
    "free": (24, 24, 24),
    "view": (70, 70, 70),  # free cells inside the agent's 5x5 view
    "wall": (140, 140, 140),
    "goal": (40, 200, 70),
    "agent": (230, 50, 40),
    "grid": (0, 0, 0),
    "gap": (255, 255, 255),
}


def _triangle(tile: int, direction: int) -> np.ndarray:
    """(tile, tile) bool: a triangle pointing along `direction` (0 east, 1 south, 2 west, 3 north)."""
    centres = (np.arange(tile) + 0.5) / tile
    x, y = centres[None, :], centres[:, None]
    east = (x >= 0.15) & (x <= 0.85) & (np.abs(y - 0.5) <= 0.4 * (0.85 - x) / 0.7)
    return np.rot90(east, -direction)  # clockwise quarter turns: east -> south -> west -> north


def render_level(level: MazeLevel, state: MazeState | None = None, tile: int = 8, show_view: bool = False) -> np.ndarray:
    """RGB picture of one (unbatched) level: (15 * tile, 15 * tile, 3) uint8, the 13x13 grid inside a one-cell
    wall border. Walls grey, goal green, the agent a red triangle pointing its way (from `state` when given,
    else the level's start); `show_view` lightens the free cells of the agent's 5x5 view."""
    walls = np.pad(np.asarray(level.wall_map, bool), 1, constant_values=True)
    size = GRID_SIZE + 2
    if state is None:
        pos, direction = np.asarray(level.agent_pos), int(level.agent_dir)
    else:
        pos, direction = np.asarray(state.agent_pos), int(state.agent_dir)
    cells = np.empty((size, size, 3), np.uint8)
    cells[:] = _COLOURS["free"]
    if show_view:
        view = pos + VIEW_OFFSETS[direction % NUM_DIRECTIONS] + 1  # +1: the border
        view = view[np.all((view >= 0) & (view < size), axis=-1)]
        cells[view[:, 0], view[:, 1]] = _COLOURS["view"]
    cells[walls] = _COLOURS["wall"]
    goal = np.asarray(level.goal_pos) + 1
    cells[goal[0], goal[1]] = _COLOURS["goal"]
    image = np.repeat(np.repeat(cells, tile, axis=0), tile, axis=1)
    if tile >= 4:  # thin grid lines so single cells stay countable
        image[::tile, :] = _COLOURS["grid"]
        image[:, ::tile] = _COLOURS["grid"]
    r0, c0 = (pos[0] + 1) * tile, (pos[1] + 1) * tile
    patch = image[r0 : r0 + tile, c0 : c0 + tile]
    patch[_triangle(tile, direction % NUM_DIRECTIONS)] = _COLOURS["agent"]
    return image


def _unstack(levels: MazeLevel | Sequence[MazeLevel]) -> list[MazeLevel]:
    if isinstance(levels, MazeLevel):
        if np.ndim(levels.wall_map) == 2:
            return [levels]
        return [jax.tree.map(lambda x, i=i: x[i], levels) for i in range(np.shape(levels.wall_map)[0])]
    return list(levels)


def render_grid(
    levels: MazeLevel | Sequence[MazeLevel], columns: int | None = None, tile: int = 8, states: Sequence[MazeState] | None = None
) -> np.ndarray:
    """Several levels (a batched `MazeLevel` or a sequence of them) tiled into one RGB uint8 picture, `columns`
    per row (default about square), separated by white gaps of tile // 2 pixels. Shape
    (rows * 15 * tile + (rows - 1) * gap, columns * 15 * tile + (columns - 1) * gap, 3)."""
    items = _unstack(levels)
    if not items:
        raise ValueError("render_grid needs at least one level")
    states = [None] * len(items) if states is None else list(states)
    columns = int(np.ceil(np.sqrt(len(items)))) if columns is None else max(1, int(columns))
    rows = int(np.ceil(len(items) / columns))
    side, gap = (GRID_SIZE + 2) * tile, max(1, tile // 2)
    out = np.empty((rows * side + (rows - 1) * gap, columns * side + (columns - 1) * gap, 3), np.uint8)
    out[:] = _COLOURS["gap"]
    for k, (level, state) in enumerate(zip(items, states)):
        r, c = divmod(k, columns)
        out[r * (side + gap) : r * (side + gap) + side, c * (side + gap) : c * (side + gap) + side] = render_level(level, state, tile)
    return out
