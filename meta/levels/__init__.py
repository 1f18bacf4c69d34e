"""jaxrl.meta.levels: level curation for unsupervised environment design (UED).

- `buffer`: the Prioritized Level Replay buffer (rank / top-k prioritisation with temperature, staleness mixing,
  minimum fill, duplicate check) as pure functions over a pytree state that lives in the training carry.
- `scores`: pluggable level scores (positive value loss, MaxMC, learnability).
- `edits`: ACCEL's random edits of maze levels.
"""

from jaxrl.meta.levels.buffer import (
    LevelBuffer,
    PLRConfig,
    init_buffer,
    insert,
    replay_levels,
    replay_weights,
    sample_replay,
    should_replay,
    size,
    update_scores,
)
from jaxrl.meta.levels.edits import edit_maze
from jaxrl.meta.levels.scores import SCORE_FUNCTIONS, get_score_function, learnability, max_mc, positive_value_loss

__all__ = [
    "LevelBuffer",
    "PLRConfig",
    "init_buffer",
    "insert",
    "update_scores",
    "sample_replay",
    "replay_levels",
    "replay_weights",
    "should_replay",
    "size",
    "edit_maze",
    "SCORE_FUNCTIONS",
    "get_score_function",
    "positive_value_loss",
    "max_mc",
    "learnability",
]
