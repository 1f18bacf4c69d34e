"""Backend-specific speed-ups behind one switch, so algorithms call a named helper and carry no commentary.

Each helper computes what the plain JAX expression beside it computes. The random ones are bit-identical either
way (they only change how XLA compiles the hash); the network ones change float rounding only (the same sums in
another order). tests/test_speedups.py runs both branches.

The switch: on for the CPU backend by default; `JAXRL_SPEEDUPS=0` (or 1) in the environment, or `set_enabled`,
decides for everything traced afterwards (it is read at trace time, so it never costs a recompile by itself).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import jax
import jax.numpy as jnp

from jaxrl import prng

_override: bool | None = None


def enabled() -> bool:
    """Whether the speed-ups apply to what is traced now."""
    if _override is not None:
        return _override
    env = os.environ.get("JAXRL_SPEEDUPS")
    if env is not None:
        return env.strip() not in ("0", "false", "no", "off", "")
    return jax.default_backend() == "cpu"


def set_enabled(flag: bool | None) -> None:
    """Force the switch on or off; None restores the default (the environment variable, else CPU only)."""
    global _override
    _override = flag


@contextlib.contextmanager
def using(flag: bool) -> Iterator[None]:
    """Trace a block with the speed-ups on or off (tests compare the two)."""
    global _override
    before, _override = _override, flag
    try:
        yield
    finally:
        _override = before


def loop_key(key: jax.Array) -> jax.Array:
    """A key for random draws inside a hot loop, or for one large draw. Same numbers as `key`.

    On CPU, JAX lowers every threefry hash to a small XLA while loop: a few microseconds per call inside a rollout
    step (about a third of CartPole's rollout time) and 50-150 ms of compile per call site. The straight-line hash
    (`prng.unrolled`) fuses into one kernel. Not for draws that XLA slices into many consumers (an environment
    reset's draw): there it copies the whole hash into every slice, which compiles slower than JAX's loop."""
    return prng.unrolled(key) if enabled() else key


def split_for_loop(key: jax.Array, num: int) -> jax.Array:
    """`jax.random.split(key, num)`, keys that draw fast inside a loop (see `loop_key`)."""
    return jax.random.split(loop_key(key), num)


def permutations(key: jax.Array, n: int, shape: tuple[int, ...] = ()) -> jax.Array:
    """Uniform random permutations of range(n), int32 (*shape, n) (see `prng.permutation`: one one-operand
    sort, 4x faster than a two-operand sort on XLA:CPU)."""
    return prng.permutation(loop_key(key), n, shape)


def small_products_elementwise() -> bool:
    """Whether `networks.linear` writes tiny products as a multiply and a sum: XLA:CPU sends every dot to a
    library call costing about a microsecond whatever its size, which dominates a rollout step's 4 x 4 x 64
    product."""
    return enabled()


def barrier_transposed_weight_grad() -> bool:
    """Whether `networks.linear`'s weight gradient transposes its input behind an optimisation barrier, which
    sends the product to XLA:CPU's fast small-matrix kernel (~15% faster PPO minibatch step on CPU)."""
    return enabled()


def conv_as_patches() -> bool:
    """Whether `networks.conv3x3` is a product of a patch matrix (the 9 shifted copies of the image side by side)
    with the flattened kernel: XLA:CPU's convolution backward pass on the maze's 5x5 views took half of a
    maze student's learning step; as one matrix product it is a few per cent."""
    return enabled()


def critic_pass(critic, obs: jax.Array, last_obs: jax.Array, rollout_values: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(values of obs (T, N), values of last_obs (N,)) for a feed-forward critic; obs (T, N, obs_dim), last_obs
    (N, obs_dim), the rollout's values (T, N). Enabled: one pass over both, replacing the values the rollout computed
    step by step (one large product is cheaper than a small one per step on CPU, and XLA then drops the unused
    per-step critic). Otherwise the rollout's values are kept and only last_obs is evaluated. Same values up to
    float rounding."""
    if enabled():
        both = critic(jnp.concatenate([obs, last_obs[None]], axis=0))
        return both[:-1], both[-1]
    return rollout_values, critic(last_obs[None])[0]
