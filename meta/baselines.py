"""Baseline returns that put meta-training environments on one scale.

A score is `(R - R_init) / (R_ppo - R_init)`: 0 is the untrained (initial) policy, 1 is PPO-clip under the same
inner settings as the runs being scored (the same environment, budget, network and hyperparameters; only the
objective is PPO's clip with its default parameters), trained on a given list of seeds. It is not "PPO with
default settings": change the inner settings and the unit changes with them.

Both numbers are computed once per (inner configuration, seed list) and cached on disk (`$JAXRL_CACHE_DIR`,
default `~/.cache/jaxrl`), keyed by everything that changes them, the seed list included: a baseline over other
seeds is never reused. Searches score against their own baseline seeds (BASELINE_SEED_OFFSET + i, apart from the
seeds users pick); `jaxrl meta evaluate` scores against PPO-clip on the very seeds it evaluates, so that PPO-clip
scores exactly 1 (in the mean) against itself.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxrl import results
from jaxrl.config import apply_overrides

DEFAULT_SEEDS = 8
BASELINE_SEED_OFFSET = 1_000_000  # a search's baseline seeds stay apart from the seeds users pick for their own runs


def cache_dir() -> Path:
    return Path(os.environ.get("JAXRL_CACHE_DIR", Path.home() / ".cache" / "jaxrl")) / "baselines"


def baseline_seeds(num_seeds: int) -> list[int]:
    """A search's baseline seeds: BASELINE_SEED_OFFSET, BASELINE_SEED_OFFSET + 1, ..."""
    return list(range(BASELINE_SEED_OFFSET, BASELINE_SEED_OFFSET + num_seeds))


def baseline_config(config: Any) -> Any:
    """The same inner configuration with the algorithm's default objective (PPO's clip for the PPO family)."""
    from jaxrl.agents.ppo import PPOConfig

    if isinstance(config, PPOConfig):  # lpg's `objective` is its update rule: it has no default to fall back to
        return dataclasses.replace(config, objective="ppo_clip", objective_options=())
    return config


def baseline_overrides(overrides: dict[str, float]) -> dict[str, float]:
    """The inner runs' hyperparameter overrides without objective parameters (the baseline keeps its own objective)."""
    return {k: v for k, v in overrides.items() if not k.startswith("objective.")}


def is_baseline(config: Any, overrides: dict[str, float]) -> bool:
    """Whether runs with this configuration and these overrides are the baseline's own runs (PPO-clip, defaults)."""
    return baseline_config(config) == config and baseline_overrides(overrides) == overrides


def cache_path(config: Any, overrides: dict[str, float], seeds: Sequence[int]) -> tuple[Path, dict[str, Any]]:
    """Where the baseline of (configuration, overrides, seed list) is cached, and the identity stored beside it.
    config, overrides: as given to `baseline` (already reduced to the baseline's)."""
    versions = results.package_versions()
    identity = {"config": dataclasses.asdict(config), "overrides": overrides, "seeds": [int(s) for s in seeds],
                "versions": {k: versions.get(k) for k in ("jaxrl", "jax", "jaxlib", "gymnax", "brax")}}
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return cache_dir() / f"{config.env_id.replace('/', '_')}-{digest}.json", identity


def baseline(
    algorithm: Any,
    config: Any,
    overrides: dict[str, float],
    seeds: int | Sequence[int] = DEFAULT_SEEDS,
    *,
    ppo_returns: np.ndarray | None = None,
    use_cache: bool = True,
    max_devices: int | None = None,
) -> dict[str, float]:
    """{"ppo": mean final return of the default objective (PPO-clip), "init": of the untrained policy} over `seeds`.

    algorithm: a module of `jaxrl.agents`; config, overrides: the inner runs' (objective parameters among the
    overrides are dropped: the baseline keeps its own objective); seeds: a list of seeds (`jax.random.key(seed)`,
    as `jaxrl train` uses them) or a count n, meaning `baseline_seeds(n)`. ppo_returns: final returns of PPO-clip
    runs already trained under exactly these settings on exactly these seeds (e.g. `meta evaluate`'s own ppo_clip
    runs): "ppo" is then their mean, so those runs score exactly 1, and only the untrained policy is evaluated (or
    read from the cache). A cache entry is written only when absent."""
    from jaxrl.meta.population import PopulationEvaluator

    seeds = baseline_seeds(seeds) if isinstance(seeds, int) else [int(s) for s in seeds]
    config, overrides = baseline_config(config), baseline_overrides(overrides)
    path, identity = cache_path(config, overrides, seeds)
    cached = _read_cache(path) if use_cache else None
    if cached is not None and ppo_returns is None:
        return cached

    agent = algorithm.make_agent(config)
    hparams = apply_overrides(agent.default_hparams(), overrides)
    keys = jax.vmap(jax.random.key)(jnp.asarray(seeds))
    if ppo_returns is not None:
        if len(ppo_returns) != len(seeds):
            raise ValueError(f"ppo_returns has {len(ppo_returns)} runs for {len(seeds)} seeds")
        ppo = float(np.mean(ppo_returns))
    else:
        evaluator = PopulationEvaluator(agent, hparams, lambda member, base: base, population_size=1, num_seeds=len(seeds), max_devices=max_devices)
        ppo = float(evaluator(jnp.zeros((1,)), keys).mean())
    init = cached["init"] if cached is not None else _untrained_return(agent, hparams, keys)
    value = {"ppo": ppo, "init": init}
    if use_cache and cached is None:
        results.atomic_write_json(path, {**value, **identity})
    return value


def _read_cache(path: Path) -> dict[str, float] | None:
    try:
        cached = json.loads(path.read_text())
        return {"ppo": float(cached["ppo"]), "init": float(cached["init"])}
    except (OSError, ValueError, KeyError, TypeError):
        return None  # missing, or damaged: recomputed


def _untrained_return(agent: Any, hparams: Any, keys: jax.Array) -> float:
    """Mean final-evaluation return of the untrained policy, one run per key (the same key split as `train`)."""

    @jax.jit
    def untrained(key):
        init_key, eval_key = jax.random.split(key)
        return agent.evaluate(agent.init(init_key, hparams), eval_key)

    return float(np.mean([untrained(k) for k in keys]))


MIN_SPAN = 0.05  # of the larger baseline magnitude: the smallest PPO - init gap used as the unit


def span(base: dict[str, float]) -> float:
    """The unit of the score, PPO - init, floored: on a budget too short for PPO to beat the untrained policy
    (e.g. Acrobot at a few thousand steps, both -500) the raw gap is ~0 and would blow the score up. Under the
    floor PPO-clip itself scores below 1; `degenerate` tells when, and the meta commands warn."""
    floor = MIN_SPAN * max(1.0, abs(base["ppo"]), abs(base["init"]))
    return max(base["ppo"] - base["init"], floor)


def degenerate(base: dict[str, float]) -> bool:
    return base["ppo"] - base["init"] < MIN_SPAN * max(1.0, abs(base["ppo"]), abs(base["init"]))


def normalise(returns: np.ndarray, base: dict[str, float]) -> np.ndarray:
    """Returns on the baseline scale: 0 = untrained policy, 1 = PPO-clip under the same inner settings (see `span`)."""
    return (np.asarray(returns, np.float64) - base["init"]) / span(base)
