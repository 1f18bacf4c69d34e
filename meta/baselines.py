"""Baseline returns that put meta-training environments on one scale.

A score is `(R - R_init) / (R_ppo - R_init)`: 0 is the untrained (initial) policy, 1 is PPO with default
hyperparameters on the same inner budget. Both are computed once per inner configuration and cached on disk
(`$JAXRL_CACHE_DIR`, default `~/.cache/jaxrl`), keyed by everything that changes them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxrl import results
from jaxrl.config import apply_overrides

DEFAULT_SEEDS = 8
_SEED_OFFSET = 1_000_000  # baseline seeds stay apart from the seeds users pick for their own runs


def cache_dir() -> Path:
    return Path(os.environ.get("JAXRL_CACHE_DIR", Path.home() / ".cache" / "jaxrl")) / "baselines"


def baseline_config(config: Any) -> Any:
    """The same inner configuration with the algorithm's default objective (PPO's clip for the PPO family)."""
    if any(f.name == "objective" for f in dataclasses.fields(config)):
        return dataclasses.replace(config, objective="ppo_clip", objective_options=())
    return config


def baseline(
    algorithm: Any, config: Any, overrides: dict[str, float], num_seeds: int = DEFAULT_SEEDS, *, use_cache: bool = True, max_devices: int | None = None,
) -> dict[str, float]:
    """{"ppo": mean final return of the default objective, "init": of the untrained policy} over `num_seeds`.

    algorithm: a module of `jaxrl.agents`; overrides: hyperparameter overrides of the inner runs (objective
    parameters among them are dropped: the baseline keeps its own objective)."""
    from jaxrl.meta.population import PopulationEvaluator

    config = baseline_config(config)
    overrides = {k: v for k, v in overrides.items() if not k.startswith("objective.")}
    versions = results.package_versions()
    identity = {"config": dataclasses.asdict(config), "overrides": overrides, "seeds": num_seeds,
                "versions": {k: versions.get(k) for k in ("jaxrl", "jax", "jaxlib", "gymnax", "brax")}}
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]
    path = cache_dir() / f"{config.env_id.replace('/', '_')}-{digest}.json"
    if use_cache and path.exists():
        try:
            cached = json.loads(path.read_text())
            return {"ppo": float(cached["ppo"]), "init": float(cached["init"])}
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache entry is recomputed

    agent = algorithm.make_agent(config)
    hparams = apply_overrides(agent.default_hparams(), overrides)
    keys = jax.vmap(jax.random.key)(jnp.arange(_SEED_OFFSET, _SEED_OFFSET + num_seeds))
    evaluator = PopulationEvaluator(agent, hparams, lambda member, base: base, population_size=1, num_seeds=num_seeds, max_devices=max_devices)
    ppo = float(evaluator(jnp.zeros((1,)), keys).mean())

    @jax.jit
    def untrained(key):
        init_key, eval_key = jax.random.split(key)  # the same split as `train`
        return agent.evaluate(agent.init(init_key, hparams), eval_key)

    init = float(np.mean([untrained(k) for k in keys]))
    value = {"ppo": ppo, "init": init}
    if use_cache:
        results.atomic_write_json(path, {**value, **identity})
    return value


MIN_SPAN = 0.05  # of the larger baseline magnitude: the smallest PPO - init gap used as the unit


def span(base: dict[str, float]) -> float:
    """The unit of the score, PPO - init, floored: on a budget too short for PPO to beat the untrained policy
    (e.g. Acrobot at a few thousand steps, both -500) the raw gap is ~0 and would blow the score up."""
    floor = MIN_SPAN * max(1.0, abs(base["ppo"]), abs(base["init"]))
    return max(base["ppo"] - base["init"], floor)


def degenerate(base: dict[str, float]) -> bool:
    return base["ppo"] - base["init"] < MIN_SPAN * max(1.0, abs(base["ppo"]), abs(base["init"]))


def normalise(returns: np.ndarray, base: dict[str, float]) -> np.ndarray:
    """Returns on the baseline scale: 0 = untrained policy, 1 = PPO (see `span`)."""
    return (np.asarray(returns, np.float64) - base["init"]) / span(base)
