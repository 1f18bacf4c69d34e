"""Objective discovery: an ES over the weights of a learned drift (`lpo`, `ta_lpo`), where one fitness
evaluation is a whole inner PPO-family training run per member x seed x environment.

    summary = discover(request, out)   # request: see `jaxrl meta discover --help` (meta/cli.py)

Writes to `out`: meta_summary.json, fitness.png, drift.png, best_objective.npz (the candidate with the highest
validation score: the top members of each generation, kept by training fitness, and the final search mean,
re-scored on seeds no generation used; see validation.py) and mean_objective.npz (the search mean at the end,
what the published LPO reports); both load with `jaxrl train --objective FILE`. An interrupted search writes
no best_objective.npz (and removes one left by an earlier, shorter run of the same folder): it has not been
validated.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jaxrl import objectives
from jaxrl.envs.errors import invalid_choice
from jaxrl.meta import plots
from jaxrl.meta.tasks import inner, inner_settings, make_request_es, make_tasks, search_and_validate, write_summary

INITS = {"ppo": True, "zero": False}  # ppo: D starts as PPO's clip; zero: D starts at 0 (no trust region)
DRIFT_PROGRESSES = (0.0, 0.5, 1.0)


def learned_objective(request: dict[str, Any]) -> objectives.Objective:
    if request["objective"] not in objectives.LEARNED:
        raise invalid_choice("learned objective", request["objective"], objectives.LEARNED)
    if request["init"] not in INITS:
        raise invalid_choice("init", request["init"], INITS)
    return objectives.make(request["objective"], ppo_init=INITS[request["init"]])


def discover(request: dict[str, Any], out: str | Path, *, resume: bool = False, progress: bool = True) -> dict[str, Any]:
    """Search the learned objective's weights, validate the candidates, write the files; returns the summary."""
    out = Path(out)
    objective = learned_objective(request)
    inners = []
    for env_id in request["envs"]:
        settings = {**inner_settings(request, env_id), "objective": objective.name, "objective_options": objective.options}
        inners.append(inner("ppo", settings))
    solution = inners[0].hparams.objective  # phi = 0 (PPO's clip or zero drift, per `init`)
    tasks = make_tasks(request, inners, lambda member, base: base.replace(objective=member))
    es = make_request_es(request, solution)
    result, checked = search_and_validate(request, es, solution, tasks, out, resume=resume, progress=progress)

    files = {"best": "best_objective.npz", "mean": "mean_objective.npz", "fitness": "fitness.png", "drift": "drift.png"}
    if checked is not None:
        objectives.save(out / files["best"], objective, checked.member)
    else:
        (out / files.pop("best")).unlink(missing_ok=True)
    objectives.save(out / files["mean"], objective, result.mean)
    title = f"{objective.name} ({request['init']} init) on {', '.join(request['envs'])}"
    plots.plot_fitness(out / files["fitness"], result.history, title)
    progresses = DRIFT_PROGRESSES if objective.name == "ta_lpo" else (0.0,)
    shown, label = (checked.member, "selected") if checked is not None else (result.mean, "search mean")
    plots.plot_drift(out / files["drift"], objective, shown, f"learned {objective.name} ({label})", progresses)
    return write_summary(out, request, tasks, result, checked, files, {"objective": {"name": objective.name, "options": objective.options}})
