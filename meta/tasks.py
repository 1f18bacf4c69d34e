"""Shared set-up of the meta commands: inner agents from flat settings, the per-environment tasks with their
baselines, the request saved beside the results (`meta.json`, what `--resume` rebuilds from) and the summary."""

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
from jaxrl.meta import baselines
from jaxrl.meta.es import make_es
from jaxrl.meta.population import PopulationEvaluator
from jaxrl.meta.search import SearchResult, Task


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
            print(f"{env_id}: PPO ({base['ppo']:.1f}) barely beats the untrained policy ({base['init']:.1f}) on this budget; "
                  f"scores use a unit of {baselines.span(base):.2f}", file=sys.stderr)
        tasks.append(Task(env_id, evaluator, base))
    return tasks


def make_request_es(request: dict[str, Any], solution: Any):
    return make_es(request["es"], request["population"], solution, sigma=request["sigma"], lr=request["lr"],
                   shaping=request.get("shaping", "centered_rank"), antithetic=request.get("antithetic", True))


def write_summary(out: Path, request: dict[str, Any], tasks: list[Task], result: SearchResult, files: dict[str, str], extra: dict[str, Any]) -> dict[str, Any]:
    best_gen = max(result.history, key=lambda h: h["best"])["generation"] if result.history else None
    summary = {
        "kind": request["kind"],
        "status": result.status,
        "request": request,
        "envs": [
            {"env_id": t.env_id, "config": {**dataclasses.asdict(t.evaluator.agent.config), "num_updates": t.evaluator.agent.num_updates},
             "baseline": t.baseline, "batch_runs": t.evaluator.batch_runs, "batches": t.evaluator.num_batches}
            for t in tasks
        ],
        "best": {"fitness": result.best_fitness, "generation": best_gen},
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
