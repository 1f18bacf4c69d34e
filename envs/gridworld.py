"""The LPG / GROOVE grid-world family on the gymnax 1.0 protocol, with fixed array shapes so levels vmap together.

The world is a square grid of `size` x `size` cells (4..13, a per-level value) drawn inside a fixed 13x13 array
(`GRID_SIZE`); cells outside the level's own size are walls, and the 13x13 array is surrounded by an implicit
wall. A level holds up to `MAX_OBJECTS` = 5 objects (an `object_active` mask says which exist), each of one of
`NUM_KINDS` = 5 kinds; every kind has a reward, a termination probability and a respawn probability.

Rules, per step (actions 0 up, 1 right, 2 down, 3 left, 4 stay; a move into a wall or off the grid stays put,
any other action value stays too):
1. The agent moves.
2. Each present object on the agent's new cell is collected: its kind's reward is paid, it is removed, and the
   episode terminates with its kind's termination probability (one uniform draw per object).
3. Each active object that was absent *before* this step (collected on an earlier step) respawns, with its
   kind's respawn probability, on a uniformly random free cell (inside the level, not a wall, not the agent, not
   another present object); an object collected on this step can therefore come back on the next step at the
   earliest. With no free cell left it stays absent.
4. At `max_steps` steps without termination the episode is truncated (a termination on the last step is a
   termination, not a truncation).

Conventions: positions are `(row, col)` int32 pairs, `wall_map[row, col]`, row 0 at the top; "up" is row - 1.

Observation (`OBS_SIZE` = 174 float32 values, one flat vector):

    obs[:169]  one-hot of the agent's cell, index row * 13 + col (always over the full 13x13 array, so every
               level has the same observation size)
    obs[169:]  the objects-present bits, one per object slot (inactive slots always read 0)

Why this choice: LPG's tabular agents see a one-hot of the state; the agent cell alone is not Markov once
objects disappear, and the present bits are the smallest addition that tells the agent what is left to collect.
Object *positions* are not observed: after a random respawn the observation is aliased (as in LPG's tabular
grid worlds, where respawned objects are not shown either); a learner must cope with that.

A level (`GridLevel`) is a pytree carried by the params (`GridParams`), including its own episode limit, so
`VecEnv(env, n, per_env_params=True)` runs n different levels in one compiled program. `reset` is deterministic
(the level's start); the randomness of a level is in termination and respawn, drawn from the step's key.
"""

from __future__ import annotations

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
MAX_OBJECTS = 5
NUM_KINDS = 5
NUM_ACTIONS = 5
ACTION_UP, ACTION_RIGHT, ACTION_DOWN, ACTION_LEFT, ACTION_STAY = 0, 1, 2, 3, 4
OBS_SIZE = NUM_CELLS + MAX_OBJECTS

# (drow, dcol) per action: up, right, down, left, stay.
ACTION_VECTORS = np.array([[-1, 0], [0, 1], [1, 0], [0, -1], [0, 0]], np.int32)

# GROOVE's random-level ranges ("all" mode).
MIN_RANDOM_SIZE, MAX_RANDOM_SIZE = 4, 10
MAX_RANDOM_WALLS = 15
P_TERMINATE_RANGE = (0.01, 1.0)  # log-uniform
P_RESPAWN_RANGE = (0.001, 0.1)  # log-uniform
MAX_STEPS_RANGE = (20, 750)  # log-uniform, rounded


@struct.dataclass
class GridLevel:
    """One grid world. Every field has a fixed shape, so levels stack (leading axis) and vmap together.

    wall_map:        (13, 13) bool, [row, col]; True outside the level's size as well
    size:            () int32, the side of the level's square (cells with row or col >= size are walls)
    agent_pos:       (2,) int32 (row, col), the start cell
    object_pos:      (5, 2) int32 (row, col), each object's start cell (ignored where inactive)
    object_kind:     (5,) int32 in 0..4
    object_active:   (5,) bool, which object slots exist in this level
    kind_reward:     (5,) float32, reward for collecting an object of each kind
    kind_terminate:  (5,) float32, probability that collecting an object of each kind ends the episode
    kind_respawn:    (5,) float32, per-step probability that an absent object of each kind respawns
    max_steps:       () int32, the episode limit (truncation)
    """

    wall_map: jax.Array
    size: jax.Array
    agent_pos: jax.Array
    object_pos: jax.Array
    object_kind: jax.Array
    object_active: jax.Array
    kind_reward: jax.Array
    kind_terminate: jax.Array
    kind_respawn: jax.Array
    max_steps: jax.Array


