"""The candidate pool of a search: the top members of every generation, bounded to the best by training fitness.

A generation's fitness is measured on that generation's own seeds, so the member with the highest fitness ever
seen is partly the luckiest draw of seeds; the search therefore keeps several candidates and `validation.py`
picks among them on seeds that no generation used.

The pool is a fixed-shape pytree (it lives in the search's checkpoint, so a resumed search carries it on
exactly):

    {"members": solution-like tree with a leading axis of `size`,
     "fitness": (size,) float32, -inf in empty slots,
     "generation": (size,) int32, -1 in empty slots,
     "member": (size,) int32, the member's index in its generation, -1 in empty slots}

Entries are ordered by training fitness, highest first; at equal fitness (compared in float32, as stored) the
earlier generation, then the lower member index, comes first, and empty slots come last.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def empty_pool(solution: Any, size: int) -> dict[str, Any]:
    """A pool of `size` empty slots for members shaped like `solution`."""
    return {
        "members": jax.tree.map(lambda x: jnp.zeros((size, *jnp.shape(x)), jnp.asarray(x).dtype), solution),
        "fitness": jnp.full((size,), -jnp.inf, jnp.float32),
        "generation": jnp.full((size,), -1, jnp.int32),
        "member": jnp.full((size,), -1, jnp.int32),
    }


def update_pool(pool: dict[str, Any], population: Any, fitness: np.ndarray, generation: int, top_k: int) -> dict[str, Any]:
    """The pool with this generation's `top_k` members (by fitness) added, cut back to its size by fitness.

    population: pytree with a leading population axis; fitness: (population,), finite. Pure: `pool` is unchanged."""
    size = int(pool["fitness"].shape[0])
    fit32 = np.asarray(fitness, np.float32)
    top = np.argsort(-fit32, kind="stable")[:top_k]  # stable: equal fitness keeps the lower member index first
    all_fitness = np.concatenate([np.asarray(pool["fitness"]), fit32[top]])
    keep = np.argsort(-all_fitness, kind="stable")[:size]  # stable: the pool's (older) entries before new ones
    # NumPy on the host: the pool is small, and JAX's eager ops would compile on the first generations.
    return {
        "members": jax.tree.map(lambda old, new: np.concatenate([np.asarray(old), np.asarray(new)[top]])[keep], pool["members"], population),
        "fitness": all_fitness[keep].astype(np.float32),
        "generation": np.concatenate([np.asarray(pool["generation"]), np.full(len(top), generation, np.int32)])[keep],
        "member": np.concatenate([np.asarray(pool["member"]), top.astype(np.int32)])[keep],
    }


def filled(pool: dict[str, Any]) -> int:
    """How many slots hold a member (they are the first ones)."""
    return int(np.sum(np.asarray(pool["generation"]) >= 0))


def with_mean(pool: dict[str, Any], mean: Any, last_generation: int) -> tuple[Any, list[dict[str, Any]]]:
    """The candidates: the pool's members, then the search mean; as one stacked pytree (C, ...) and one row per
    candidate ({"candidate": "member" | "mean", "generation", "member", "training_fitness"}). The mean is the
    ES's after `last_generation`'s update; no generation trained it, so its training fitness is None."""
    n = filled(pool)
    stacked = jax.tree.map(lambda members, m: jnp.concatenate([members[:n], jnp.asarray(m, members.dtype)[None]]), pool["members"], mean)
    fitness, generation, member = (np.asarray(pool[k])[:n] for k in ("fitness", "generation", "member"))
    rows = [{"candidate": "member", "generation": int(g), "member": int(m), "training_fitness": float(f)}
            for f, g, m in zip(fitness, generation, member)]
    rows.append({"candidate": "mean", "generation": int(last_generation), "member": None, "training_fitness": None})
    return stacked, rows
