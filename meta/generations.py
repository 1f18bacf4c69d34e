"""The host loop every outer search shares (`search.search` for discover / tune, `lpg.MetaLPG.run`): generations
[start, total) of a `step(state, g) -> (state, entry)`, checkpoints of the state and the history every
`checkpoint_every` generations and at the last one, resume from them, and a clean stop on SIGINT / SIGTERM after
the generation in flight (checkpointed, status "interrupted").

A step must draw generation g's randomness from g alone (e.g. `fold_in(key, g)`): then a run resumed after
generation g continues exactly as the uninterrupted run would have.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jaxrl import results
from jaxrl.checkpoints import StopFlag, restore_tree, save_tree
from jaxrl.envs.errors import InvalidChoiceError


@dataclass
class Generations:
    state: Any
    history: list[dict[str, Any]]  # one entry per generation done, this run's and the resumed ones
    status: str  # finished | interrupted
    start: int  # the first generation this call ran


def resume_point(ckpt: Path, abstract_state: Any, resume: bool) -> tuple[int, list[dict[str, Any]], Any] | None:
    """(next generation, history, state) from the checkpoint in `ckpt`, or None to start afresh: when not resuming,
    or when there is no checkpoint yet (said on stderr: an interrupted first generation leaves none)."""
    if not resume:
        return None
    if not (ckpt / "state.json").exists():
        print(f"no checkpoint in {str(ckpt)!r} yet: starting from generation 0", file=sys.stderr)
        return None
    try:
        position = json.loads((ckpt / "state.json").read_text())
        start, history = int(position["generation"]), list(position["history"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise InvalidChoiceError(f"no usable meta checkpoint in {str(ckpt)!r}: {type(err).__name__}") from None
    return start, history, restore_tree(ckpt / "tree", abstract_state)


def run_generations(
    ckpt: Path,
    init_state: Callable[[], Any],
    abstract_state: Any,
    step: Callable[[Any, int], tuple[Any, dict[str, Any]]],
    generations: int,
    *,
    checkpoint_every: int = 10,
    resume: bool = False,
    compile_seconds: Callable[[], float] = lambda: 0.0,
    on_entry: Callable[[dict[str, Any]], None] = lambda entry: None,
) -> Generations:
    """Generations [start, generations); each history entry gains `time_s`, the generation's wall time less what
    `compile_seconds()` (a running total) grew by during it. The last checkpoint is written after the last
    generation too, so `--resume --generations MORE` extends a finished run."""
    point = resume_point(ckpt, abstract_state, resume)
    start, history, state = point if point is not None else (0, [], init_state())

    def checkpoint(generation: int) -> None:
        save_tree(ckpt / "tree", state)
        results.atomic_write_json(ckpt / "state.json", {"generation": generation, "history": history})

    status, stop = "finished", StopFlag("generation")
    with stop.installed():
        for g in range(start, generations):
            t0, compiled = time.perf_counter(), compile_seconds()
            state, entry = step(state, g)
            entry["time_s"] = time.perf_counter() - t0 - (compile_seconds() - compiled)
            history.append(entry)
            on_entry(entry)
            last = g == generations - 1
            if last or stop.signal is not None or (g + 1) % checkpoint_every == 0:
                checkpoint(g + 1)
            if stop.signal is not None and not last:
                status = "interrupted"
                break
    return Generations(state, history, status, start)