@struct.dataclass
class GridParams:
    level: GridLevel


@struct.dataclass
class GridState:
    agent_pos: jax.Array  # (2,) int32
    object_pos: jax.Array  # (5, 2) int32, current cells (respawns move objects)
    object_present: jax.Array  # (5,) bool, active and not collected (or respawned since)
    time: jax.Array  # () int32, steps taken in this episode
    terminated: jax.Array  # () bool, whether the last step terminated (is_truncated needs it: termination is random)


def _outside_mask(size: Any) -> jax.Array:
    """(13, 13) bool: cells outside a size x size level."""
    cells = jnp.arange(GRID_SIZE)
    return (cells[:, None] >= size) | (cells[None, :] >= size)


def make_level(
    size: int,
    agent_pos: Any,
    objects: Any,
    kind_reward: Any,
    kind_terminate: Any,
    kind_respawn: Any,
    max_steps: int,
    walls: Any = (),
) -> GridLevel:
    """A `GridLevel` from plain Python values (not jittable; for hand-written levels and tests).

    `objects`: up to 5 `(row, col, kind)` triples; `walls`: `(row, col)` cells inside the level; the per-kind
    arrays may be shorter than 5 (padded with reward 0, probabilities 0). Raises ValueError on bad input."""
    size = int(size)
    if not 1 <= size <= GRID_SIZE:
        raise ValueError(f"size must be in 1..{GRID_SIZE}, got {size}")
    objects = list(objects)
    if len(objects) > MAX_OBJECTS:
        raise ValueError(f"at most {MAX_OBJECTS} objects, got {len(objects)}")
    wall_map = np.asarray(_outside_mask(size)).copy()
    for r, c in walls:
        wall_map[r, c] = True
    occupied = [tuple(agent_pos)] + [(r, c) for r, c, _ in objects]
    for cell in occupied:
        if not (0 <= cell[0] < size and 0 <= cell[1] < size) or wall_map[cell]:
            raise ValueError(f"cell {cell} is outside the {size}x{size} level or on a wall")
    if len(set(occupied)) != len(occupied):
        raise ValueError("the agent and the objects need distinct cells")
    if int(max_steps) < 1:
        raise ValueError(f"max_steps must be >= 1, got {max_steps}")

    def per_kind(values: Any) -> np.ndarray:
        out = np.zeros(NUM_KINDS, np.float32)
        values = np.asarray(values, np.float32).reshape(-1)
        out[: values.size] = values
        return out

    pos = np.zeros((MAX_OBJECTS, 2), np.int32)
    kind = np.zeros(MAX_OBJECTS, np.int32)
    active = np.zeros(MAX_OBJECTS, bool)
    for i, (r, c, k) in enumerate(objects):
        if not 0 <= k < NUM_KINDS:
            raise ValueError(f"object kind must be in 0..{NUM_KINDS - 1}, got {k}")
        pos[i], kind[i], active[i] = (r, c), k, True
    return GridLevel(
        wall_map=jnp.asarray(wall_map),
        size=jnp.asarray(size, jnp.int32),
        agent_pos=jnp.asarray(agent_pos, jnp.int32),
        object_pos=jnp.asarray(pos),
        object_kind=jnp.asarray(kind),
        object_active=jnp.asarray(active),
        kind_reward=jnp.asarray(per_kind(kind_reward)),
        kind_terminate=jnp.asarray(per_kind(kind_terminate)),
        kind_respawn=jnp.asarray(per_kind(kind_respawn)),
        max_steps=jnp.asarray(int(max_steps), jnp.int32),
    )


