"""Evaluate objectives (names or saved files) on environments: each (objective, environment) pair is an
ordinary `jaxrl train` results folder under OUT/ENV/OBJECTIVE (the runner: one compile, sharded seeds,
checkpoints), plus, at the top, summary.json and report.md with IQM and 95% bootstrap intervals per pair and
scores.png, the baseline-normalised IQM per pair (0 = untrained policy, 1 = PPO with default settings).

A pair whose folder already holds a finished run is read back, not retrained, so an interrupted evaluation
continues where it stopped.
"""

from __future__ import annotations

import json
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
    table: dict[str, dict[str, Any]] = {}
    for (env_id, label), (item, settings) in pairs.items():
        folder = out / env_id.replace("/", "_") / label
        finals = _finished(folder)
        if finals is None:
            print(f"{label} on {env_id}: {len(seeds)} seeds -> {folder}", flush=True)
            summary = run(item.agent, RunPlan("ppo", settings, {}, seeds), item.overrides, folder, max_devices=request.get("devices"), block_runs=request.get("block_runs"), progress=progress)
            if summary["status"] != "finished":
                print(f"interrupted in {folder}: run the same command again to continue", flush=True)
                return {"kind": "evaluate", "status": "interrupted"}
            finals = np.asarray([r["final_return"] for r in summary["runs"]])
        base = baselines.baseline(item.algorithm, item.agent.config, item.overrides, request["baseline_seeds"], max_devices=request.get("devices"))
        stats = results.summarize_returns(finals)
        norm = results.summarize_returns(baselines.normalise(finals, base))
        table.setdefault(label, {})[env_id] = {"returns": stats, "normalised": norm, "baseline": base, "folder": str(folder.relative_to(out))}

    env_ids = request["envs"]
    iqm = np.array([[table[label][e]["normalised"]["iqm"] for e in env_ids] for label in labels])
    low = np.array([[table[label][e]["normalised"]["ci_low"] for e in env_ids] for label in labels])
    high = np.array([[table[label][e]["normalised"]["ci_high"] for e in env_ids] for label in labels])
    plots.plot_scores(out / "scores.png", env_ids, labels, iqm, low, high)
    summary = {"kind": "evaluate", "status": "finished", "request": request, "seeds": seeds, "results": table, "versions": results.package_versions()}
    results.atomic_write_json(out / "summary.json", summary)
    results.atomic_write_bytes(out / "report.md", _report(table, labels, env_ids, len(seeds)).encode())
    return summary


def _finished(folder: Path) -> np.ndarray | None:
    try:
        summary = json.loads((folder / "summary.json").read_text())
    except (OSError, ValueError):
        return None
    if summary.get("status") != "finished":
        return None
    return np.asarray([r["final_return"] for r in summary["runs"]])


def _report(table: dict, labels: list[str], env_ids: list[str], num_seeds: int) -> str:
    lines = ["# Objective evaluation", "", f"Final return of the final policy over {num_seeds} seeds: IQM [95% bootstrap CI]; "
             "normalised score: 0 = untrained policy, 1 = PPO (default settings, cached baseline).", ""]
    lines.append("| objective | environment | IQM return | 95% CI | mean | normalised IQM | 95% CI |")
    lines.append("|---|---|---:|---|---:|---:|---|")
    for label in labels:
        for env_id in env_ids:
            r, n = table[label][env_id]["returns"], table[label][env_id]["normalised"]
            lines.append(f"| {label} | {env_id} | {r['iqm']:.1f} | [{r['ci_low']:.1f}, {r['ci_high']:.1f}] | {r['mean']:.1f} | "
                         f"{n['iqm']:.2f} | [{n['ci_low']:.2f}, {n['ci_high']:.2f}] |")
    return "\n".join(lines) + "\n"
