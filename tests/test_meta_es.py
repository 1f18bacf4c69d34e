"""The ES engine maximises: a shifted sphere over a pytree converges to its optimum."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

from jaxrl.envs import InvalidChoiceError
from jaxrl.meta.es import make_es

TARGET = {"a": jnp.array([1.0, -2.0, 0.5]), "b": jnp.array([[0.3, -0.7], [1.5, 0.0]])}


def fitness_fn(x):
    """Higher is better: 0 at TARGET."""
    return -sum(jnp.sum((x[k] - TARGET[k]) ** 2) for k in TARGET)


@pytest.mark.parametrize("name, sigma, lr, generations", [("open_es", 0.1, 0.05, 300), ("snes", 0.5, 0.0, 200)])
def test_es_maximises_a_shifted_sphere(name, sigma, lr, generations):
    template = jax.tree.map(jnp.zeros_like, TARGET)
    es = make_es(name, population_size=16, solution=template, sigma=sigma, lr=lr)

    @jax.jit
    def generation(state, key):
        ask_key, tell_key = jax.random.split(key)
        population, state = es.ask(ask_key, state)
        fitness = jax.vmap(fitness_fn)(population)
        state, _ = es.tell(tell_key, population, fitness, state)
        return state, fitness.mean()

    state = es.init(jax.random.key(0), template)
    start = float(fitness_fn(es.mean(state)))
    state, curve = jax.lax.scan(generation, state, jax.random.split(jax.random.key(1), generations))
    end = float(fitness_fn(es.mean(state)))
    assert start < -5.0 and end > -0.05, (start, end)  # a sign error would walk away from TARGET
    assert float(curve[-10:].mean()) > float(curve[:10].mean())


def test_bad_es_name():
    with pytest.raises(InvalidChoiceError, match="unknown evolution strategy 'openes'; closest: open_es"):
        make_es("openes", 8, {"x": jnp.zeros(2)})