def random_level(key: jax.Array) -> GridLevel:
    """A random level with GROOVE's ranges: size uniform in 4..10; 0..15 walls (uniform count, capped at
    size^2 - 6 so the agent and 5 objects always fit); 1..5 active objects on distinct free cells, kinds uniform
    over 5 with object 0 always of kind 0; kind rewards U(-1, 1) except kind 0's U(0, 1) (so every level has a
    rewarding object); termination probabilities log-uniform [0.01, 1]; respawn probabilities log-uniform
    [0.001, 0.1]; max steps log-uniform [20, 750] rounded. Pure and jittable (vmap it for a batch)."""
    # One uniform draw for everything (each separate RNG call costs compile time, a second per call on 2 cores):
    # u[:169] orders the cells, the rest are the scalar and per-kind draws.
    u = jax.random.uniform(key, (NUM_CELLS + 4 + MAX_OBJECTS + 3 * NUM_KINDS,))
    cell_u, (size_u, walls_u, objects_u, steps_u) = u[:NUM_CELLS], u[NUM_CELLS : NUM_CELLS + 4]
    kind_u = u[NUM_CELLS + 4 : NUM_CELLS + 4 + MAX_OBJECTS]
    reward_u, terminate_u, respawn_u = u[NUM_CELLS + 4 + MAX_OBJECTS :].reshape(3, NUM_KINDS)

    def uniform_int(x: jax.Array, low: int, high: int) -> jax.Array:
        """x in [0, 1) -> an int uniform in low..high (inclusive)."""
        return jnp.minimum(low + jnp.floor(x * (high - low + 1)).astype(jnp.int32), high)

    def log_uniform(x: jax.Array, low: float, high: float) -> jax.Array:
        return jnp.exp(np.log(low) + x * (np.log(high) - np.log(low)))

    size = uniform_int(size_u, MIN_RANDOM_SIZE, MAX_RANDOM_SIZE)
    num_walls = jnp.minimum(uniform_int(walls_u, 0, MAX_RANDOM_WALLS), size * size - 1 - MAX_OBJECTS)
    outside = _outside_mask(size).reshape(-1)
    # A random order of the inside cells first (outside cells sort last): rank k = the k-th cell drawn.
    order = jnp.argsort(jnp.where(outside, 2.0, cell_u))
    rank = jnp.zeros(NUM_CELLS, jnp.int32).at[order].set(jnp.arange(NUM_CELLS, dtype=jnp.int32))
    wall_map = (outside | (rank < num_walls)).reshape(GRID_SIZE, GRID_SIZE)
    # Ranks num_walls (agent) and num_walls + 1 .. + 5 (objects) are distinct free inside cells.
    picked = order[num_walls + jnp.arange(1 + MAX_OBJECTS)]
    cells = jnp.stack(jnp.divmod(picked, GRID_SIZE), axis=-1).astype(jnp.int32)
    num_objects = uniform_int(objects_u, 1, MAX_OBJECTS)
    kinds = uniform_int(kind_u, 0, NUM_KINDS - 1).at[0].set(0)
    reward = (2.0 * reward_u - 1.0).at[0].set(reward_u[0])  # U(-1, 1); the first kind U(0, 1): positive
    max_steps = jnp.round(log_uniform(steps_u, *MAX_STEPS_RANGE)).astype(jnp.int32)
    return GridLevel(
        wall_map=wall_map,
        size=size,
        agent_pos=cells[0],
        object_pos=cells[1:],
        object_kind=kinds,
        object_active=jnp.arange(MAX_OBJECTS) < num_objects,
        kind_reward=reward.astype(jnp.float32),
        kind_terminate=jnp.clip(log_uniform(terminate_u, *P_TERMINATE_RANGE), *P_TERMINATE_RANGE).astype(jnp.float32),
        kind_respawn=jnp.clip(log_uniform(respawn_u, *P_RESPAWN_RANGE), *P_RESPAWN_RANGE).astype(jnp.float32),
        max_steps=jnp.clip(max_steps, *MAX_STEPS_RANGE),
    )


# ---------------------------------------------------------------------------------------------------------------
# LPG's tabular levels (this project's own layouts, written from the published description)

LPG_LEVELS = ("dense", "sparse", "long", "longer", "long_dense")


