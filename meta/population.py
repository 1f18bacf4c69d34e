"""Fitness of a population: every member trained from scratch on the same seeds (common random numbers), all
members x seeds as one vmapped run axis, sharded over the devices and split into equal batches when they do
not fit in memory (the same rules as `jaxrl.runner`).

    evaluator = PopulationEvaluator(agent, base_hparams, to_hparams, population_size=32, num_seeds=2)
    returns = evaluator(population, keys)   # (P, S) final returns, a NumPy array

`to_hparams(member, base_hparams) -> hparams` says where a member goes (an objective's weights, a few
hyperparameters); it is traced, so the whole population is one compiled program.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxrl.run_axis import RunAxis


class PopulationEvaluator:
    def __init__(
        self,
        agent: Any,
        base_hparams: Any,
        to_hparams: Callable[[Any, Any], Any],
        population_size: int,
        num_seeds: int,
        *,
        max_devices: int | None = None,
        max_batch_runs: int | None = None,
        block_runs: int | None = None,
    ) -> None:
        self.agent = agent
        self.population_size, self.num_seeds = population_size, num_seeds
        num_runs = population_size * num_seeds
        self.axis = RunAxis.plan(agent, base_hparams, num_runs, max_batch_runs=max_batch_runs, block_runs=block_runs, max_devices=max_devices)
        self.batch_runs, self.num_batches = self.axis.batch_runs, self.axis.num_batches
        self.env_steps_per_call = num_runs * agent.num_updates * agent.steps_per_update

        def final_return(member: Any, key: jax.Array) -> jax.Array:
            return agent.train(key, to_hparams(member, base_hparams))[1]["final_return"]

        self._map = self.axis.map(final_return)
        self._layout = jax.jit(self._runs)  # jitted: as eager ops it compiled anew in the first generations
        self.devices = len(self._map.devices)
        self.compile_s = 0.0
        self.run_s = 0.0

    def _runs(self, population: Any, keys: jax.Array) -> tuple[Any, jax.Array]:
        """(P, ...) members and (S,) keys -> run-axis arrays (P * S, ...): run r = member r // S, seed r % S."""
        members = jax.tree.map(lambda x: jnp.repeat(x, self.num_seeds, axis=0), population)
        return members, jnp.tile(keys, self.population_size)

    def __call__(self, population: Any, keys: jax.Array) -> np.ndarray:
        """population: pytree with leading axis P; keys: (S,) typed keys -> final returns (P, S)."""
        returns, compile_s, run_s = self.axis.run_all(self._map, *self._layout(population, keys))
        self.compile_s += compile_s
        self.run_s += run_s
        return returns.reshape(self.population_size, self.num_seeds)
