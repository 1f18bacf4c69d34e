"""A Prioritized Level Replay (PLR) level buffer as pure, jittable functions over a fixed-capacity pytree.

The buffer state (`LevelBuffer`) is an ordinary pytree, so it lives in a training carry, goes through `jax.jit`,
`lax.scan` and `vmap` over seeds, and is checkpointed like parameters. It is generic over the level type: any
pytree of arrays (e.g. `jaxrl.envs.maze.MazeLevel`) works; the buffer stores it with a leading capacity axis.

Replay distribution (Jiang et al. 2021, "Prioritized Level Replay"):

    P_replay = (1 - staleness_coef) * P_S + staleness_coef * P_C

    P_S(i) = h(S_i) / sum_{j filled} h(S_j)
        rank:  h(S_i) = (1 / rank(S_i)) ** (1 / temperature)      rank 1 = highest score
        topk:  h(S_i) = 1 if rank(S_i) <= top_k else 0
    P_C(i) = (step - last_sampled_i) / sum_{j filled} (step - last_sampled_j)

Both are over filled entries only; empty entries get weight 0. The temperature is a power 1/T (a known bug of
anchor code divided by T instead), and no division can be by zero: rank 1 always has h = 1, and when every
filled entry is equally fresh (sum of staleness 0) P_C is uniform over the filled entries.

Time: `step` counts buffer updates: each `insert` or `update_scores` call advances it by one, and every entry that
call touches gets `last_sampled = step` (it was just played). Staleness therefore grows for levels not replayed.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxrl.envs.errors import InvalidChoiceError, invalid_choice

PRIORITIZATIONS = ("rank", "topk")


@dataclasses.dataclass(frozen=True)
class PLRConfig:
    """Static PLR settings (hashable, so a jit static argument). Defaults follow the JaxUED/minimax maze
    settings in shared/notes/science.md: buffer 4000, replay 0.8, staleness 0.3, rank temperature 0.3,
    minimum fill 0.5."""

    capacity: int = 4000
    replay_prob: float = 0.8
    prioritization: str = "rank"  # "rank" | "topk"
    temperature: float = 0.3  # rank only: h = (1 / rank) ** (1 / temperature)
    top_k: int = 1  # topk only: the k highest-scoring levels share the score weight
    staleness_coef: float = 0.3
    min_fill: float = 0.5  # replay only once at least min_fill * capacity levels are held

    def __post_init__(self) -> None:
        if self.prioritization not in PRIORITIZATIONS:
            raise invalid_choice("prioritization", self.prioritization, PRIORITIZATIONS)
        _check_capacity(self.capacity)
        if not (isinstance(self.temperature, numbers.Real) and self.temperature > 0):
            raise InvalidChoiceError(f"invalid temperature {self.temperature!r}; choices: a number > 0")
        if not (_is_int(self.top_k) and self.top_k >= 1):
            raise InvalidChoiceError(f"invalid top_k {self.top_k!r}; choices: an integer >= 1")
        for name in ("replay_prob", "staleness_coef", "min_fill"):
            value = getattr(self, name)
            if not (isinstance(value, numbers.Real) and 0.0 <= value <= 1.0):
                raise InvalidChoiceError(f"invalid {name} {value!r}; choices: a number in [0, 1]")

    @property
    def min_levels(self) -> int:
        """Levels needed before replay may happen (at least one, so an empty buffer is never sampled)."""
        # The tolerance keeps binary rounding from asking for one level too many (0.07 * 100 = 7.000000000000001).
        return max(1, math.ceil(self.min_fill * self.capacity - 1e-9))


def _is_int(value: Any) -> bool:
    """A Python or numpy integer (not a bool, not a float such as 4000.0): shapes need exact integers."""
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def _check_capacity(capacity: Any) -> None:
    if not (_is_int(capacity) and capacity >= 1):
        raise InvalidChoiceError(f"invalid capacity {capacity!r}; choices: an integer >= 1")


@struct.dataclass
class LevelBuffer:
    """PLR buffer state; C = capacity."""

    levels: Any  # level pytree, every leaf with a leading (C,) axis
    scores: jax.Array  # (C,) float32
    last_sampled: jax.Array  # (C,) int32: `step` when the entry was last inserted / updated
    filled: jax.Array  # (C,) bool
    step: jax.Array  # () int32: number of insert / update_scores calls so far

    @property
    def capacity(self) -> int:
        return self.scores.shape[-1]


def init_buffer(example_level: Any, capacity: int) -> LevelBuffer:
    """An empty buffer for levels shaped like `example_level` (one unbatched level pytree)."""
    _check_capacity(capacity)
    capacity = int(capacity)
    levels = jax.tree.map(lambda x: jnp.zeros((capacity,) + jnp.shape(x), jnp.asarray(x).dtype), example_level)
    return LevelBuffer(
        levels=levels,
        scores=jnp.zeros(capacity, jnp.float32),
        last_sampled=jnp.zeros(capacity, jnp.int32),
        filled=jnp.zeros(capacity, bool),
        step=jnp.zeros((), jnp.int32),
    )


def size(buffer: LevelBuffer) -> jax.Array:
    """() int32: number of filled entries."""
    return jnp.sum(buffer.filled, dtype=jnp.int32)


def find_duplicates(buffer: LevelBuffer, level: Any) -> jax.Array:
    """(C,) bool: filled entries exactly equal (every leaf, every element) to one unbatched `level`."""
    leaf_equal = jax.tree.map(
        lambda stored, new: jnp.all((stored == new).reshape(stored.shape[0], -1), axis=1), buffer.levels, level
    )
    return buffer.filled & jax.tree.reduce(jnp.logical_and, leaf_equal, jnp.ones_like(buffer.filled))


def _insert_one(buffer: LevelBuffer, level: Any, score: jax.Array) -> LevelBuffer:
    """Insert one level at the buffer's current step (the caller has advanced it)."""
    duplicate = find_duplicates(buffer, level)
    is_duplicate = jnp.any(duplicate)
    full = jnp.all(buffer.filled)
    # Where a new level would go: the first empty slot, or (when full) the lowest-scoring entry.
    lowest = jnp.argmin(jnp.where(buffer.filled, buffer.scores, jnp.inf))
    target = jnp.where(is_duplicate, jnp.argmax(duplicate), jnp.where(full, lowest, jnp.argmin(buffer.filled)))
    # A duplicate always updates its entry (no second copy); a new level needs a free slot or a score strictly
    # above the lowest one.
    accept = is_duplicate | ~full | (score > buffer.scores[lowest])
    write_level = accept & ~is_duplicate

    levels = jax.tree.map(
        lambda stored, new: stored.at[target].set(jnp.where(write_level, new, stored[target])), buffer.levels, level
    )
    return buffer.replace(
        levels=levels,
        scores=buffer.scores.at[target].set(jnp.where(accept, score, buffer.scores[target])),
        last_sampled=buffer.last_sampled.at[target].set(jnp.where(accept, buffer.step, buffer.last_sampled[target])),
        filled=buffer.filled.at[target].set(buffer.filled[target] | accept),
    )