def lpg_level(name: str) -> GridLevel:
    """One of LPG's tabular grid worlds by name (`LPG_LEVELS`); an unknown name raises InvalidChoiceError.

    Sizes and episode limits are LPG's; the object layouts and kind parameters are this project's choice, made
    to match each level's character (no interior walls; kinds given as (reward, p_terminate, p_respawn)):

    - dense (11x11, 500 steps): agent in the centre (5, 5). Kind 0 (+1, 0, 0.05) x2 near two opposite corners,
      kind 1 (+1, 0, 0.1) x1 near a third corner, kind 2 (-1, 0, 0.5) x2 two cells above and below the agent:
      many rewards that come back often, nothing ends the episode, and penalties to step around.
    - sparse (13x13, 50 steps): one kind-0 object (+1, 1, 0) in the corner opposite the agent (24 moves away):
      a single distant reward that ends the episode, reachable only by going straight there.
    - long (11x11, 1000 steps): kind 0 (+1, 0, 0.01) x2 and kind 1 (-1, 0, 0.01) x2 in the four corners, agent
      in the centre: objects rarely come back and never end the episode, so credit spans long stretches.
    - longer (9x9, 2000 steps): agent at the top-left corner; kind 0 (+1, 0.01, 0.005) x2 at the bottom-right
      and top-right corners, kind 1 (-1, 0, 0.005) x2 at the middles of the top and left edges (in the way): even
      rarer respawns, and a small chance of ending the episode.
    - long_dense (11x11, 2000 steps): agent in the centre; kind 0 (+1, 0, 0.05) x4 on the corners of an inner
      square (rows and columns 2 and 8), kind 1 (-1, 0, 0.1) x1 two cells right of the agent: long episodes with
      frequently recurring rewards.
    """
    if name not in LPG_LEVELS:
        raise invalid_choice("LPG level", name, LPG_LEVELS)
    if name == "dense":
        return make_level(11, (5, 5), [(1, 1, 0), (9, 9, 0), (1, 9, 1), (3, 5, 2), (7, 5, 2)],
                          [1.0, 1.0, -1.0], [0.0, 0.0, 0.0], [0.05, 0.1, 0.5], 500)
    if name == "sparse":
        return make_level(13, (0, 0), [(12, 12, 0)], [1.0], [1.0], [0.0], 50)
    if name == "long":
        return make_level(11, (5, 5), [(0, 0, 0), (10, 10, 0), (0, 10, 1), (10, 0, 1)],
                          [1.0, -1.0], [0.0, 0.0], [0.01, 0.01], 1000)
    if name == "longer":
        return make_level(9, (0, 0), [(8, 8, 0), (0, 8, 0), (0, 4, 1), (4, 0, 1)],
                          [1.0, -1.0], [0.01, 0.0], [0.005, 0.005], 2000)
    return make_level(11, (5, 5), [(2, 2, 0), (2, 8, 0), (8, 2, 0), (8, 8, 0), (5, 7, 1)],
                      [1.0, -1.0], [0.0, 0.0], [0.05, 0.1], 2000)


def lpg_levels(names: tuple[str, ...] = LPG_LEVELS) -> GridLevel:
    """The named LPG levels stacked into one batched `GridLevel` (leading axis len(names))."""
    levels = [lpg_level(n) for n in names]
    return jax.tree.map(lambda *xs: jnp.stack(xs), *levels)


# ---------------------------------------------------------------------------------------------------------------
# The environment


