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
    return _stack_words(_hash_counters(key, shape))


def _stack_words(words: tuple[jax.Array, jax.Array]) -> jax.Array:
    # A select rather than jnp.stack: XLA fuses the hash into a stack, and its kernel then holds the 20-round
    # hash once per stacked operand, which took LLVM 0.6 s to compile in PPO's rollout. A select needs both words
    # of an element, so the kernel holds the hash once.
    x0, x1 = words
    word = jax.lax.broadcasted_iota(np.uint32, x0.shape + (2,), x0.ndim)
    return jnp.where(word == 0, x0[..., None], x1[..., None])


def _random_bits(key: jax.Array, bit_width: int, shape: tuple[int, ...]) -> jax.Array:
    high, low = _hash_counters(key, shape)
    if bit_width == 64:
        return (high.astype(np.uint64) << np.uint64(32)) | low.astype(np.uint64)
    bits = high ^ low
    return bits if bit_width == 32 else bits.astype(np.dtype(f"uint{bit_width}"))


def _fold_in(key: jax.Array, data: jax.Array) -> jax.Array:
    counter = _seed(jnp.asarray(data, np.uint32))
    return _stack_words(threefry2x32(key[0], key[1], counter[0], counter[1]))


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


# Above this many index bits the random part of a sort code gets short enough for ties to be common; larger
# permutations fall back to `jax.random.permutation`.
_PERMUTATION_MAX_INDEX_BITS = 10


def permutation(key: jax.Array, n: int, shape: tuple[int, ...] = ()) -> jax.Array:
    """Independent uniformly random permutations of range(n): int32 (*shape, n).

    `jax.random.permutation` sorts (random key, index) pairs. XLA:CPU runs a two-operand sort through a generic
    comparator call per comparison, about 60 us for n = 512, which was 8% of PPO's learning step on CartPole.
    Here each element is one uint32 code, random high bits over its index in the low bits, and a one-operand
    sort (XLA's native comparison) orders them: 4x faster. Codes are unique, so the sort is a permutation.
    Equal random parts (probability about n^2 / 2^(33 - index bits); 1.6% for n = 512) are ordered by the index
    XOR a random mask, so a tied pair still lands in either order with probability 1/2. The bits come from the
    straight-line hash (JAX's loop version compiled in 130 ms). For n > 1024 this falls back to
    `jax.random.permutation`.
    """
    if _index_bits(n) > _PERMUTATION_MAX_INDEX_BITS:
        keys = jax.random.split(key, shape)
        return jnp.vectorize(lambda k: jax.random.permutation(k, n), signature="()->(n)")(keys).astype(jnp.int32)
    return _permutation_from_bits(jax.random.bits(unrolled(key), (*shape, n + 1), jnp.uint32))


def _index_bits(n: int) -> int:
    return max(1, (n - 1).bit_length())


def _permutation_from_bits(bits: jax.Array) -> jax.Array:
    """uint32 (..., n + 1) random words -> int32 (..., n) permutations: the first n order the elements, the last
    one's low bits are the tie-breaking mask."""
    n = bits.shape[-1] - 1
    low = np.uint32((1 << _index_bits(n)) - 1)
    tie_mask = bits[..., -1:] & low
    codes = (bits[..., :n] & ~low) | (jax.lax.iota(np.uint32, n) ^ tie_mask)
    return ((jnp.sort(codes, axis=-1) & low) ^ tie_mask).astype(jnp.int32)