def insert(buffer: LevelBuffer, levels: Any, scores: jax.Array) -> LevelBuffer:
    """Insert a batch of B levels (every leaf with a leading (B,) axis) with scores (B,).

    Levels go in one after another (so duplicates within the batch are caught too): a level equal to a stored one
    updates that entry's score and freshness; otherwise it fills an empty slot, or, when the buffer is full,
    replaces the lowest-scoring entry only if its score is strictly higher. Advances `step` by one.
    """
    buffer = buffer.replace(step=buffer.step + 1)
    scores = jnp.asarray(scores, jnp.float32)

    def body(buf, item):
        level, score = item
        return _insert_one(buf, level, score), None

    buffer, _ = jax.lax.scan(body, buffer, (levels, scores))
    return buffer


def update_scores(buffer: LevelBuffer, indices: jax.Array, scores: jax.Array) -> LevelBuffer:
    """Set the scores (B,) of the replayed entries `indices` (B,) and mark them fresh (staleness 0).

    Advances `step` by one first, so every entry not replayed grows one step staler. When an index repeats, its
    last score in the batch wins (made explicit: XLA leaves the order of a scatter with repeated indices open).
    """
    step = buffer.step + 1
    indices = jnp.asarray(indices, jnp.int32)
    position = jnp.arange(indices.shape[0])
    overwritten_later = jnp.any((indices[None, :] == indices[:, None]) & (position[None, :] > position[:, None]), axis=1)
    # Earlier writes of a repeated index are sent out of range and dropped.
    targets = jnp.where(overwritten_later, buffer.capacity, indices)
    return buffer.replace(
        scores=buffer.scores.at[targets].set(jnp.asarray(scores, jnp.float32), mode="drop"),
        last_sampled=buffer.last_sampled.at[targets].set(step, mode="drop"),
        step=step,
    )


