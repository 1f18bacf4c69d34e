"""Experiment tracking from the runner's host loop: TensorBoard event files and Weights & Biases.

The compiled program never calls out (no host callbacks inside the vmapped loop): after each chunk the runner
hands its metrics to a `Tracking`, which writes

- per grid point, every update: the IQM and mean of the seeds' latest episode return, and the mean over seeds of
  every other scalar metric (`LABEL/iqm/episode_return`, `LABEL/mean/loss`, ...);
- per seed, every update: its own latest episode return (`LABEL/seed7/episode_return`), a separate series each.

The x axis is environment steps of one run. TensorBoard gets one event-file folder per grid point and one per
seed (`tb/LABEL/`, `tb/LABEL/seed7/`), so seeds are separate runs of the same tag there; W&B gets one run per
results folder, with `env_steps` as the step metric, logging offline when no account is configured.
"""

from __future__ import annotations

import os
import re
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jaxrl import multihost
from jaxrl.envs.errors import InvalidChoiceError

BACKENDS = ("tb", "wandb")
RETURN = "episode_return"
# Host-side bookkeeping the runner adds to the metrics; not series anyone wants to plot.
_NOT_LOGGED = {"finite", "update_done", "episode_return_valid"}


def parse_backends(text: str | None) -> list[str]:
    """`--log tb,wandb` -> ["tb", "wandb"]; an unknown name is a one-line error."""
    names = [n.strip() for n in (text or "").split(",") if n.strip()]
    for name in names:
        if name not in BACKENDS:
            raise InvalidChoiceError(f"unknown --log backend {name!r}; choices: {', '.join(BACKENDS)}")
    return list(dict.fromkeys(names))


def _iqm(values: np.ndarray) -> float:
    """Interquartile mean: the mean of the middle 50% (at least one value)."""
    values = np.sort(values)
    cut = len(values) // 4
    return float(values[cut : len(values) - cut].mean())


class Tracking:
    """Turns the runner's chunks into series and sends them to the chosen backends.

    labels: one per grid point; seeds: the seed values (runs are r = grid point * len(seeds) + seed index)."""

    def __init__(self, backends: Sequence[str], out: Path, labels: Sequence[str], seeds: Sequence[int],
                 steps_per_update: int, config: dict[str, Any], name: str, first_run: int = 0) -> None:
        self.labels, self.seeds, self.steps_per_update = list(labels), list(seeds), steps_per_update
        self.first_run = first_run  # the run of host row 0 (a process's share of the runs starts there)
        self.sinks = [_SINKS[b](out, config, name) for b in parse_backends(",".join(backends))]

    def chunk(self, host: dict[str, np.ndarray], runs: slice, updates: range) -> None:
        """Log updates `updates` of host rows `runs` (a batch). host: name -> (rows, num_updates) arrays, filled up
        to these updates. A grid point's aggregate is written with the batch that holds its last seed, so that it
        always covers every seed (when the runs were split into batches, earlier batches filled the others); a grid
        point only partly in this process's rows (several processes) gets per-seed series only."""
        if not self.sinks:
            return
        num_seeds = len(self.seeds)
        names = [n for n, v in host.items() if n not in _NOT_LOGGED and v.ndim == 2 and not n.startswith("snapshot_")]
        valid = host.get("episode_return_valid")
        o = self.first_run
        rows_held = host[RETURN].shape[0]
        points = range((runs.start + o) // num_seeds, -(-(runs.stop + o) // num_seeds))
        for u in updates:
            step = (u + 1) * self.steps_per_update
            rows: dict[str, dict[str, float]] = {}
            for g in points:
                label = self.labels[g]
                first, last = g * num_seeds - o, (g + 1) * num_seeds - o  # host rows of grid point g
                for r in range(max(first, runs.start), min(last, runs.stop)):
                    if valid is None or valid[r, u]:
                        rows.setdefault(f"{label}/seed{self.seeds[r - first]}", {})[RETURN] = float(host[RETURN][r, u])
                if not runs.start < last <= runs.stop or first < 0 or last > rows_held:
                    continue
                group = rows.setdefault(label, {})
                for name in names:
                    group[f"mean/{name}"] = float(np.mean(host[name][first:last, u]))
                mask = np.ones(num_seeds, bool) if valid is None else valid[first:last, u]
                if mask.any():
                    finished = host[RETURN][first:last, u][mask]
                    group[f"iqm/{RETURN}"], group[f"mean/{RETURN}"] = _iqm(finished), float(finished.mean())
                else:
                    group.pop(f"mean/{RETURN}", None)  # no episode has ended yet: nothing to average
            for sink in self.sinks:
                sink.write(step, rows)

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()


def _folder_name(label: str) -> str:
    """A grid point's label as a folder name (TensorBoard shows it as the run name)."""
    return re.sub(r"[^A-Za-z0-9._=+-]+", "_", label.replace(", ", ","))


class _TensorBoard:
    """Event files under OUT/tb/: one writer per grid point and per seed."""

    def __init__(self, out: Path, config: dict[str, Any], name: str) -> None:
        from tensorboardX import SummaryWriter

        self._writer_type, self.root, self.writers = SummaryWriter, out / "tb", {}

    def write(self, step: int, rows: dict[str, dict[str, float]]) -> None:
        for group, values in rows.items():
            if group not in self.writers:
                folder = self.root.joinpath(*(_folder_name(part) for part in group.split("/")))
                self.writers[group] = self._writer_type(logdir=str(folder), flush_secs=30)
            writer = self.writers[group]
            for tag, value in values.items():
                writer.add_scalar(tag, value, global_step=step)

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()


class _WandB:
    """One W&B run per results folder (files under OUT/wandb/). Online when W&B has an account configured or
    WANDB_MODE says so, otherwise offline (upload later with `wandb sync OUT/wandb/offline-run-*`)."""

    def __init__(self, out: Path, config: dict[str, Any], name: str) -> None:
        try:
            import wandb
        except ImportError:
            raise InvalidChoiceError("--log wandb needs the wandb package: pip install 'jaxrl[track]' (or pip install wandb)") from None
        mode = os.environ.get("WANDB_MODE") or ("online" if _wandb_logged_in(wandb) else "offline")
        if mode == "offline":
            print(f"W&B: logging offline to {out / 'wandb'} (upload with: wandb sync {out / 'wandb'}/offline-run-*)", file=sys.stderr)
        out.mkdir(parents=True, exist_ok=True)
        # Several processes: one W&B run each (its own runs), named after it.
        suffix = f"-process{multihost.index()}" if multihost.count() > 1 else ""
        id_file = out / f"wandb_run_id{suffix}"  # a resumed run continues the same W&B run
        run_id = id_file.read_text().strip() if id_file.exists() else uuid.uuid4().hex[:8]
        id_file.write_text(run_id)
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", "jaxrl"), dir=str(out), name=name + suffix, id=run_id,
                              resume="allow", mode=mode, config=config)
        self.run.define_metric("env_steps")
        self.run.define_metric("*", step_metric="env_steps")

    def write(self, step: int, rows: dict[str, dict[str, float]]) -> None:
        self.run.log({"env_steps": step, **{f"{group}/{tag}": v for group, values in rows.items() for tag, v in values.items()}})

    def close(self) -> None:
        self.run.finish()


def _wandb_logged_in(wandb: Any) -> bool:
    try:
        return bool(wandb.api.api_key)
    except Exception:  # no settings file, no netrc: not logged in
        return False


_SINKS = {"tb": _TensorBoard, "wandb": _WandB}
