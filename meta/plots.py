"""Figures of the meta layer: fitness over generations, drift maps of objectives, normalised score bars.
Every figure is written atomically (jaxrl.results)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxrl import objectives, results

RATIO_RANGE = (0.5, 1.5)
ADVANTAGE_RANGE = (-2.0, 2.0)


def plot_fitness(path: str | os.PathLike, history: list[dict[str, Any]], title: str = "") -> None:
    """Best and mean normalised fitness per generation; 1 is PPO-clip under the same inner settings, 0 the
    untrained policy. Each generation is scored on its own seeds: the best member's line is biased upwards."""
    plt = results.pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    gens = [h["generation"] for h in history]
    ax.plot(gens, [h["best"] for h in history], label="best member")
    ax.plot(gens, [h["mean"] for h in history], label="population mean")
    ax.axhline(1.0, color="gray", linestyle="--", linewidth=1, label="PPO-clip, same inner settings")
    ax.set_xlabel("generation")
    ax.set_ylabel("normalised fitness\n(0 = untrained, 1 = PPO-clip, same inner settings)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    results.save_figure(fig, path)


def drift_grid(objective: objectives.Objective, params: Any, progress: float, n: int = 101) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """D over a (ratio, advantage) grid: returns ratios (n,), advantages (n,), D (n_adv, n_ratio)."""
    ratios = np.linspace(*RATIO_RANGE, n)
    advantages = np.linspace(*ADVANTAGE_RANGE, n)
    r, a = np.meshgrid(ratios, advantages)
    # One compiled program; op by op, each of the drift's ~40 array operations compiled on its own.
    drift = jax.jit(objective.drift)
    d = drift(params, jnp.log(jnp.asarray(r, jnp.float32)), jnp.asarray(a, jnp.float32), jnp.float32(progress))
    return ratios, advantages, np.asarray(d)


def plot_drift(path: str | os.PathLike, learned: objectives.Objective, params: Any, label: str, progresses: Sequence[float] = (0.0,)) -> None:
    """Heat maps of D(r, A): the learned drift (at each training progress in `progresses`; time-aware
    objectives only differ between them) beside PPO's and DPO's with their default parameters, one colour scale."""
    panels = [(f"{label}" + (f", progress {p:g}" if len(progresses) > 1 else ""), learned, params, p) for p in progresses]
    for name in ("ppo_clip", "dpo"):
        ref = objectives.make(name)
        panels.append((name, ref, ref.init(None), 0.0))
    grids = [drift_grid(obj, prm, p) for _, obj, prm, p in panels]
    plt = results.pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(3.4 * len(panels), 3.2), dpi=120, squeeze=False, layout="constrained")
    for ax, (title, *_), (ratios, advantages, d) in zip(axes[0], panels, grids):
        # Each panel has its own colour scale: a learned drift can be far larger than PPO's or DPO's.
        image = ax.imshow(d, origin="lower", aspect="auto", cmap="magma", vmin=0.0, vmax=max(float(d.max()), 1e-6),
                          extent=(ratios[0], ratios[-1], advantages[0], advantages[-1]))
        ax.axvline(1.0, color="white", linewidth=0.6, alpha=0.6)
        ax.axhline(0.0, color="white", linewidth=0.6, alpha=0.6)
        ax.set_title(title, fontsize=8)
        ax.set_xlabel("ratio r")
        fig.colorbar(image, ax=ax, shrink=0.85)
    axes[0][0].set_ylabel("advantage A (drift D in colour)")
    results.save_figure(fig, path)


