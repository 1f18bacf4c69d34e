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


@pytest.mark.parametrize("name", ["open_es", "snes"])
def test_init_and_tell_give_states_of_one_type_so_ask_and_tell_compile_once(name):
    """evosax makes some fields weakly typed at init and strongly typed after tell (or the other way round): a jitted
    ask or tell then compiled twice, for the first generation and for the rest."""
    template = jax.tree.map(jnp.zeros_like, TARGET)
    es = make_es(name, population_size=4, solution=template, sigma=0.1, lr=0.05)
    ask, tell = jax.jit(es.ask), jax.jit(es.tell)
    first = es.init(jax.random.key(0), template)
    population, state = ask(jax.random.key(1), first)
    later, _ = tell(jax.random.key(2), population, jnp.arange(4.0), state)
    types = lambda s: [(x.shape, x.dtype, x.weak_type) for x in jax.tree.leaves(s)]
    assert types(later) == types(first)
    ask(jax.random.key(3), later)
    assert ask._cache_size() == 1
