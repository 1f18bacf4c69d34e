"""Shared set-up of the meta commands: inner agents from flat settings, the per-environment tasks with their
baselines, the search followed by the validation of its candidates, the request saved beside the results
(`meta.json`, what `--resume` rebuilds from) and the summary."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax

from jaxrl import results
from jaxrl.agents import ALGORITHMS
from jaxrl.config import apply_overrides, build
from jaxrl.envs.errors import invalid_choice
from jaxrl.meta import baselines, candidates, validation
from jaxrl.meta.es import make_es
from jaxrl.meta.population import PopulationEvaluator
from jaxrl.meta.search import SearchResult, Task, search
from jaxrl.meta.validation import Validation

# Used where a request predates the flag (e.g. one built by hand, as experiments/bench_meta.py does).
DEFAULT_CANDIDATES = 2
DEFAULT_CANDIDATE_POOL = 16


@dataclasses.dataclass
class Inner:
    """One environment's inner training: the algorithm module, its agent, hyperparameters and overrides."""

    algorithm: Any
    agent: Any
    hparams: Any
    overrides: dict[str, float]


def inner(algorithm_name: str, settings: dict[str, Any]) -> Inner:
    if algorithm_name not in ALGORITHMS:
        raise invalid_choice("algorithm", algorithm_name, ALGORITHMS)
    algorithm = ALGORITHMS[algorithm_name]
    config, overrides = build(algorithm.Config, algorithm.Hparams, settings)
    agent = algorithm.make_agent(config)
    return Inner(algorithm, agent, apply_overrides(agent.default_hparams(), overrides), overrides)


def unit(request: dict[str, Any]) -> str:
    """What a normalised score of 1 means: PPO-clip for the PPO family (any objective is compared with PPO's clip),
    the algorithm itself with its default hyperparameters for the others (e.g. DQN under `meta tune`)."""
    algorithm = request.get("algorithm", "ppo")
    if algorithm == "ppo":
        return "PPO-clip under the same inner settings"
    return f"{algorithm} with its default hyperparameters under the same inner settings"


def inner_settings(request: dict[str, Any], env_id: str) -> dict[str, Any]:
    settings = {**request.get("settings", {}), "env_id": env_id}
    if request.get("inner_steps"):
        settings["total_timesteps"] = request["inner_steps"]
    return settings


def make_tasks(request: dict[str, Any], inners: list[Inner], to_hparams: Callable[[Any, Any], Any]) -> list[Task]:
    tasks = []
    for env_id, item in zip(request["envs"], inners):
        evaluator = PopulationEvaluator(
            item.agent, item.hparams, to_hparams, request["population"], request["seeds"],
            max_devices=request.get("devices"), block_runs=request.get("block_runs"),
        )
        base = baselines.baseline(item.algorithm, item.agent.config, item.overrides, request["baseline_seeds"], max_devices=request.get("devices"))
        if baselines.degenerate(base):
            print(f"{env_id}: PPO-clip ({base['ppo']:.1f}) barely beats the untrained policy ({base['init']:.1f}) on this budget; "
                  f"scores use a unit of {baselines.span(base):.2f}", file=sys.stderr)
        tasks.append(Task(env_id, evaluator, base))
    return tasks


def make_request_es(request: dict[str, Any], solution: Any):
    return make_es(request["es"], request["population"], solution, sigma=request["sigma"], lr=request["lr"],
                   shaping=request.get("shaping", "centered_rank"), antithetic=request.get("antithetic", True))


def search_and_validate(
    request: dict[str, Any], es: Any, solution: Any, tasks: list[Task], out: Path, *, resume: bool = False, progress: bool = True,
    describe: Callable[[Any], dict] | None = None,
) -> tuple[SearchResult, Validation | None]:
    """Run the request's search, then (if it finished) re-score its candidates on the validation seeds and pick one.
    An interrupted search is not validated: its result is None."""
    result = search(es, solution, tasks, meta_key(request), request["generations"], request["seeds"], out,
                    checkpoint_every=request["checkpoint_every"], candidates=request.get("candidates", DEFAULT_CANDIDATES),
                    candidate_pool=request.get("candidate_pool", DEFAULT_CANDIDATE_POOL), resume=resume, progress=progress, describe=describe)
    if result.status != "finished":
        return result, None
    seeds = validation.validation_seeds(request.get("validation_seeds", validation.DEFAULT_SEEDS))
    print(f"validating {candidates.filled(result.pool) + 1} candidates (the pool and the search mean) on {len(seeds)} new seeds "
          f"in {len(tasks)} environment(s)", flush=True)
    return result, validation.validate(tasks, result.pool, result.mean, result.last_generation, seeds, describe)


def write_summary(
    out: Path, request: dict[str, Any], tasks: list[Task], result: SearchResult, checked: Validation | None, files: dict[str, str], extra: dict[str, Any],
) -> dict[str, Any]:
    """meta_summary.json: the request, the environments with their baselines, the selected candidate (training
    fitness and validation score with its interval), the best by training fitness, the candidate table, the
    generations, files, versions, devices and timing. An interrupted search has no selection and no table."""
    pool_rows = candidates.with_mean(result.pool, result.mean, result.last_generation)[1]
    summary = {
        "kind": request["kind"],
        "status": result.status,
        "request": request,
        "envs": [
            {"env_id": t.env_id, "config": {**dataclasses.asdict(t.evaluator.agent.config), "num_updates": t.evaluator.agent.num_updates},
             "baseline": t.baseline, "batch_runs": t.evaluator.batch_runs, "batches": t.evaluator.num_batches}
            for t in tasks
        ],
        "selected": {"index": checked.selected, **checked.rows[checked.selected]} if checked else None,
        "best_training": (checked.rows if checked else pool_rows)[0] if len(pool_rows) > 1 else None,
        "validation": {
            "seeds": checked.seeds if checked else None,
            "candidates_per_generation": request.get("candidates", DEFAULT_CANDIDATES),
            "candidate_pool": request.get("candidate_pool", DEFAULT_CANDIDATE_POOL),
            "score": "mean over validation seeds and environments of the normalised final return (0 = untrained policy, "
                     f"1 = {unit(request)}); interval: 95% percentile bootstrap over the seeds",
            "caveat": "the selected candidate's validation score is the best of several on the same seeds, so it is "
                      "optimistic, and its interval ignores the baseline's own uncertainty (the baseline runs on its own "
                      "seeds); `jaxrl meta evaluate` on fresh seeds gives an unbiased number",
        },
        "candidates": checked.rows if checked else None,
        "generations": result.history,
        "files": files,
        "versions": results.package_versions(),
        "devices": results.device_info(max(t.evaluator.devices for t in tasks)),
        "timing": result.timing,
        **extra,
    }
    results.atomic_write_json(out / "meta_summary.json", summary)
    return summary


def meta_key(request: dict[str, Any]) -> jax.Array:
    return jax.random.key(int(request["seed"]))
