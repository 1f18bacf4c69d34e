"""Candidate pool, validation and baseline cache keys without training anything: a fake evaluator whose return
is a known function of (member, seed) stands in for the inner runs."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl.agents.ppo import PPOConfig
from jaxrl.meta import baselines
from jaxrl.meta.candidates import empty_pool, filled, update_pool, with_mean
from jaxrl.meta.search import Task
from jaxrl.meta.validation import VALIDATION_SEED_OFFSET, run_candidates, validate, validation_seeds


class FakeEvaluator:
    """return(member, key) = 100 * member["w"][0] + the key's seed, over a fixed population_size x num_seeds."""

    def __init__(self, population_size: int, num_seeds: int, value=None) -> None:
        self.population_size, self.num_seeds, self.calls = population_size, num_seeds, 0
        self.value = value or (lambda w, seed: 100.0 * w + seed)

    def __call__(self, population, keys):
        assert population["w"].shape[0] == self.population_size and keys.shape == (self.num_seeds,)
        self.calls += 1
        seeds = np.asarray(jax.vmap(jax.random.key_data)(keys))[:, 1].astype(np.float64)
        w = np.asarray(population["w"][:, 0], np.float64)
        return self.value(w[:, None], seeds[None, :])


def _population(values):
    return {"w": jnp.asarray(values, jnp.float32)[:, None]}


def test_pool_keeps_each_generations_top_k_then_the_best_by_fitness():
    pool = empty_pool({"w": jnp.zeros(1)}, 3)
    assert filled(pool) == 0
    pool = update_pool(pool, _population([10, 11, 12, 13]), np.array([0.5, 2.0, 1.0, 2.0]), 0, 2)
    # Top 2 of generation 0: members 1 and 3 (equal fitness: the lower index first).
    assert np.asarray(pool["member"]).tolist() == [1, 3, -1] and filled(pool) == 2
    before = {k: np.asarray(v).copy() for k, v in pool.items() if k != "members"}
    new = update_pool(pool, _population([20, 21, 22, 23]), np.array([2.0, 0.0, 3.0, 1.0]), 1, 2)
    assert all(np.array_equal(np.asarray(pool[k]), v) for k, v in before.items())  # pure
    # 3 slots for {g0 m1: 2, g0 m3: 2, g1 m2: 3, g1 m0: 2}: at equal fitness the older entries stay.
    assert list(zip(np.asarray(new["generation"]).tolist(), np.asarray(new["member"]).tolist())) == [(1, 2), (0, 1), (0, 3)]
    np.testing.assert_array_equal(np.asarray(new["members"]["w"][:, 0]), [22, 11, 13])
    np.testing.assert_array_equal(np.asarray(new["fitness"]), np.float32([3.0, 2.0, 2.0]))

    stacked, rows = with_mean(new, {"w": jnp.array([7.0])}, last_generation=1)
    np.testing.assert_array_equal(np.asarray(stacked["w"][:, 0]), [22, 11, 13, 7])
    assert rows[-1] == {"candidate": "mean", "generation": 1, "member": None, "training_fitness": None}
    assert rows[0] == {"candidate": "member", "generation": 1, "member": 2, "training_fitness": 3.0}


def test_run_candidates_pads_and_chunks_to_the_evaluators_shape():
    evaluator = FakeEvaluator(population_size=2, num_seeds=2)
    candidates = _population([1, 2, 3, 4, 5])  # 3 groups of 2, the last padded
    keys = jax.vmap(jax.random.key)(jnp.arange(10, 13))  # 2 groups of 2 keys, the last padded
    out = run_candidates(evaluator, candidates, keys)
    expected = 100.0 * np.arange(1, 6)[:, None] + np.arange(10, 13)[None, :]
    np.testing.assert_array_equal(out, expected)
    assert evaluator.calls == 6


def test_validation_picks_the_best_on_validation_seeds_not_the_luckiest_in_training():
    # Member a had the highest training fitness (lucky seeds) but validates worst; b validates best.
    pool = update_pool(empty_pool({"w": jnp.zeros(1)}, 4), _population([1.0, 2.0, 3.0, 4.0]), np.array([9.0, 1.0, 0.5, 0.0]), 0, 2)
    returns = lambda w, seed: np.where(w == 2.0, 80.0, np.where(w == 1.0, 10.0, 40.0)) + 0.01 * (seed - VALIDATION_SEED_OFFSET)
    tasks = [Task("A", FakeEvaluator(4, 2, returns), {"ppo": 50.0, "init": 0.0}), Task("B", FakeEvaluator(4, 2, returns), {"ppo": 100.0, "init": 0.0})]
    checked = validate(tasks, pool, {"w": jnp.array([3.0])}, 0, validation_seeds(3), describe=lambda m: {"w": float(m["w"][0])})
    assert checked.seeds == [VALIDATION_SEED_OFFSET, VALIDATION_SEED_OFFSET + 1, VALIDATION_SEED_OFFSET + 2]
    assert [r["candidate"] for r in checked.rows] == ["member", "member", "mean"] and checked.rows[0]["training_fitness"] == 9.0
    assert checked.selected == 1 and float(checked.member["w"][0]) == 2.0 and checked.rows[1]["hparams"] == {"w": 2.0}
    row = checked.rows[1]  # normalised: A 80/50 = 1.6, B 80/100 = 0.8 (plus the seed term), averaged over environments
    assert row["validation_per_env"]["A"] == pytest.approx(1.6 + 0.01 / 50) and row["validation_per_env"]["B"] == pytest.approx(0.8 + 0.01 / 100)
    assert row["validation_score"] == pytest.approx(1.2 + 0.01 * (1 / 50 + 1 / 100) / 2)
    assert row["validation_ci_low"] < row["validation_score"] < row["validation_ci_high"]


def test_validation_seeds_are_apart_from_baseline_seeds():
    assert not set(validation_seeds(8)) & set(baselines.baseline_seeds(8))
    assert max(baselines.baseline_seeds(1_000_000)) < VALIDATION_SEED_OFFSET


def test_baseline_cache_is_keyed_by_the_seed_list():
    config = PPOConfig(env_id="CartPole-v1", total_timesteps=256)
    path = lambda seeds: baselines.cache_path(config, {"lr": 0.01}, seeds)[0]
    assert path([0, 1]) == path([0, 1])
    assert len({path([0, 1]), path([1, 2]), path([0, 1, 2]), path(baselines.baseline_seeds(2))}) == 4
    assert baselines.cache_path(config, {}, [0, 1])[1]["seeds"] == [0, 1]