def _normalise(weights: jax.Array, filled: jax.Array) -> jax.Array:
    """Weights restricted to filled entries, summing to 1; uniform over filled entries when they sum to 0."""
    weights = jnp.where(filled, weights, 0.0)
    total = jnp.sum(weights)
    uniform = filled / jnp.maximum(jnp.sum(filled), 1)
    return jnp.where(total > 0, weights / jnp.where(total > 0, total, 1.0), uniform)


def ranks(buffer: LevelBuffer) -> jax.Array:
    """(C,) int32: rank of every filled entry by score, 1 = highest (ties by index); empty entries rank after."""
    masked = jnp.where(buffer.filled, buffer.scores, -jnp.inf)
    order = jnp.argsort(-masked, stable=True)
    return jnp.zeros(buffer.capacity, jnp.int32).at[order].set(jnp.arange(1, buffer.capacity + 1, dtype=jnp.int32))


def score_weights(buffer: LevelBuffer, config: PLRConfig) -> jax.Array:
    """(C,) P_S: rank ((1/rank)**(1/T)) or top-k weights, normalised over filled entries; 0 on empty ones."""
    rank = ranks(buffer).astype(jnp.float32)
    if config.prioritization == "rank":
        # A power 1/T, not a division by T; rank >= 1 so the best entry has h = 1 and the sum is never 0.
        h = (1.0 / rank) ** (1.0 / config.temperature)
    else:
        h = (rank <= config.top_k).astype(jnp.float32)
    return _normalise(h, buffer.filled)


def staleness_weights(buffer: LevelBuffer) -> jax.Array:
    """(C,) P_C: (step - last_sampled) / sum over filled entries; uniform over filled entries when all are fresh."""
    staleness = (buffer.step - buffer.last_sampled).astype(jnp.float32)
    return _normalise(staleness, buffer.filled)


def replay_weights(buffer: LevelBuffer, config: PLRConfig) -> jax.Array:
    """(C,) replay distribution (1 - c) * P_S + c * P_C, c = staleness_coef; sums to 1 over filled entries
    (all zeros on an empty buffer)."""
    c = config.staleness_coef
    return (1.0 - c) * score_weights(buffer, config) + c * staleness_weights(buffer)


def sample_replay(buffer: LevelBuffer, key: jax.Array, n: int, config: PLRConfig) -> jax.Array:
    """(n,) int32 buffer indices drawn with replacement from `replay_weights`. The buffer must hold a level
    (`should_replay` guarantees it); pass the indices to `update_scores` after the replay, which is what
    refreshes their staleness."""
    weights = replay_weights(buffer, config)
    return jax.random.choice(key, buffer.capacity, (n,), replace=True, p=weights).astype(jnp.int32)


def replay_levels(buffer: LevelBuffer, indices: jax.Array) -> Any:
    """The levels at `indices` (B,): a level pytree with a leading (B,) axis."""
    return jax.tree.map(lambda x: x[indices], buffer.levels)


def should_replay(buffer: LevelBuffer, key: jax.Array, config: PLRConfig) -> jax.Array:
    """() bool: replay with probability replay_prob, but only once the buffer holds at least
    max(1, ceil(min_fill * capacity)) levels (before that, always explore new levels)."""
    enough = size(buffer) >= config.min_levels
    return enough & (jax.random.uniform(key) < config.replay_prob)
