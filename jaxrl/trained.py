"""Trained policies back from a results folder: `jaxrl.load(DIR)`.

    trained = jaxrl.load("results/ppo-CartPole-v1-...")
    action = trained.act(obs, key, run=3)          # obs (B, obs_dim) raw observations -> actions (B, ...)
    greedy = trained.policy(obs, run=3)            # the mode of the policy, no key
    state = trained.policy_state(run=3)            # what acting needs: params (and observation statistics)
    trained.agent.act_with(state, obs, key)        # the same, through the agent

Run r is (grid point r // num_seeds, seed r % num_seeds), as in summary.json's `runs`. The agent is rebuilt from
the folder's run.json (its algorithm module is in summary.json), so nothing but the folder is needed.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import json
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxrl.checkpoints import restore_tree
from jaxrl.config import build
from jaxrl.envs.errors import InvalidChoiceError
from jaxrl.runner import policy_state


@dataclasses.dataclass(frozen=True)
class Trained:
    agent: Any
    policies: Any  # the kept policy states of every run, leading axis num_runs
    summary: dict[str, Any]

    @property
    def num_runs(self) -> int:
        return jax.tree.leaves(self.policies)[0].shape[0]

    def policy_state(self, run: int = 0) -> Any:
        if not 0 <= run < self.num_runs:
            raise InvalidChoiceError(f"invalid run {run!r}; choices: 0..{self.num_runs - 1}")
        return jax.tree.map(lambda x: x[run], self.policies)

    def act(self, obs: jax.Array, key: jax.Array, run: int = 0, deterministic: bool = False) -> jax.Array:
        """Actions (B, ...) of run `run`'s final policy for raw observations obs (B, obs_dim)."""
        return self._act_with(self.policy_state(run), obs, key, deterministic)

    @functools.cached_property
    def _act_with(self) -> Any:
        # Compiled once per observation shape (any run: the policy state is an argument). Run op by op, the first
        # call compiled each of ~100 operations (seconds) and every later call dispatched them one by one.
        return jax.jit(self.agent.act_with, static_argnums=3)

    def policy(self, obs: jax.Array, run: int = 0) -> jax.Array:
        """The greedy actions (B, ...) (the mode of the policy) of run `run` for raw observations obs (B, obs_dim)."""
        return self.act(obs, jax.random.key(0), run, deterministic=True)


def evaluate(trained: Trained, env_id: str | None = None, episodes: int | None = None, run: int | None = None, seed: int = 0) -> dict[str, Any]:
    """Fresh episodes of the kept policies (every run, or run `run`): on their own environment or on `env_id` (same
    observation and action spaces), `episodes` per run (default the agent's eval_episodes). Returns per-run mean
    returns and their IQM + 95% bootstrap CI."""
    from jaxrl import results

    agent = trained.agent
    changes = {k: v for k, v in (("env_id", env_id), ("eval_episodes", episodes)) if v is not None}
    if changes:
        module = importlib.import_module(trained.summary["algorithm_module"])
        agent = module.make_agent(dataclasses.replace(agent.config, **changes))
        if getattr(agent, "spaces", None) is not None and agent.spaces[:3] != trained.agent.spaces[:3]:
            raise InvalidChoiceError(f"{env_id!r} has other spaces than {trained.agent.config.env_id!r} "
                                     f"(obs_dim, actions, action_dim {agent.spaces[:3]} vs {trained.agent.spaces[:3]})")
    if run is not None:
        trained.policy_state(run)  # refuses an index out of range
    runs = list(range(trained.num_runs)) if run is None else [run]
    states = jax.tree.map(lambda x: x[np.asarray(runs)], trained.policies)
    keys = jax.random.split(jax.random.key(seed), len(runs))
    returns = np.asarray(jax.jit(jax.vmap(agent.episode_returns))(states, keys))  # (runs, episodes)
    means = returns.mean(axis=1)
    return {
        "env_id": agent.config.env_id,
        "episodes_per_run": int(returns.shape[1]),
        "seed": seed,
        "runs": runs,
        "mean_return_per_run": means.tolist(),
        "summary": results.summarize_returns(means),
    }


def _process_major(x: np.ndarray, processes: int) -> np.ndarray:
    """(batches, processes * n, ...) -> runs in order: (processes, batches, n, ...) flattened."""
    batches, rows = x.shape[:2]
    x = x.reshape(batches, processes, rows // processes, *x.shape[2:]).swapaxes(0, 1)
    return x.reshape(batches * rows, *x.shape[3:])


def load(path: str | Path) -> Trained:
    """The agent and the final policies of every run of a finished `jaxrl train` / `jaxrl run` / `jaxrl ued` folder."""
    path = Path(path)
    try:
        summary = json.loads((path / "summary.json").read_text())
        plan = json.loads((path / "run.json").read_text())
        kept = summary["policy"]
    except (OSError, ValueError, KeyError) as err:
        raise InvalidChoiceError(f"{str(path)!r} holds no kept policies (a finished results folder of this version): {type(err).__name__}") from None
    module = importlib.import_module(summary["algorithm_module"])
    config, _ = build(module.Config, module.Hparams, plan["settings"])
    agent = module.make_agent(config)
    carry = jax.eval_shape(agent.init, jax.random.key(0), agent.default_hparams())
    one_run = jax.eval_shape(lambda c: policy_state(agent, c), carry)
    batch = jax.tree.map(lambda x: jax.ShapeDtypeStruct((kept["batch_runs"], *x.shape), x.dtype), one_run)
    parts = [restore_tree(path / kept["dir"] / f"batch{b:04d}", batch) for b in range(kept["batches"])]
    # Batch b of a run shared by P processes holds each process's batch b in turn: rows (b, p, i) are run
    # (p, b, i) in run order (process p's share is contiguous).
    processes = kept.get("processes", 1)
    policies = jax.tree.map(lambda *xs: _process_major(np.stack(xs), processes), *parts)
    return Trained(agent, policies, summary)
