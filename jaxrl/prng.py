"""JAX's default PRNG (threefry2x32, partitionable) with the hash written out as straight-line jnp code.

Why: on CPU, JAX lowers every threefry hash to a 5-iteration XLA while loop (to keep compile time down). Inside a
training loop's step that loop costs a few microseconds per random call, and a rollout step makes three (the
environment batch's split, the auto-reset split, the reset draw): about a third of CartPole's rollout time.
Straight-line code fuses into one kernel. Switching JAX's own CPU lowering to straight-line code for every call
made our PPO program compile five times slower (5.5 s -> 27 s), so only keys used inside hot loops are converted,
with `unrolled`.

The numbers are bit-identical to `jax.random.key`'s: converting a key changes speed, never results (tested).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.random import define_prng_impl

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))  # Threefry-2x32's rotation schedule (Salmon et al., 2011)
_PARITY = np.uint32(0x1BD11BDA)


def _rotate_left(x: jax.Array, r: int) -> jax.Array:
    return (x << np.uint32(r)) | (x >> np.uint32(32 - r))


def threefry2x32(k0: jax.Array, k1: jax.Array, x0: jax.Array, x1: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The 20-round Threefry-2x32 block cipher of counters (x0, x1) under key (k0, k1); uint32 arrays that
    broadcast together."""
    schedule = (k0, k1, k0 ^ k1 ^ _PARITY)
    x0, x1 = x0 + schedule[0], x1 + schedule[1]
    for block in range(5):
        for r in _ROTATIONS[block % 2]:
            x0 = x0 + x1
            x1 = _rotate_left(x1, r) ^ x0
        x0 = x0 + schedule[(block + 1) % 3]
        x1 = x1 + schedule[(block + 2) % 3] + np.uint32(block + 1)
    return x0, x1


def _hash_counters(key: jax.Array, shape: tuple[int, ...]) -> tuple[jax.Array, jax.Array]:
    # The partitionable layout: element i of `shape` hashes the 64-bit counter i, split into (high, low) words.
    size = int(np.prod(shape))
    low = jax.lax.iota(np.uint32, size).reshape(shape)
    return threefry2x32(key[0], key[1], jnp.zeros(shape, np.uint32), low)


def _seed(seed: jax.Array) -> jax.Array:
    seed = jnp.asarray(seed)
    high = (seed >> 32).astype(np.uint32) if seed.dtype.itemsize == 8 else jnp.zeros((), np.uint32)
    return jnp.stack([high, seed.astype(np.uint32)])


def _split(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    return jnp.stack(_hash_counters(key, shape), axis=-1)


def _random_bits(key: jax.Array, bit_width: int, shape: tuple[int, ...]) -> jax.Array:
    high, low = _hash_counters(key, shape)
    if bit_width == 64:
        return (high.astype(np.uint64) << np.uint64(32)) | low.astype(np.uint64)
    bits = high ^ low
    return bits if bit_width == 32 else bits.astype(np.dtype(f"uint{bit_width}"))


def _fold_in(key: jax.Array, data: jax.Array) -> jax.Array:
    counter = _seed(jnp.asarray(data, np.uint32))
    return jnp.stack(threefry2x32(key[0], key[1], counter[0], counter[1]))


UNROLLED_THREEFRY = define_prng_impl(
    key_shape=(2,), seed=_seed, split=_split, random_bits=_random_bits, fold_in=_fold_in,
    name="threefry2x32_unrolled", tag="fry_u",
)


def unrolled(keys: jax.Array) -> jax.Array:
    """The same keys (typed threefry keys of any shape, or raw uint32 (..., 2) ones) using the straight-line hash.
    Other key types, and everything under the older non-partitionable threefry layout
    (`jax_threefry_partitionable=False`), are returned unchanged."""
    typed = jnp.issubdtype(keys.dtype, jax.dtypes.prng_key)
    threefry = (not typed and keys.shape[-1:] == (2,)) or (typed and str(jax.random.key_impl(keys)) == "threefry2x32")
    if not threefry or not jax.config.jax_threefry_partitionable:
        return keys
    return jax.random.wrap_key_data(jax.random.key_data(keys) if typed else keys, impl=UNROLLED_THREEFRY)