def plot_scores(path: str | os.PathLike, env_ids: Sequence[str], labels: Sequence[str], iqm: np.ndarray, low: np.ndarray, high: np.ndarray) -> None:
    """Grouped bars: normalised IQM score per (environment, objective) with 95% bootstrap intervals; 1 (dashed) is
    PPO-clip under the same settings on the same seeds.
    iqm, low, high: (objectives, environments)."""
    plt = results.pyplot()
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(env_ids) * max(1, len(labels)) / 2), 4.5), dpi=120)
    width = 0.8 / max(len(labels), 1)
    x = np.arange(len(env_ids))
    for j, label in enumerate(labels):
        err = np.stack([iqm[j] - low[j], high[j] - iqm[j]])
        ax.bar(x + (j - (len(labels) - 1) / 2) * width, iqm[j], width, yerr=err, capsize=3, label=label)
    ax.axhline(1.0, color="gray", linestyle="--", linewidth=1)
    ax.set_xticks(x, env_ids, rotation=15, fontsize=8)
    ax.set_ylabel("normalised score, IQM, 95% CI\n(0 = untrained, 1 = PPO-clip, same settings and seeds)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    results.save_figure(fig, path)


def plot_lpg_returns(path: str | os.PathLike, history: list[dict[str, Any]], title: str = "") -> None:
    """Meta-training of an update rule: the mean and best final return of the generation's LPG agents (each on its
    own level, so the curve also moves with the levels drawn), with a moving average of the mean."""
    plt = results.pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    gens = np.array([h["generation"] for h in history])
    mean = np.array([np.nan if h["return_mean"] is None else h["return_mean"] for h in history])
    ax.plot(gens, [np.nan if h["return_best"] is None else h["return_best"] for h in history], alpha=0.5, label="best agent")
    ax.plot(gens, mean, alpha=0.5, label="mean over agents")
    window = max(1, len(history) // 10)
    if len(history) >= window > 1:
        smooth = np.convolve(np.nan_to_num(mean), np.ones(window) / window, mode="valid")
        ax.plot(gens[window - 1:], smooth, linewidth=2, label=f"mean, moving average of {window}")
    ax.set_xlabel("generation")
    ax.set_ylabel("final return of LPG-trained agents")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    results.save_figure(fig, path)


def plot_heldout(path: str | os.PathLike, history: list[dict[str, Any]], title: str = "") -> None:
    """The ES mean rule's held-out evaluations during meta-training: one line per level (its agents' mean final
    return; fixed seeds, so the lines move with the rule alone)."""
    rows = [(h["generation"], h["heldout"]) for h in history if h.get("heldout")]
    plt = results.pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for name in rows[0][1] if rows else ():
        ax.plot([g for g, _ in rows], [r[name] for _, r in rows], marker="o", markersize=3, label=name)
    ax.set_xlabel("generation")
    ax.set_ylabel("final return of agents trained by the ES mean")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    results.save_figure(fig, path)


def plot_regret(path: str | os.PathLike, history: list[dict[str, Any]], bins: int = 30) -> None:
    """The algorithmic regret of the generation's levels over time: a histogram per generation (colour = count),
    with the mean on top."""
    rows = [(h["generation"], np.asarray(h["regret"], float)) for h in history if h.get("regret") is not None]
    plt = results.pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    if rows:
        values = np.concatenate([r for _, r in rows])
        values = values[np.isfinite(values)]
        edges = np.linspace(values.min(initial=0.0), values.max(initial=1.0) + 1e-6, bins + 1)
        counts = np.stack([np.histogram(r[np.isfinite(r)], edges)[0] for _, r in rows], axis=1)
        gens = [g for g, _ in rows]
        ax.imshow(counts, origin="lower", aspect="auto", cmap="viridis", extent=(gens[0] - 0.5, gens[-1] + 0.5, edges[0], edges[-1]))
        ax.plot(gens, [np.nanmean(r) for _, r in rows], color="white", linewidth=1.5, label="mean")
        ax.legend(fontsize=8)
    ax.set_xlabel("generation")
    ax.set_ylabel("algorithmic regret R(antagonist) - R(LPG agent)")
    ax.set_title("regret of the levels played (histogram per generation)")
    fig.tight_layout()
    results.save_figure(fig, path)


def plot_level_buffer(path: str | os.PathLike, buffer: Any, title: str = "", top: int = 12) -> None:
    """The `top` highest-scoring levels of a grid-world level buffer (entries are meta.lpg.Task), with score and
    lifetime."""
    from jaxrl.envs import gridworld

    filled = np.asarray(buffer.filled)
    scores = np.where(filled, np.asarray(buffer.scores), -np.inf)
    order = [i for i in np.argsort(-scores)[:top] if filled[i]]
    plt = results.pyplot()
    cols = 4
    rows = max(1, -(-len(order) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.4 * rows), dpi=120, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, order):
        task = jax.tree.map(lambda x: np.asarray(x[i]), buffer.levels)
        ax.imshow(gridworld.render_level(task.level, tile=4))
        ax.set_title(f"score {scores[i]:.2f}, N {int(task.lifetime)}", fontsize=7)
    fig.suptitle(f"{title}: highest-scoring levels in the buffer ({int(filled.sum())} held)", fontsize=9)
    fig.tight_layout()
    results.save_figure(fig, path)
