"""Evaluate objectives (names or saved files) on environments: each (objective, environment) pair is an
ordinary `jaxrl train` results folder under OUT/ENV/OBJECTIVE (the runner: one compile, sharded seeds,
checkpoints), plus, at the top, summary.json and report.md with IQM and 95% bootstrap intervals per pair and
scores.png, the baseline-normalised IQM per pair.

The normalised score's unit is PPO-clip under the same settings as the evaluated runs (same environment, budget
and hyperparameters; only the objective differs), trained on the same seeds: 0 = untrained policy, 1 = that
PPO-clip's mean final return. When ppo_clip itself is among the objectives its own runs are the baseline, so it
scores exactly 1 in the mean; otherwise the baseline is trained on the evaluated seeds once and cached per
(settings, seed list) (`baselines.py`).

A pair whose folder already holds a finished run over the same seeds and settings is read back, not retrained,
so an interrupted evaluation continues where it stopped; one over other seeds or settings is refused.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from jaxrl import objectives, results
from jaxrl.envs.errors import InvalidChoiceError
from jaxrl.meta import baselines, plots
from jaxrl.meta.tasks import inner, inner_settings
from jaxrl.runner import RunPlan, run


def objective_labels(specs: list[str]) -> list[str]:
    """Names stay names; files are named by their stem, or by folder-stem where two stems collide."""
    stems = [spec if spec in objectives.NAMES else Path(spec).stem for spec in specs]
    return [f"{Path(spec).parent.name}-{stem}" if spec not in objectives.NAMES and stems.count(stem) > 1 else stem
            for spec, stem in zip(specs, stems)]


def evaluate(request: dict[str, Any], out: str | Path, *, progress: bool = True) -> dict[str, Any]:
    out = Path(out)
    labels = objective_labels(request["objectives"])
    if len(set(labels)) != len(labels):
        raise InvalidChoiceError(f"two objectives share the name {labels}: give the files different names")
    pairs = {}
    for env_id in request["envs"]:  # build (and so validate) everything before the first run starts
        for spec, label in zip(request["objectives"], labels):
            settings = {**inner_settings(request, env_id), "objective": spec}
            pairs[env_id, label] = (inner("ppo", settings), settings)
    seeds = list(range(request["seed"], request["seed"] + request["seeds"]))
    finals: dict[tuple[str, str], np.ndarray] = {}
    for (env_id, label), (item, settings) in pairs.items():
        folder = out / env_id.replace("/", "_") / label
        finished = _finished(folder, seeds, settings)
        if finished is None:
            print(f"{label} on {env_id}: {len(seeds)} seeds -> {folder}", flush=True)
            resume = (folder / "checkpoints" / "state.json").exists()  # an interrupted pair continues where it stopped
            summary = run(item.agent, RunPlan("ppo", settings, {}, seeds), item.overrides, folder, max_devices=request.get("devices"),
                          block_runs=request.get("block_runs"), progress=progress, resume=resume)
            if summary["status"] != "finished":
                print(f"interrupted in {folder}: run the same command again to continue", flush=True)
                return {"kind": "evaluate", "status": "interrupted"}
            finished = np.asarray([r["final_return"] for r in summary["runs"]])
        finals[env_id, label] = finished

    env_ids = request["envs"]
    table: dict[str, dict[str, Any]] = {label: {} for label in labels}
    bases = {}
    for env_id in env_ids:
        base, source = env_baseline({label: pairs[env_id, label][0] for label in labels}, {label: finals[env_id, label] for label in labels}, seeds, request.get("devices"))
        if baselines.degenerate(base):
            print(f"{env_id}: PPO-clip ({base['ppo']:.1f}) barely beats the untrained policy ({base['init']:.1f}); scores use a unit of "
                  f"{baselines.span(base):.2f}, and PPO-clip itself scores below 1", file=sys.stderr)
        bases[env_id] = {**base, "source": source}
        for label in labels:
            table[label][env_id] = {
                "returns": results.summarize_returns(finals[env_id, label]),
                "normalised": results.summarize_returns(baselines.normalise(finals[env_id, label], base)),
                "baseline": base, "folder": str((out / env_id.replace("/", "_") / label).relative_to(out)),
            }

    iqm = np.array([[table[label][e]["normalised"]["iqm"] for e in env_ids] for label in labels])
    low = np.array([[table[label][e]["normalised"]["ci_low"] for e in env_ids] for label in labels])
    high = np.array([[table[label][e]["normalised"]["ci_high"] for e in env_ids] for label in labels])
    plots.plot_scores(out / "scores.png", env_ids, labels, iqm, low, high)
    summary = {"kind": "evaluate", "status": "finished", "request": request, "seeds": seeds, "baselines": bases, "results": table,
               "versions": results.package_versions()}
    results.atomic_write_json(out / "summary.json", summary)
    results.atomic_write_bytes(out / "report.md", _report(table, labels, env_ids, len(seeds), bases).encode())
    return summary


def env_baseline(items: dict[str, Any], finals: dict[str, np.ndarray], seeds: list[int], max_devices: int | None = None) -> tuple[dict[str, float], str]:
    """One environment's baseline over the evaluated `seeds` and where its PPO-clip runs come from.

    items, finals: per objective label, its `tasks.Inner` and its final returns (one per seed). A label whose runs
    are PPO-clip under the baseline's own settings supplies the PPO-clip return itself (so it scores exactly 1 in
    the mean); otherwise PPO-clip is trained on the same seeds (cached per settings and seed list)."""
    first = next(iter(items.values()))
    for label, item in items.items():
        if baselines.is_baseline(item.agent.config, item.overrides):
            base = baselines.baseline(item.algorithm, item.agent.config, item.overrides, seeds, ppo_returns=finals[label], max_devices=max_devices)
            return base, f"the {label} runs of this evaluation"
    base = baselines.baseline(first.algorithm, first.agent.config, first.overrides, seeds, max_devices=max_devices)
    return base, "PPO-clip runs trained for the baseline on the same seeds and settings (cached)"


def _finished(folder: Path, seeds: list[int], settings: dict[str, Any]) -> np.ndarray | None:
    """The final returns of a finished run in `folder`, None if there is none; a finished run over other seeds or
    settings is refused (its returns would be scored against a baseline on other seeds)."""
    try:
        summary = json.loads((folder / "summary.json").read_text())
    except (OSError, ValueError):
        return None
    if summary.get("status") != "finished":
        return None
    if summary.get("seeds") != seeds or summary.get("settings") != json.loads(json.dumps(settings, default=str)):
        raise InvalidChoiceError(f"{str(folder)!r} holds a finished run with other seeds or settings: evaluate into another --out")
    return np.asarray([r["final_return"] for r in summary["runs"]])


def _report(table: dict, labels: list[str], env_ids: list[str], num_seeds: int, bases: dict[str, dict[str, Any]]) -> str:
    lines = ["# Objective evaluation", "", f"Final return of the final policy over {num_seeds} seeds: IQM [95% bootstrap CI]; "
             "normalised score: 0 = untrained policy, 1 = PPO-clip under the same settings as these runs (only the objective "
             "differs), trained on the same seeds.", ""]
    for env_id in env_ids:
        b = bases[env_id]
        lines.append(f"- {env_id}: PPO-clip mean final return {b['ppo']:.1f}, from {b['source']}; untrained policy {b['init']:.1f}")
    lines.append("")
    lines.append("| objective | environment | IQM return | 95% CI | mean | normalised IQM | 95% CI |")
    lines.append("|---|---|---:|---|---:|---:|---|")
    for label in labels:
        for env_id in env_ids:
            r, n = table[label][env_id]["returns"], table[label][env_id]["normalised"]
            lines.append(f"| {label} | {env_id} | {r['iqm']:.1f} | [{r['ci_low']:.1f}, {r['ci_high']:.1f}] | {r['mean']:.1f} | "
                         f"{n['iqm']:.2f} | [{n['ci_low']:.2f}, {n['ci_high']:.2f}] |")
    return "\n".join(lines) + "\n"
