"""ACCEL level edits (Parker-Holder et al. 2022, "Evolving Curricula with Regret-Based Environment Design").

ACCEL replays a high-scoring level, applies a few small random edits, and offers the result to the PLR buffer.
For the maze an edit is one of, equally likely:

- flip a wall cell (wall -> free or free -> wall) at a random cell other than the agent's and the goal's;
- move the goal to a random free cell other than the agent's and its own;
- move the agent (keeping its direction) to a random free cell other than the goal's and its own.

So an edit never puts a wall on the agent or the goal, and a structurally valid level (`level_is_valid`) stays
valid. Whether the goal stays reachable is not enforced: `shortest_path_length` reports it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxrl.envs.maze import GRID_SIZE, NUM_CELLS, MazeLevel

FLIP_WALL, MOVE_GOAL, MOVE_AGENT = 0, 1, 2
NUM_EDIT_KINDS = 3


def _cell_mask(pos: jax.Array) -> jax.Array:
    """(169,) bool, true at the flat index of `pos` (2,)."""
    return jnp.arange(NUM_CELLS) == pos[0] * GRID_SIZE + pos[1]


def _random_cell(key: jax.Array, allowed: jax.Array) -> tuple[jax.Array, jax.Array]:
    """A uniform cell among `allowed` (169,) bool, as a flat index, and whether any cell was allowed.
    Gumbel-max over masked logits: uniform and cheap under jit."""
    noise = jax.random.gumbel(key, (NUM_CELLS,))
    cell = jnp.argmax(jnp.where(allowed, noise, -jnp.inf))
    return cell, jnp.any(allowed)


def _edit_once(key: jax.Array, level: MazeLevel) -> MazeLevel:
    kind_key, cell_key = jax.random.split(key)
    kind = jax.random.randint(kind_key, (), 0, NUM_EDIT_KINDS)
    walls = level.wall_map.reshape(-1)
    agent, goal = _cell_mask(level.agent_pos), _cell_mask(level.goal_pos)

    # Candidate cells per kind; the agent and goal cells are excluded so no wall lands on them, and a move always
    # goes to a different cell so every edit changes the level.
    allowed = jnp.select(
        [kind == FLIP_WALL, kind == MOVE_GOAL],
        [~agent & ~goal, ~walls & ~agent & ~goal],
        ~walls & ~goal & ~agent,
    )
    cell, ok = _random_cell(cell_key, allowed)
    pos = jnp.stack(jnp.divmod(cell, GRID_SIZE)).astype(jnp.int32)

    # No allowed cell (a maze full of walls): the edit does nothing.
    new_walls = walls.at[cell].set(jnp.where(ok & (kind == FLIP_WALL), ~walls[cell], walls[cell]))
    return level.replace(
        wall_map=new_walls.reshape(GRID_SIZE, GRID_SIZE),
        goal_pos=jnp.where(ok & (kind == MOVE_GOAL), pos, level.goal_pos),
        agent_pos=jnp.where(ok & (kind == MOVE_AGENT), pos, level.agent_pos),
    )


def edit_maze(key: jax.Array, level: MazeLevel, num_edits: int | jax.Array) -> MazeLevel:
    """Apply `num_edits` random ACCEL edits to one unbatched maze level. Pure and jittable; `num_edits` may be
    traced (e.g. drawn per level up to 20, as ACCEL's maze setting); vmap over keys and levels for a batch."""

    def body(i, lvl):
        # One key per edit index, so the i-th edit is the same whatever num_edits is.
        return _edit_once(jax.random.fold_in(key, i), lvl)

    return jax.lax.fori_loop(0, jnp.asarray(num_edits, jnp.int32), body, level)
