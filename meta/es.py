"""Evolution strategies over pytrees, built on evosax 0.3, that MAXIMISE fitness.

evosax minimises; the sign flip lives in `tell` and nowhere else (tests/test_meta_es.py checks the direction on
a toy problem).

    es = make_es("open_es", population_size=32, solution=params_template, sigma=0.03, lr=0.01)
    state = es.init(key, mean=params_template)
    population, state = es.ask(key, state)          # pytree with a leading population axis
    state, metrics = es.tell(key, population, fitness, state)   # fitness: (population,), higher is better
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from evosax.algorithms import algorithms as _EVOSAX
from evosax.core.fitness_shaping import centered_rank_fitness_shaping_fn, standardize_fitness_shaping_fn

from jaxrl.envs.errors import invalid_choice

ALGORITHMS = {name.lower(): cls for name, cls in _EVOSAX.items()}
def _unshaped(population: Any, fitness: jax.Array, state: Any, params: Any) -> jax.Array:
    """Fitness as given: for callers that shape it themselves (LPG's win/lose within antithetic pairs)."""
    return fitness


SHAPINGS = {"centered_rank": centered_rank_fitness_shaping_fn, "z_score": standardize_fitness_shaping_fn, "none": _unshaped}


def _strongly_typed(x: Any) -> Any:
    return jax.lax.convert_element_type(x, x.dtype) if getattr(x, "weak_type", False) else x


class ES(NamedTuple):
    name: str
    strategy: Any  # the evosax algorithm object
    params: Any  # its (static-shaped) parameters

    def init(self, key: jax.Array, mean: Any) -> Any:
        # evosax's states mix weakly and strongly typed fields, and which ones are weak changes from `init` to
        # `tell` (best fitness, the noise scale), so `ask` and `tell` compiled twice: every state here is strong.
        return jax.tree.map(_strongly_typed, self.strategy.init(key, mean, self.params))

    def ask(self, key: jax.Array, state: Any) -> tuple[Any, Any]:
        return self.strategy.ask(key, state, self.params)

    def tell(self, key: jax.Array, population: Any, fitness: jax.Array, state: Any) -> tuple[Any, dict]:
        """fitness: (population_size,), higher is better. evosax minimises, hence the one sign flip here."""
        state, metrics = self.strategy.tell(key, population, -jnp.asarray(fitness), state, self.params)
        return jax.tree.map(_strongly_typed, state), metrics

    def mean(self, state: Any) -> Any:
        """The search distribution's mean as a pytree like the solution."""
        return self.strategy.get_mean(state)


def make_es(
    name: str,
    population_size: int,
    solution: Any,
    *,
    sigma: float = 0.03,
    lr: float = 0.01,
    shaping: str = "centered_rank",
    antithetic: bool = True,
) -> ES:
    """An ES by evosax name (case-insensitive: open_es, cma_es, snes, ...). For OpenES, `sigma`, `lr`,
    `shaping` and `antithetic` set a constant noise scale, Adam on the mean, the fitness shaping and mirrored
    sampling; the other strategies keep their own fitness weighting and update rules and take `sigma` as their
    initial scale where they have one."""
    if name.lower() not in ALGORITHMS:
        raise invalid_choice("evolution strategy", name, ALGORITHMS)
    if shaping not in SHAPINGS:
        raise invalid_choice("fitness shaping", shaping, SHAPINGS)
    cls = ALGORITHMS[name.lower()]
    kwargs: dict[str, Any] = {}
    if cls.__name__ == "Open_ES":  # the others weight fitness in their own way; a generic shaping breaks them
        kwargs.update(
            fitness_shaping_fn=SHAPINGS[shaping], use_antithetic_sampling=antithetic,
            optimizer=optax.adam(lr), std_schedule=optax.constant_schedule(sigma),
        )
    strategy = cls(population_size, solution, **kwargs)
    params = strategy.default_params
    if hasattr(params, "std_init"):
        params = params.replace(std_init=sigma)
    return ES(name.lower(), strategy, params)