class GridWorld:
    """The LPG / GROOVE grid world on the gymnax 1.0 protocol (rules and observation in the module docstring).

    `level`: the level of `default_params`, a `GridLevel`, an LPG level's name, or None for `lpg_level("dense")`.
    Other levels are passed through params, e.g. batched levels under `VecEnv(env, n, per_env_params=True)`.
    """

    binary_observations = True  # the position one-hot and the objects present (see envs.compact_observations)

    def __init__(self, level: GridLevel | str | None = None):
        if level is None or isinstance(level, str):
            level = lpg_level("dense" if level is None else level)
        self.level = level

    @property
    def name(self) -> str:
        return "GridWorld-v0"

    @property
    def num_actions(self) -> int:
        return NUM_ACTIONS

    @property
    def default_params(self) -> GridParams:
        return GridParams(level=self.level)

    def action_space(self, params: GridParams | None = None) -> spaces.Discrete:
        return spaces.Discrete(NUM_ACTIONS)

    def observation_space(self, params: GridParams | None = None) -> spaces.Box:
        return spaces.Box(0.0, 1.0, (OBS_SIZE,), jnp.float32)

    def get_obs(self, state: GridState, params: GridParams) -> jax.Array:
        """(174,) float32: one-hot agent cell (169) then the objects-present bits (5)."""
        cell = state.agent_pos[0] * GRID_SIZE + state.agent_pos[1]
        position = jax.nn.one_hot(cell, NUM_CELLS, dtype=jnp.float32)
        return jnp.concatenate([position, state.object_present.astype(jnp.float32)])

    def reset_env(self, key: jax.Array, params: GridParams) -> tuple[jax.Array, GridState]:
        """The params' level from its start; deterministic (`key` is unused), so a restart is exact."""
        level = params.level
        state = GridState(
            agent_pos=jnp.asarray(level.agent_pos, jnp.int32),
            object_pos=jnp.asarray(level.object_pos, jnp.int32),
            object_present=jnp.asarray(level.object_active, bool),
            time=jnp.zeros((), jnp.int32),
            terminated=jnp.zeros((), bool),
        )
        return self.get_obs(state, params), state

    def reset(self, key: jax.Array, params: GridParams | None = None) -> tuple[jax.Array, GridState]:
        return self.reset_env(key, self.default_params if params is None else params)

    def reset_to(self, key: jax.Array, level: GridLevel) -> tuple[jax.Array, GridState]:
        """Start `level`; pass `GridParams(level)` to `step` as well (the level lives in the params)."""
        return self.reset(key, GridParams(level=level))

    def step_env(
        self, key: jax.Array, state: GridState, action: jax.Array, params: GridParams
    ) -> tuple[jax.Array, GridState, jax.Array, jax.Array, dict]:
        """One step without the time limit or the auto-reset (gymnax's `step_env`)."""
        level = params.level
        # One draw for all the step's randomness (separate RNG calls are most of a step's cost on CPU).
        terminate_u, respawn_u, cell_u = jax.random.uniform(key, (3, MAX_OBJECTS))
        action = jnp.asarray(action, jnp.int32)
        valid = (action >= 0) & (action < NUM_ACTIONS)
        delta = jnp.where(valid, jnp.asarray(ACTION_VECTORS)[jnp.clip(action, 0, NUM_ACTIONS - 1)], 0)
        target = state.agent_pos + delta
        inside = jnp.all((target >= 0) & (target < GRID_SIZE))
        blocked = ~inside | level.wall_map[jnp.clip(target[0], 0, GRID_SIZE - 1), jnp.clip(target[1], 0, GRID_SIZE - 1)]
        agent_pos = jnp.where(blocked, state.agent_pos, target).astype(jnp.int32)

        # Collection: present objects under the agent pay, vanish, and may end the episode.
        on_agent = jnp.all(state.object_pos == agent_pos, axis=-1)
        collected = state.object_present & on_agent
        reward = jnp.sum(jnp.where(collected, level.kind_reward[level.object_kind], 0.0)).astype(jnp.float32)
        p_terminate = level.kind_terminate[level.object_kind]
        # uniform in [0, 1): p = 1 always ends, p = 0 never does.
        terminated = jnp.any(collected & (terminate_u < p_terminate))
        present = state.object_present & ~collected

        # Respawn: only objects absent before this step, so a collected object is gone for at least one step.
        absent_before = level.object_active & ~state.object_present
        wants = absent_before & (respawn_u < level.kind_respawn[level.object_kind])
        flat_agent = agent_pos[0] * GRID_SIZE + agent_pos[1]
        flat_objects = state.object_pos[:, 0] * GRID_SIZE + state.object_pos[:, 1]
        occupied = level.wall_map.reshape(-1).at[flat_agent].set(True)
        occupied = occupied.at[flat_objects].max(present)  # present objects block their cells
        # One object at a time, so two respawns in one step never share a cell.
        def respawn_one(occupied: jax.Array, xs: tuple) -> tuple[jax.Array, tuple]:
            wants_i, u_i, cell_i = xs
            free = ~occupied
            count = jnp.cumsum(free)  # count[c]: free cells up to and including c
            # The k-th free cell, k uniform in 0..n_free-1 (the min guards u * n rounding up to n).
            k = jnp.minimum(jnp.floor(u_i * count[-1]).astype(jnp.int32), count[-1] - 1)
            choice = jnp.argmax(count > k)
            does = wants_i & (count[-1] > 0)
            return occupied.at[choice].max(does), (does, jnp.where(does, choice, cell_i))

        _, (respawned, new_flat) = jax.lax.scan(respawn_one, occupied, (wants, cell_u, flat_objects), unroll=True)
        object_pos = jnp.stack(jnp.divmod(new_flat, GRID_SIZE), axis=-1).astype(jnp.int32)

        next_state = GridState(
            agent_pos=agent_pos,
            object_pos=object_pos,
            object_present=present | respawned,
            time=state.time + 1,
            terminated=terminated,
        )
        return self.get_obs(next_state, params), next_state, reward, terminated, {}

    def is_truncated(self, state: GridState, params: GridParams) -> jax.Array:
        """The level's episode limit is reached and the last step did not terminate."""
        return (state.time >= params.level.max_steps) & ~state.terminated

    def step(
        self, key: jax.Array, state: GridState, action: jax.Array, params: GridParams | None = None
    ) -> tuple[jax.Array, GridState, jax.Array, jax.Array, jax.Array, dict]:
        params = self.default_params if params is None else params
        # The auto-reset restarts the same level (the params'); the curriculum changes levels through params.
        return step_with_auto_reset(self, key, state, action, params, self.reset_env)


