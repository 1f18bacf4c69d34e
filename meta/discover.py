"""Objective discovery: an ES over the weights of a learned drift (`lpo`, `ta_lpo`), where one fitness
evaluation is a whole inner PPO-family training run per member x seed x environment.

    summary = discover(request, out)   # request: see `jaxrl meta discover --help` (meta/cli.py)

Writes to `out`: meta_summary.json, fitness.png, drift.png, best_objective.npz (the member with the highest
fitness seen) and mean_objective.npz (the search mean at the end, what the published LPO reports); both load
with `jaxrl train --objective FILE`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jaxrl import objectives
from jaxrl.envs.errors import invalid_choice
from jaxrl.meta import plots
from jaxrl.meta.search import search
from jaxrl.meta.tasks import inner, inner_settings, make_request_es, make_tasks, meta_key, write_summary

INITS = {"ppo": True, "zero": False}  # ppo: D starts as PPO's clip; zero: D starts at 0 (no trust region)
DRIFT_PROGRESSES = (0.0, 0.5, 1.0)


def learned_objective(request: dict[str, Any]) -> objectives.Objective:
    if request["objective"] not in objectives.LEARNED:
        raise invalid_choice("learned objective", request["objective"], objectives.LEARNED)
    if request["init"] not in INITS:
        raise invalid_choice("init", request["init"], INITS)
    return objectives.make(request["objective"], ppo_init=INITS[request["init"]])


def discover(request: dict[str, Any], out: str | Path, *, resume: bool = False, progress: bool = True) -> dict[str, Any]:
    out = Path(out)
    objective = learned_objective(request)
    inners = []
    for env_id in request["envs"]:
        settings = {**inner_settings(request, env_id), "objective": objective.name, "objective_options": objective.options}
        inners.append(inner("ppo", settings))
    solution = inners[0].hparams.objective  # phi = 0 (PPO's clip or zero drift, per `init`)
    tasks = make_tasks(request, inners, lambda member, base: base.replace(objective=member))
    es = make_request_es(request, solution)
    result = search(es, solution, tasks, meta_key(request), request["generations"], request["seeds"], out,
                    checkpoint_every=request["checkpoint_every"], resume=resume, progress=progress)

    files = {"best": "best_objective.npz", "mean": "mean_objective.npz", "fitness": "fitness.png", "drift": "drift.png"}
    objectives.save(out / files["best"], objective, result.best)
    objectives.save(out / files["mean"], objective, result.mean)
    title = f"{objective.name} ({request['init']} init) on {', '.join(request['envs'])}"
    plots.plot_fitness(out / files["fitness"], result.history, title)
    progresses = DRIFT_PROGRESSES if objective.name == "ta_lpo" else (0.0,)
    plots.plot_drift(out / files["drift"], objective, result.best, f"learned {objective.name} (best)", progresses)
    return write_summary(out, request, tasks, result, files, {"objective": {"name": objective.name, "options": objective.options}})
