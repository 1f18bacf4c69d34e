"""Compare finished `jaxrl ued` runs (e.g. the dr, plr and accel folders of experiments/ued_compare.sh): held-out solve
rate curves on one plot, a table per maze, and each run's own figures and summary copied next to them.

    python experiments/compare_ued.py RUNS_DIR --out experiments/reported/ued
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np

from jaxrl import results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", help="folder holding one finished `jaxrl ued` run per sub-folder")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    runs = sorted((d for d in Path(args.runs).iterdir() if (d / "summary.json").exists()), key=lambda d: ("dr", "plr", "accel").index(d.name) if d.name in ("dr", "plr", "accel") else 9)
    labels, curves, steps, rows = [], [], None, []
    for d in runs:
        summary = json.loads((d / "summary.json").read_text())
        section = summary["ued"]
        with np.load(d / "curves.npz") as data:
            solved = data["snapshot_maze_solved"][0].mean(-1)  # (S, K)
            steps = data["snapshot_env_steps"]
        label = f"{section['method'].upper()} (n={solved.shape[0]})"
        labels.append(label)
        curves.append(solved)
        rows.append((section["method"].upper(), section, summary["timing"]))
        target = out / d.name
        target.mkdir(exist_ok=True)
        for name in ("summary.json", "report.md", "heldout.png", "levels.png", "buffer.png", "curves.png"):
            if (d / name).exists():
                shutil.copy(d / name, target / name)

    stacked = np.stack(curves)
    results.plot_curves(out / "heldout_solve_rate.png", steps, stacked, np.ones_like(stacked, bool), labels,
                        "DR vs PLR vs ACCEL: held-out mazes", ylabel="mean held-out solve rate (IQM over seeds, 95% CI)")

    mazes = rows[0][1]["held_out_mazes"]
    lines = ["| maze | " + " | ".join(name for name, _, _ in rows) + " |", "|---|" + "---:|" * len(rows)]

    def cell(stats):
        return f"{stats['iqm']:.2f} [{stats['ci_low']:.2f}, {stats['ci_high']:.2f}]"

    lines.append("| **mean of all** | " + " | ".join(cell(s["held_out"][0]["mean_solve_rate"]) for _, s, _ in rows) + " |")
    for maze in mazes:
        lines.append(f"| {maze} | " + " | ".join(cell(s["held_out"][0]["mazes"][maze]["solve_rate"]) for _, s, _ in rows) + " |")
    lines += ["", "| method | env steps/s | run s | compile s | replay fraction | buffer walls (mean) |", "|---|---:|---:|---:|---:|---:|"]
    for name, section, timing in rows:
        buffer = section.get("buffer") or {}
        walls = (buffer.get("walls") or {}).get("mean")
        lines.append(f"| {name} | {timing['env_steps_per_s']:,.0f} | {timing['run_s']:.0f} | {timing['compile_s']:.0f} | "
                     f"{buffer.get('replay_fraction', 0.0):.2f} | {'-' if walls is None else f'{walls:.1f}'} |")
    table = "\n".join(lines) + "\n"
    results.atomic_write_bytes(out / "table.md", table.encode())
    print(table)


if __name__ == "__main__":
    main()
