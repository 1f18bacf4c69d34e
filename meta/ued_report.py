"""What `jaxrl ued` writes after the runner's results: held-out statistics in summary.json ("ued"), and figures.

From curves.npz (the runner's per-update metrics and per-chunk `snapshot_*` arrays of `UED.snapshot`):

- summary.json "ued": per grid point, per held-out maze, solve rate and return of the final snapshot, IQM and
  95% bootstrap CI over seeds; the mean over mazes the same way; buffer statistics at the end.
- heldout.png: mean held-out solve rate over training (IQM over seeds, 95% CI), one line per grid point.
- levels.png: the highest-scoring levels in the buffer at the end (the median seed by held-out solve rate).
- buffer.png: histograms of buffer scores and staleness at the end, and wall counts over training (levels
  played, and the buffer's mean).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from jaxrl import results
from jaxrl.envs import maze


def held_out_table(curves: dict[str, np.ndarray], maze_names: list[str], labels: list[str]) -> list[dict[str, Any]]:
    """Per grid point: IQM + CI over seeds of the final solve rate and return on each held-out maze and overall."""
    solved, returns = curves["snapshot_maze_solved"][:, :, -1], curves["snapshot_maze_return"][:, :, -1]  # (G, S, L)
    table = []
    for g, label in enumerate(labels):
        per_maze = {
            name: {"solve_rate": results.summarize_returns(solved[g, :, i]), "return": results.summarize_returns(returns[g, :, i])}
            for i, name in enumerate(maze_names)
        }
        table.append({
            "grid_point": label,
            "mean_solve_rate": results.summarize_returns(solved[g].mean(-1)),
            "mean_return": results.summarize_returns(returns[g].mean(-1)),
            "mazes": per_maze,
        })
    return table


def buffer_stats(curves: dict[str, np.ndarray]) -> dict[str, Any] | None:
    """Final buffer size, score and staleness statistics, pooled over seeds of the first grid point."""
    if "snapshot_buffer_filled" not in curves:
        return None
    filled = curves["snapshot_buffer_filled"][0, :, -1]  # (S, C)
    scores = curves["snapshot_buffer_score"][0, :, -1][filled]
    staleness = curves["snapshot_buffer_staleness"][0, :, -1][filled]
    walls = curves["snapshot_buffer_walls"][0, :, -1][filled]

    def describe(x):
        return {"mean": float(x.mean()), "min": float(x.min()), "max": float(x.max()), "median": float(np.median(x))} if x.size else None

    return {
        "size_per_seed": filled.sum(-1).tolist(),
        "score": describe(scores),
        "staleness": describe(staleness),
        "walls": describe(walls),
        "replay_fraction": float(curves["replay"][0].mean()),
        "edit_fraction": float(curves["edit"][0].mean()),
        "learned_fraction": float(curves["learned"][0].mean()),
    }


def plot_buffer(path: Path, curves: dict[str, np.ndarray], title: str) -> None:
    fig, axes = results.pyplot().subplots(1, 3, figsize=(13, 3.8), dpi=110)
    filled = curves["snapshot_buffer_filled"][0, :, -1]
    axes[0].hist(curves["snapshot_buffer_score"][0, :, -1][filled], bins=40)
    axes[0].set_xlabel("level score (end)")
    axes[0].set_ylabel("levels (all seeds)")
    axes[1].hist(curves["snapshot_buffer_staleness"][0, :, -1][filled], bins=40)
    axes[1].set_xlabel("staleness: buffer updates since last played (end)")
    steps = curves["env_steps"]
    axes[2].plot(steps, curves["level_walls"][0].mean(0), label="levels played", alpha=0.7)
    snap_filled = curves["snapshot_buffer_filled"][0]  # (S, K, C)
    walls = np.where(snap_filled, curves["snapshot_buffer_walls"][0], 0).sum(-1) / np.maximum(snap_filled.sum(-1), 1)
    axes[2].plot(curves["snapshot_env_steps"], walls.mean(0), "o-", label="buffer mean")
    axes[2].set_xlabel("environment steps")
    axes[2].set_ylabel("walls per level (mean over seeds)")
    axes[2].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    results.save_figure(fig, path)


def plot_top_levels(path: Path, curves: dict[str, np.ndarray], seed_index: int) -> None:
    keep = curves["snapshot_top_filled"][0, seed_index, -1]
    levels = [
        maze.make_level(
            curves["snapshot_top_wall_map"][0, seed_index, -1, i], curves["snapshot_top_agent_pos"][0, seed_index, -1, i],
            curves["snapshot_top_agent_dir"][0, seed_index, -1, i], curves["snapshot_top_goal_pos"][0, seed_index, -1, i],
        )
        for i in np.flatnonzero(keep)
    ]
    if levels:
        _save_rgb(path, maze.render_grid(levels, columns=8))


def _save_rgb(path: Path, rgb: np.ndarray) -> None:
    buffer = io.BytesIO()
    results.pyplot().imsave(buffer, rgb, format="png")
    results.atomic_write_bytes(path, buffer.getvalue())


def write(out: str | Path, summary: dict[str, Any]) -> dict[str, Any]:
    """Add the UED section to `out`/summary.json and draw the figures; returns the section."""
    out = Path(out)
    with np.load(out / "curves.npz") as data:
        curves = {name: data[name] for name in data.files}
    config = summary["config"]
    labels = summary["grid"]["labels"]
    maze_names = list(config["eval_mazes"])
    title = f"{config['method'].upper()} ({config['score']}) on {config['env_id']}"

    solved = curves["snapshot_maze_solved"].mean(-1)  # (G, S, K)
    results.plot_curves(out / "heldout.png", curves["snapshot_env_steps"], solved, np.ones_like(solved, bool), labels, title,
                        ylabel=f"held-out solve rate, mean of {len(maze_names)} mazes (IQM, 95% CI)")
    section: dict[str, Any] = {
        "method": config["method"],
        "score": config["score"],
        "held_out_mazes": maze_names,
        "episodes_per_maze": config["eval_episodes"],
        "solved_means": "return > 0",
        "held_out": held_out_table(curves, maze_names, labels),
        "curve": {"env_steps": curves["snapshot_env_steps"].tolist(), "mean_solve_rate_per_seed": solved[0].tolist()},
        "buffer": buffer_stats(curves),
        "figures": ["heldout.png"],
    }
    if section["buffer"] is not None:
        median_seed = int(np.argsort(solved[0, :, -1])[len(solved[0]) // 2])
        plot_top_levels(out / "levels.png", curves, median_seed)
        plot_buffer(out / "buffer.png", curves, title)
        section["figures"] += ["levels.png", "buffer.png"]
        section["levels_png_seed"] = summary["seeds"][median_seed]
    results.atomic_write_json(out / "summary.json", {**summary, "ued": section})
    results.atomic_write_bytes(out / "report.md", ((out / "report.md").read_text() + report_lines(section)).encode())
    return section


def report_lines(section: dict[str, Any]) -> str:
    lines = ["", "## Held-out mazes (final policy; solved = return > 0)", "",
             "| grid point | maze | solve rate IQM | 95% CI | return IQM | seeds |", "|---|---|---:|---|---:|---:|"]
    for row in section["held_out"]:
        entries = [("mean of all", row["mean_solve_rate"], row["mean_return"])]
        entries += [(name, v["solve_rate"], v["return"]) for name, v in row["mazes"].items()]
        for name, rate, ret in entries:
            lines.append(f"| {row['grid_point']} | {name} | {rate['iqm']:.2f} | [{rate['ci_low']:.2f}, {rate['ci_high']:.2f}] | {ret['iqm']:.3f} | {rate['n']} |")
    return "\n".join(lines) + "\n"
