"""How fast this machine multiplies matrices right now, for benchmark scripts to print next to their figures: this
VM's speed drifts by 10-30% within minutes, so two outputs compare only together with the speed they ran at."""

import functools
import time

import jax
import jax.numpy as jnp


@functools.lru_cache(maxsize=None)
def _loop(repeats: int):
    # Each product reads a fresh scaling of x, so XLA cannot hoist it out of the loop.
    return jax.jit(lambda x, w: jax.lax.fori_loop(0, repeats, lambda i, acc: acc + (x * (1 + i * 1e-6)) @ w, jnp.zeros((x.shape[0], w.shape[1]))))


def product_gflops(rows: int, inner: int, cols: int, repeats: int = 200) -> float:
    """GFLOP/s of `repeats` products (rows, inner) @ (inner, cols), timed after a first (compiling) call."""
    x, w = jnp.full((rows, inner), 1e-2), jnp.full((inner, cols), 1e-2)
    loop = _loop(repeats)
    jax.block_until_ready(loop(x, w))
    start = time.perf_counter()
    jax.block_until_ready(loop(x, w))
    return 2 * rows * inner * cols * repeats / (time.perf_counter() - start) / 1e9
