"""Validation: a search's candidates re-scored on one fixed set of seeds that no generation used, and the pick.

Every generation draws new inner seeds, so the highest training fitness ever seen is biased upwards: the member
that holds it is partly the one whose seeds were luckiest. At the end of a search every candidate (the pool of
`candidates.py`, plus the final search mean) is trained again on the same validation seeds, through each
environment's own evaluator (the very program that scored the generations), its final returns normalised like
the fitness (`baselines.normalise`: 0 = untrained policy, 1 = PPO-clip under the same inner settings) and averaged
over environments. The candidate with the highest mean validation score is the search's result.

Validation seeds are the integers VALIDATION_SEED_OFFSET + i (`jax.random.key(seed)`, as `jaxrl train --seed`
uses them): a range apart from the baselines' (`baselines.BASELINE_SEED_OFFSET` + i) and from the generations'
keys, which are split from the meta seed's key. They do not depend on the meta seed, so candidates of different
searches with the same inner settings are scored on the same seeds.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxrl import results
from jaxrl.meta.baselines import normalise
from jaxrl.meta.candidates import with_mean

if TYPE_CHECKING:
    from jaxrl.meta.search import Task

VALIDATION_SEED_OFFSET = 2_000_000
DEFAULT_SEEDS = 8


def validation_seeds(num_seeds: int) -> list[int]:
    """The validation seeds of a search: VALIDATION_SEED_OFFSET, VALIDATION_SEED_OFFSET + 1, ..."""
    return list(range(VALIDATION_SEED_OFFSET, VALIDATION_SEED_OFFSET + num_seeds))


@dataclass
class Validation:
    """The candidate table (one row per candidate, pool members by training fitness first, the search mean last),
    the index of the selected row, the selected candidate itself and the seeds it was chosen on."""

    seeds: list[int]
    rows: list[dict[str, Any]]
    selected: int
    member: Any


def run_candidates(evaluator: Any, candidates: Any, keys: jax.Array) -> np.ndarray:
    """Final returns (C, V) of C stacked candidates x V keys through a population evaluator built for P members x S
    seeds (`population.PopulationEvaluator`; its compiled program is reused, none is added): candidates go in groups
    of P and keys in groups of S, the last groups padded with the first candidate / key, whose runs are dropped.

    A run's return depends only on its member and key, so the result does not depend on P or S."""
    size, seeds = evaluator.population_size, evaluator.num_seeds
    num_candidates, num_keys = jax.tree.leaves(candidates)[0].shape[0], keys.shape[0]
    out = np.full((num_candidates, num_keys), np.nan)
    for v0 in range(0, num_keys, seeds):
        key_idx = np.arange(v0, v0 + seeds)
        chunk_keys = keys[np.where(key_idx < num_keys, key_idx, 0)]
        n_v = min(seeds, num_keys - v0)
        for c0 in range(0, num_candidates, size):
            idx = np.arange(c0, c0 + size)
            group = jax.tree.map(lambda x: x[np.where(idx < num_candidates, idx, 0)], candidates)
            n_c = min(size, num_candidates - c0)
            out[c0:c0 + n_c, v0:v0 + n_v] = np.asarray(evaluator(group, chunk_keys))[:n_c, :n_v]
    return out


def _mean(x: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(x, axis=axis)


def _finite_or_none(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def validate(
    tasks: Sequence[Task],
    pool: dict[str, Any],
    mean: Any,
    last_generation: int,
    seeds: Sequence[int],
    describe: Callable[[Any], dict] | None = None,
) -> Validation:
    """Score every candidate (the pool's members and the search mean) on `seeds` in every task's environment and
    select the one with the highest mean normalised final return, averaged over environments (ties: the earlier
    row). Each row gains validation_score, its 95% percentile bootstrap interval over the seeds (an environment-
    averaged score per seed, resampled) and validation_per_env; with `describe`, also "hparams"."""
    candidates, rows = with_mean(pool, mean, last_generation)
    keys = jax.vmap(jax.random.key)(jnp.asarray(list(seeds)))  # as `jaxrl train --seed` makes them
    per_env = {task.env_id: normalise(run_candidates(task.evaluator, candidates, keys), task.baseline) for task in tasks}
    per_seed = np.mean(np.stack(list(per_env.values())), axis=0)  # (C, V): environments averaged, seed by seed
    scores = per_seed.mean(axis=1)
    low, high = results.bootstrap_ci(per_seed, statistic=_mean)
    for i, row in enumerate(rows):
        row.update(
            validation_score=_finite_or_none(scores[i]), validation_ci_low=_finite_or_none(low[i]), validation_ci_high=_finite_or_none(high[i]),
            validation_per_env={env_id: _finite_or_none(values[i].mean()) for env_id, values in per_env.items()},
        )
        if describe is not None:
            row["hparams"] = describe(jax.tree.map(lambda x: x[i], candidates))
    finite = np.isfinite(scores)
    if not finite.all():
        print(f"validation: candidates {np.flatnonzero(~finite).tolist()} returned NaN/Inf; they cannot be selected", file=sys.stderr)
    selected = int(np.argmax(np.where(finite, scores, -np.inf))) if finite.any() else 0
    return Validation(list(seeds), rows, selected, jax.tree.map(lambda x: x[selected], candidates))
