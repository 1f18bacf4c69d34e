"""Running mean and variance of a stream of batches (Chan et al.'s parallel update), as a pure pytree."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class RunningMeanStd:
    mean: jax.Array
    var: jax.Array
    count: jax.Array  # float, starts at a tiny epsilon so the first update is well defined


def init_running_stats(shape: tuple[int, ...]) -> RunningMeanStd:
    return RunningMeanStd(jnp.zeros(shape, jnp.float32), jnp.ones(shape, jnp.float32), jnp.asarray(1e-4, jnp.float32))


def update_running_stats(stats: RunningMeanStd, batch: jax.Array) -> RunningMeanStd:
    """Fold in `batch` of shape (*batch_axes, *stats.mean.shape); all leading axes are samples."""
    n_batch_axes = batch.ndim - stats.mean.ndim
    axes = tuple(range(n_batch_axes))
    batch = batch.astype(jnp.float32)
    batch_count = jnp.asarray(batch.size // max(stats.mean.size, 1), jnp.float32)
    batch_mean = batch.mean(axis=axes)
    batch_var = batch.var(axis=axes)
    delta = batch_mean - stats.mean
    total = stats.count + batch_count
    mean = stats.mean + delta * batch_count / total
    m2 = stats.var * stats.count + batch_var * batch_count + delta**2 * stats.count * batch_count / total
    return RunningMeanStd(mean=mean, var=m2 / total, count=total)
