"""Results on disk: atomic writes, learning curves, IQM with bootstrap confidence intervals, plots, report.

Everything a run writes goes through `atomic_write*`, so a reader (or a crash) never sees half a file.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # what open() would give, not mkstemp's owner-only 0600
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, default=_json_default) + "\n").encode())


def atomic_write_npz(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


def _json_default(x: Any) -> Any:
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    raise TypeError(f"cannot write {type(x).__name__} to JSON")


def package_versions() -> dict[str, str]:
    """Versions of the packages that decide a run's numbers, for summaries."""
    import importlib.metadata as md

    versions = {}
    for pkg in ("jaxrl", "jax", "jaxlib", "flax", "optax", "gymnax", "brax", "evosax", "distrax", "orbax-checkpoint"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return versions


def device_info(used: int) -> dict[str, Any]:
    import jax

    first = jax.devices()[0]
    return {"kind": first.device_kind, "platform": first.platform, "count": jax.device_count(), "used": used}


def iqm(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Interquartile mean: the mean of the middle 50% of values (by sorted position) along `axis`."""
    x = np.sort(np.asarray(x, np.float64), axis=axis)
    n = x.shape[axis]
    lo, hi = int(np.floor(0.25 * n)), int(np.ceil(0.75 * n))
    if hi <= lo:  # n < 2
        return x.mean(axis=axis)
    return np.take(x, np.arange(lo, hi), axis=axis).mean(axis=axis)


def bootstrap_ci(
    x: np.ndarray, statistic: Callable[..., np.ndarray] = iqm, n_boot: int = 2000, level: float = 0.95, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap interval of `statistic` over the last axis (resampling seeds with replacement).

    x: (..., n) -> (low, high), each (...).
    """
    x = np.asarray(x, np.float64)
    rng = np.random.default_rng(seed)
    n = x.shape[-1]
    idx = rng.integers(0, n, size=(n_boot, n))
    stats = statistic(np.take(x, idx, axis=-1), axis=-1)  # (..., n_boot)
    alpha = (1.0 - level) / 2.0
    return np.quantile(stats, alpha, axis=-1), np.quantile(stats, 1.0 - alpha, axis=-1)


def summarize_returns(final: np.ndarray) -> dict[str, float]:
    """final: (n_seeds,) -> IQM, mean, median, std and the 95% bootstrap CI of the IQM."""
    final = np.asarray(final, np.float64)
    low, high = bootstrap_ci(final)
    return {
        "iqm": float(iqm(final)),
        "mean": float(final.mean()),
        "median": float(np.median(final)),
        "std": float(final.std()),
        "ci_low": float(low),
        "ci_high": float(high),
        "n": int(final.size),
    }


def plot_curves(
    path: str | os.PathLike,
    env_steps: np.ndarray,
    returns: np.ndarray,
    valid: np.ndarray,
    labels: Sequence[str],
    title: str = "",
    ylabel: str = "training return (IQM, 95% CI)",
) -> None:
    """One line per group: IQM over seeds of the training return (or what `ylabel` names), 95% bootstrap band.

    env_steps: (U,); returns, valid: (G, S, U) per group, seed and update; an update with no finished episode
    (valid false) carries the seed's previous value forward (NaN until its first finished episode).
    """
    lines = [(label, env_steps, returns[g], valid[g]) for g, label in enumerate(labels)]
    plot_panels(path, [(title, lines)], ylabel)


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend (files only, no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | os.PathLike) -> None:
    """Write `fig` as a PNG, atomically, and close it."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    pyplot().close(fig)
    atomic_write_bytes(path, buffer.getvalue())


def plot_panels(path: str | os.PathLike, panels: Sequence[tuple[str, Sequence[tuple]]], ylabel: str = "training return (IQM, 95% CI)") -> None:
    """Side-by-side panels, each (title, lines) with lines (label, env_steps (U,), returns (S, U), valid (S, U)):
    every line on its own x values, so runs of different lengths share an axis of environment steps."""
    fig, axes = pyplot().subplots(1, len(panels), figsize=(7 * len(panels), 4.5), dpi=120, squeeze=False)
    for ax, (title, lines) in zip(axes[0], panels):
        for label, env_steps, returns, valid in lines:
            filled = carry_forward(returns, valid)
            stride = max(1, len(env_steps) // 200)  # a few hundred points per line is plenty
            ys = filled[:, ::stride]  # (S, U')
            centre = np.array([_nan_iqm(ys[:, u]) for u in range(ys.shape[1])])
            bands = np.array([_nan_ci(ys[:, u]) for u in range(ys.shape[1])])
            line = ax.plot(env_steps[::stride], centre, label=label)[0]
            ax.fill_between(env_steps[::stride], bands[:, 0], bands[:, 1], alpha=0.25, color=line.get_color(), linewidth=0)
        ax.set_xlabel("environment steps")
        ax.set_ylabel(ylabel)
        if title:
            ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def carry_forward(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Replace entries where `valid` is false by the last valid value along the last axis (NaN before any)."""
    values = np.where(valid, values, np.nan).astype(np.float64)
    idx = np.where(valid, np.arange(values.shape[-1]), 0)
    np.maximum.accumulate(idx, axis=-1, out=idx)
    out = np.take_along_axis(values, idx, axis=-1)
    seen = np.maximum.accumulate(valid, axis=-1)
    return np.where(seen, out, np.nan)


def _nan_iqm(x: np.ndarray) -> float:
    x = x[np.isfinite(x)]
    return float(iqm(x)) if x.size else np.nan


def _nan_ci(x: np.ndarray) -> tuple[float, float]:
    x = x[np.isfinite(x)]
    if x.size < 2:
        return (np.nan, np.nan)
    low, high = bootstrap_ci(x, n_boot=300)
    return float(low), float(high)


def report_markdown(title: str, rows: list[tuple[str, dict[str, float]]], notes: Sequence[str] = ()) -> str:
    """A table of final-return statistics, one row per grid point."""
    lines = [f"# {title}", "", "Final return: evaluation of the final policy, statistics over seeds.", ""]
    lines.append("| grid point | IQM | 95% CI (IQM) | mean | median | std | seeds |")
    lines.append("|---|---:|---|---:|---:|---:|---:|")
    # One decimal hides differences of returns in [0, 1] (a maze's, a solve rate): show three there.
    small = all(abs(st[k]) < 10 for _, st in rows for k in ("iqm", "ci_low", "ci_high", "mean", "median"))
    f = ".3f" if small else ".1f"
    for label, st in rows:
        lines.append(
            f"| {label} | {st['iqm']:{f}} | [{st['ci_low']:{f}}, {st['ci_high']:{f}}] | {st['mean']:{f}} | "
            f"{st['median']:{f}} | {st['std']:{f}} | {st['n']} |"
        )
    lines += ["", *notes]
    return "\n".join(lines) + "\n"
