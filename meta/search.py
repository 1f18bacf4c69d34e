"""The outer loop shared by objective discovery and hyperparameter tuning.

One generation: ask the ES for a population, train every member on every meta-training environment over the
same seeds (one compiled program per environment, see `population.py`), put each environment's mean final
returns on the baseline scale (`baselines.normalise`: 1 = PPO-clip under the same inner settings), average them
into the fitness, tell the ES, and add the generation's `candidates` best members to the candidate pool
(`candidates.py`, bounded to the `candidate_pool` best by training fitness). The search does not pick a winner:
training fitness is measured on each generation's own seeds and so favours lucky draws; `validation.py` re-scores
the pool and the final search mean on seeds that no generation used.

Generation g draws its keys from `fold_in(key, g)` alone, and the ES state and the pool are both checkpointed,
so a run resumed from a checkpoint after generation g continues exactly as the uninterrupted run would have
(tests/test_meta_cli.py checks this bit for bit).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxrl.meta.baselines import normalise
from jaxrl.meta.candidates import empty_pool, update_pool
from jaxrl.meta.es import ES
from jaxrl.meta.generations import run_generations
from jaxrl.meta.population import PopulationEvaluator


@dataclass
class Task:
    """One meta-training environment: its evaluator and its baseline (see baselines.py)."""

    env_id: str
    evaluator: PopulationEvaluator
    baseline: dict[str, float]


@dataclass
class SearchResult:
    status: str  # finished | interrupted
    mean: Any  # the ES's search mean at the end
    pool: dict[str, Any]  # the candidate pool (candidates.py): the top members by training fitness
    history: list[dict[str, Any]]
    timing: dict[str, float]

    @property
    def last_generation(self) -> int:
        """The last generation run (-1 if none): the search mean is the ES's after its update."""
        return self.history[-1]["generation"] if self.history else -1


def search(
    es: ES,
    solution: Any,
    tasks: list[Task],
    key: jax.Array,
    generations: int,
    num_seeds: int,
    out: Path,
    *,
    checkpoint_every: int = 10,
    candidates: int = 2,
    candidate_pool: int = 16,
    resume: bool = False,
    progress: bool = True,
    describe: Callable[[Any], dict] | None = None,
) -> SearchResult:
    """Run generations [start, generations) where start is 0 or the checkpoint's; checkpoints in out/checkpoints.

    solution: the pytree the ES starts from (its mean); candidates: members of each generation added to the pool
    (its best by fitness); candidate_pool: the pool's size, the best by fitness kept; describe(member) -> a dict
    shown in the history for the best member of each generation (e.g. decoded hyperparameters)."""
    init_key, loop_key = jax.random.split(key)
    ask, tell = jax.jit(es.ask), jax.jit(es.tell)
    abstract = {
        "es": jax.eval_shape(es.init, init_key, solution),
        "pool": jax.eval_shape(lambda s: empty_pool(s, candidate_pool), solution),
    }

    def init_state() -> dict[str, Any]:
        return {"es": es.init(init_key, solution), "pool": empty_pool(solution, candidate_pool)}

    @jax.jit
    def generation_keys(g: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Generation g's ask key, seed keys (E, S) of each environment (common random numbers), tell key."""
        ask_key, eval_key, tell_key = jax.random.split(jax.random.fold_in(loop_key, g), 3)
        seeds = jax.vmap(lambda e: jax.random.split(jax.random.fold_in(eval_key, e), num_seeds))(jnp.arange(len(tasks)))
        return ask_key, seeds, tell_key

    # ask, tell and the keys compile here, not in the first generations, whose time would then be the compile's;
    # twice, since the ES state a generation receives from `tell` is placed differently from the initial one.
    t0 = time.perf_counter()
    es_state = init_state()["es"]
    for g in range(2):
        population, es_state = ask(generation_keys(g)[0], es_state)
        es_state, _ = tell(init_key, population, jnp.zeros(es.strategy.population_size, jnp.float32), es_state)
    jax.block_until_ready(es_state)
    es_compile_s = time.perf_counter() - t0
    inner_s = lambda: sum(t.evaluator.run_s for t in tasks)  # noqa: E731

    def generation(state: dict[str, Any], g: int) -> tuple[dict[str, Any], dict[str, Any]]:
        inner_before = inner_s()
        ask_key, seed_keys, tell_key = generation_keys(g)
        population, es_state = ask(ask_key, state["es"])
        fitness = np.zeros(es.strategy.population_size)
        per_env = {}
        for e, task in enumerate(tasks):
            member_returns = task.evaluator(population, seed_keys[e]).mean(axis=1)
            finite = np.isfinite(member_returns)
            if not finite.all():
                print(f"generation {g}, {task.env_id}: members {np.flatnonzero(~finite).tolist()} returned NaN/Inf; they get the worst fitness", file=sys.stderr)
            per_env[task.env_id] = {"best": float(member_returns[finite].max(initial=-np.inf)), "mean": float(member_returns[finite].mean()) if finite.any() else None}
            fitness += normalise(member_returns, task.baseline) / len(tasks)
        finite = np.isfinite(fitness)  # a diverged member ranks below every finite one
        fitness = np.where(finite, fitness, fitness[finite].min() - 1.0 if finite.any() else 0.0)
        es_state, _ = tell(tell_key, population, jnp.asarray(fitness, jnp.float32), es_state)
        i = int(np.argmax(fitness))
        entry = {"generation": g, "best": float(fitness.max()), "mean": float(fitness.mean()), "returns": per_env,
                 "inner_s": inner_s() - inner_before}  # the inner runs alone; time_s - inner_s is the ES and the host
        if describe is not None:
            entry["best_member"] = describe(jax.tree.map(lambda x: x[i], population))
        return {"es": es_state, "pool": update_pool(state["pool"], population, fitness, g, candidates)}, entry

    bar = _progress(progress, generations, 0)

    def show(entry: dict[str, Any]) -> None:
        bar.n = entry["generation"] + 1
        bar.set_postfix_str(_postfix(entry))

    done = run_generations(out / "checkpoints", init_state, abstract, generation, generations, checkpoint_every=checkpoint_every,
                           resume=resume, compile_seconds=lambda: sum(t.evaluator.compile_s for t in tasks), on_entry=show)
    bar.close()
    history, start = done.history, done.start
    env_steps = sum(t.evaluator.env_steps_per_call for t in tasks) * (len(history) - start)
    new_s = sum(h["time_s"] for h in history[start:])
    run_s = sum(h["time_s"] for h in history)
    timing = {
        "compile_s": es_compile_s + sum(t.evaluator.compile_s for t in tasks),
        "run_s": run_s,
        "inner_s": sum(h.get("inner_s", 0.0) for h in history),
        "seconds_per_generation": run_s / max(len(history), 1),
        "env_steps_per_s": env_steps / new_s if new_s else None,
    }
    return SearchResult(done.status, es.mean(done.state["es"]), done.state["pool"], history, timing)


def _progress(enabled: bool, total: int, initial: int):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, disable=not enabled, unit="gen", dynamic_ncols=True, file=sys.stderr)


def _postfix(entry: dict[str, Any]) -> str:
    envs = ", ".join(f"{k} {v['best']:.1f}" for k, v in entry["returns"].items())
    return f"fitness best {entry['best']:.3f} mean {entry['mean']:.3f} (PPO-clip = 1) | best return {envs} | {entry['time_s']:.1f} s/gen"