# ---------------------------------------------------------------------------------------------------------------
# Rendering (NumPy only)

_COLOURS = {
    "free": (24, 24, 24),
    "wall": (140, 140, 140),
    "outside": (70, 70, 70),  # cells beyond the level's size
    "agent": (230, 50, 40),
    "grid": (0, 0, 0),
}
# One colour per object kind; kind 0 green (the rewarding one in random levels).
KIND_COLOURS = np.array([(40, 200, 70), (60, 120, 240), (240, 200, 40), (200, 60, 220), (40, 210, 210)], np.uint8)


def render_level(level: GridLevel, state: GridState | None = None, tile: int = 8) -> np.ndarray:
    """RGB picture of one (unbatched) level: (15 * tile, 15 * tile, 3) uint8, the 13x13 array inside a one-cell
    border. Walls light grey, cells beyond the level's size dark grey, objects as squares coloured by kind
    (`KIND_COLOURS`), the agent a red disc. With `state`, the agent and the present objects where the state has
    them; otherwise the level's start."""
    size = GRID_SIZE + 2
    walls = np.pad(np.asarray(level.wall_map, bool), 1, constant_values=True)
    outside = np.pad(np.asarray(_outside_mask(int(level.size))), 1, constant_values=True)
    cells = np.empty((size, size, 3), np.uint8)
    cells[:] = _COLOURS["free"]
    cells[walls] = _COLOURS["wall"]
    cells[outside] = _COLOURS["outside"]
    image = np.repeat(np.repeat(cells, tile, axis=0), tile, axis=1)
    if tile >= 4:  # thin grid lines so single cells stay countable
        image[::tile, :] = _COLOURS["grid"]
        image[:, ::tile] = _COLOURS["grid"]
    if state is None:
        agent, objects, present = np.asarray(level.agent_pos), np.asarray(level.object_pos), np.asarray(level.object_active)
    else:
        agent, objects, present = np.asarray(state.agent_pos), np.asarray(state.object_pos), np.asarray(state.object_present)
    kinds = np.asarray(level.object_kind)
    inset = max(1, tile // 5)
    for (r, c), k, here in zip(objects, kinds, present & np.asarray(level.object_active)):
        if here:
            image[(r + 1) * tile + inset : (r + 2) * tile - inset, (c + 1) * tile + inset : (c + 2) * tile - inset] = KIND_COLOURS[k % NUM_KINDS]
    centres = (np.arange(tile) + 0.5) / tile
    disc = (centres[:, None] - 0.5) ** 2 + (centres[None, :] - 0.5) ** 2 <= 0.35**2
    r0, c0 = (int(agent[0]) + 1) * tile, (int(agent[1]) + 1) * tile
    image[r0 : r0 + tile, c0 : c0 + tile][disc] = _COLOURS["agent"]
    return image
