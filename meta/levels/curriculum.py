"""Level samplers for unsupervised environment design behind one interface: domain randomisation (DR), Prioritized
Level Replay (PLR, robust by default) and ACCEL.

A `Curriculum` is static (the method, the PLR settings, how to make and edit a level); its state
(`CurriculumState`: the level buffer and the last replayed batch) is a pytree that lives in the training carry.
Each update of a UED loop is:

    proposal = curriculum.propose(state, key)            # the levels to play, and where they came from
    ... the student plays proposal.levels; scores (B,) from its rollout (jaxrl.meta.levels.scores) ...
    learn = curriculum.trains_on(proposal)               # take a gradient step on this rollout?
    state = curriculum.observe(state, proposal, scores)  # levels and scores into the buffer

Where the levels come from (`proposal.kind`):

- NEW: B fresh levels of the generator. DR only ever proposes these (and always trains on them).
- REPLAY: B levels drawn from the buffer with PLR's replay distribution (meta.levels.buffer), once the buffer
  holds min_fill * capacity levels, with probability replay_prob (Jiang et al. 2021).
- EDIT (ACCEL only, Parker-Holder et al. 2022): right after a REPLAY update, the replayed levels each get 1 to
  max_edits random edits, and the results are offered to the buffer.

Robust PLR (Jiang et al. 2021b, "Replay-Guided Adversarial Environment Design") takes gradient steps only on
replayed levels: NEW and EDIT rollouts only score levels. `trains_on` says so for the whole update, so no
gradient ever comes from a new level, not even after its first episode (a bug of some anchor code, which
trained on new levels once their first episode had ended). `robust=False` gives the original PLR, which also
trains on new levels.

The candidates of `propose` are all built and one is selected (cheap next to a rollout). Whether to learn is a
`lax.cond` in the UED agent: a single run skips the learning step on NEW and EDIT rollouts, while under a vmap over
runs the cond becomes a select and every update computes a learning step (discarded where not wanted).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from jaxrl.envs.errors import InvalidChoiceError, invalid_choice
from jaxrl.meta.levels.buffer import LevelBuffer, PLRConfig, init_buffer, insert, replay_levels, sample_replay, should_replay, update_scores

METHODS = ("dr", "plr", "accel")
NEW, REPLAY, EDIT = 0, 1, 2
KIND_NAMES = ("new", "replay", "edit")


@struct.dataclass
class CurriculumState:
    buffer: LevelBuffer  # PLR's level buffer (capacity 1 and unused for DR)
    last_kind: jax.Array  # () int32: NEW, REPLAY or EDIT, what the previous update played
    last_levels: Any  # the previous update's levels, leading axis B (ACCEL edits them after a replay)


class Proposal(struct.PyTreeNode):
    levels: Any  # level pytree, leading axis B
    kind: jax.Array  # () int32: NEW, REPLAY or EDIT
    indices: jax.Array  # (B,) int32: buffer entries of replayed levels (meaningful when kind == REPLAY)


@dataclasses.dataclass(frozen=True)
class Curriculum:
    """method: dr | plr | accel; new_level(key) -> one level; edit_level(key, level, num_edits) -> one level
    (ACCEL); batch_size: levels per proposal (the student's number of environments)."""

    method: str
    new_level: Callable[[jax.Array], Any]
    batch_size: int
    plr: PLRConfig = PLRConfig()
    edit_level: Callable[[jax.Array, Any, jax.Array], Any] | None = None
    max_edits: int = 20  # ACCEL: each edited level gets a uniform number of edits in 1..max_edits
    robust: bool = True  # train only on replayed levels (robust PLR); False: also on new and edited levels

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise invalid_choice("UED method", self.method, METHODS)
        if self.method != "dr" and self.plr.capacity < self.batch_size:
            raise InvalidChoiceError(
                f"buffer capacity {self.plr.capacity} is smaller than the batch of {self.batch_size} levels per update; "
                f"choices: capacity >= {self.batch_size}"
            )
        if self.method == "accel":
            if self.edit_level is None:
                raise InvalidChoiceError("ACCEL needs edit_level (a level family with edits)")
            if self.max_edits < 1:
                raise InvalidChoiceError(f"invalid max_edits {self.max_edits!r}; choices: an integer >= 1")

    def init(self, key: jax.Array) -> CurriculumState:
        example = self.new_level(key)
        levels = jax.tree.map(lambda x: jnp.broadcast_to(x, (self.batch_size,) + x.shape), example)
        capacity = 1 if self.method == "dr" else self.plr.capacity
        return CurriculumState(init_buffer(example, capacity), jnp.int32(NEW), levels)

    def propose(self, state: CurriculumState, key: jax.Array) -> Proposal:
        """The next batch of levels. NEW, REPLAY and EDIT candidates are all built and one is selected."""
        new_key, replay_key, sample_key, edit_key = jax.random.split(key, 4)
        new = jax.vmap(self.new_level)(jax.random.split(new_key, self.batch_size))
        no_indices = jnp.zeros((self.batch_size,), jnp.int32)
        if self.method == "dr":
            return Proposal(new, jnp.int32(NEW), no_indices)

        indices = sample_replay_or_zeros(state.buffer, sample_key, self.batch_size, self.plr)
        replayed = replay_levels(state.buffer, indices)
        kind = jnp.where(should_replay(state.buffer, replay_key, self.plr), REPLAY, NEW)
        levels = _select(kind == REPLAY, replayed, new)
        if self.method == "accel":
            kind = jnp.where(state.last_kind == REPLAY, EDIT, kind)
            levels = _select(kind == EDIT, self.edit(state.last_levels, edit_key), levels)
        return Proposal(levels, kind.astype(jnp.int32), indices)

    def edit(self, levels: Any, key: jax.Array) -> Any:
        """ACCEL's mutation: each level of the batch gets its own uniform number of edits in 1..max_edits."""
        count_key, edit_key = jax.random.split(key)
        counts = jax.random.randint(count_key, (self.batch_size,), 1, self.max_edits + 1)
        return jax.vmap(self.edit_level)(jax.random.split(edit_key, self.batch_size), levels, counts)

    def trains_on(self, proposal: Proposal) -> jax.Array:
        """() bool: whether the student takes gradient steps on this proposal's rollout."""
        if self.method == "dr" or not self.robust:
            return jnp.bool_(True)
        return proposal.kind == REPLAY

    def observe(self, state: CurriculumState, proposal: Proposal, scores: jax.Array) -> CurriculumState:
        """Scores (B,) of the proposal's levels from the student's rollout: replayed entries get their new scores,
        new and edited levels are offered to the buffer."""
        if self.method == "dr":
            return state.replace(last_kind=proposal.kind, last_levels=proposal.levels)
        buffer = jax.lax.cond(
            proposal.kind == REPLAY,
            lambda b: update_scores(b, proposal.indices, scores),
            lambda b: insert(b, proposal.levels, scores),
            state.buffer,
        )
        return CurriculumState(buffer, proposal.kind, proposal.levels)


def sample_replay_or_zeros(buffer: LevelBuffer, key: jax.Array, n: int, config: PLRConfig) -> jax.Array:
    """`sample_replay` where the buffer holds a level; zeros (never used: no replay then) on an empty buffer, whose
    replay weights are all 0 and cannot be sampled from."""
    safe = buffer.replace(filled=buffer.filled.at[0].set(buffer.filled[0] | ~jnp.any(buffer.filled)))
    return sample_replay(safe, key, n, config)


def _select(pred: jax.Array, on_true: Any, on_false: Any) -> Any:
    return jax.tree.map(lambda a, b: jnp.where(pred, a, b), on_true, on_false)
