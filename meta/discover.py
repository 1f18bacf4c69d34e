"""Objective discovery: an ES over a learned objective's parameters, where one fitness evaluation is a whole
inner training run. A generation is one compiled program: population x seeds of `agent.train`, vmapped, with
every member trained on the same seeds (common random numbers).

This is the engine only; the `jaxrl meta discover` command, baselines, checkpoints and plots come next.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from jaxrl.meta.es import ES


def make_population_fitness(agent: Any, num_seeds: int) -> Callable[[Any, jax.Array], jax.Array]:
    """`fitness(objective_params (P, ...), key) -> (P,)`: mean final return of `num_seeds` inner runs of each
    member. Every member sees the same `num_seeds` keys split from `key`."""
    base = agent.default_hparams()

    def member(objective_params: Any, keys: jax.Array) -> jax.Array:
        hparams = base.replace(objective=objective_params)
        _, metrics = jax.vmap(agent.train, in_axes=(0, None))(keys, hparams)
        return metrics["final_return"].mean()

    def fitness(population: Any, key: jax.Array) -> jax.Array:
        keys = jax.random.split(key, num_seeds)
        return jax.vmap(member, in_axes=(0, None))(population, keys)

    return fitness


def make_generation(es: ES, fitness: Callable[[Any, jax.Array], jax.Array]):
    """One jitted ES generation: ask, evaluate the population, tell. Returns (state, fitness (P,))."""

    @jax.jit
    def generation(state: Any, key: jax.Array) -> tuple[Any, jax.Array]:
        ask_key, eval_key, tell_key = jax.random.split(key, 3)
        population, state = es.ask(ask_key, state)
        values = fitness(population, eval_key)
        state, _ = es.tell(tell_key, population, values, state)
        return state, values

    return generation


def discover(agent: Any, es: ES, key: jax.Array, generations: int, num_seeds: int) -> tuple[Any, list[dict[str, float]]]:
    """Run `generations` generations from the objective's own init (PPO init for `ppo_init=True`).

    Returns the final search mean (objective params) and per-generation best / mean fitness."""
    generation = make_generation(es, make_population_fitness(agent, num_seeds))
    init_key, key = jax.random.split(key)
    state = es.init(init_key, agent.default_hparams().objective)
    history = []
    for g in range(generations):
        state, values = generation(state, jax.random.fold_in(key, g))
        history.append({"generation": g, "best": float(jnp.max(values)), "mean": float(jnp.mean(values))})
    return es.mean(state), history
