"""The run axis: many independent runs of one agent (grid points x seeds, or ES members x seeds) as one program.

Both the runner (`jaxrl train`) and the meta layer's population evaluation go through `RunAxis`:

    axis = RunAxis.plan(agent, hparams, num_runs=64)
    fn = axis.map(lambda key, hp: agent.train(key, hp))   # a devices.RunMap over one batch of runs
    for sl in axis.batches(): out = fn(keys[sl], hparams[sl])

Runs that do not fit in the device's memory at once are split into equal batches that run one after another;
within a batch the runs are vmapped in fixed-size blocks and split over the devices (see devices.RunMap), so a
run's numbers never depend on the device count or the batching.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from jaxrl.checkpoints import is_key
from jaxrl.devices import RunMap, default_block_runs, largest_divisor_at_most
from jaxrl.envs.errors import InvalidChoiceError

_FALLBACK_MEMORY = 8 * 2**30


def tree_bytes(tree: Any) -> int:
    """Bytes of a pytree of arrays or ShapeDtypeStructs (typed keys count as two uint32 words)."""
    return sum(int(np.prod(x.shape)) * (8 if is_key(x) else np.dtype(x.dtype).itemsize) for x in jax.tree.leaves(tree))


def available_memory_bytes(device: Any = None) -> int:
    """Free memory of `device` (the first local device by default): its allocator's limit minus what is in use
    where the backend reports it (GPU, TPU), else the host's available memory (a CPU device's memory)."""
    device = device or jax.local_devices()[0]
    try:
        stats = device.memory_stats()
    except Exception:  # backends without allocator statistics raise or return None
        stats = None
    if stats and "bytes_limit" in stats:
        return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
    try:
        with open("/proc/meminfo") as f:
            info = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in f}
        return info.get("MemAvailable", info["MemTotal"])
    except (OSError, KeyError, ValueError):
        return _FALLBACK_MEMORY


def per_run_bytes(agent: Any, hparams: Any) -> int:
    """An upper bound on the memory one run needs: its carry twice (old and new) plus every value one update
    computes at its top level (the rollout, its advantages, the shuffled minibatches...), read off the traced
    update, so it holds for any agent on the protocol without knowing its internals. It depends on shapes only, so
    it is traced once per agent and hyperparameter structure."""
    leaves, treedef = jax.tree.flatten(hparams)
    return _per_run_bytes(agent, treedef, tuple((np.shape(x), jax.dtypes.result_type(x)) for x in leaves))


@functools.lru_cache(maxsize=32)
def _per_run_bytes(agent: Any, treedef: Any, shapes: tuple) -> int:
    hparams = jax.tree.unflatten(treedef, [jax.ShapeDtypeStruct(shape, dtype) for shape, dtype in shapes])
    carry = jax.eval_shape(agent.init, jax.random.key(0), hparams)
    jaxpr = jax.make_jaxpr(agent.update)(carry, hparams)
    values = sum(tree_bytes([v.aval for v in eqn.outvars]) for eqn in jaxpr.jaxpr.eqns)
    return 2 * tree_bytes(carry) + values


@dataclasses.dataclass(frozen=True)
class RunAxis:
    """`num_runs` runs in `num_runs // batch_runs` equal batches; `block_runs` runs vmapped together."""

    num_runs: int
    batch_runs: int
    block_runs: int
    max_devices: int | None = None
    fit: int = 0  # runs that fit in memory at once (0: not measured)

    @classmethod
    def plan(
        cls, agent: Any, hparams: Any, num_runs: int, *, max_batch_runs: int | None = None,
        block_runs: int | None = None, max_devices: int | None = None, memory_fraction: float = 0.5,
        block_of_runs: int | None = None,
    ) -> RunAxis:
        """Equal batches when the runs do not fit in `memory_fraction` of the free device memory at once.
        block_of_runs: the run count the default block is chosen for (all processes' runs, so the numbers do not
        depend on the process count); by default this batch's."""
        run_bytes = per_run_bytes(agent, hparams)
        fit = max(1, int(memory_fraction * available_memory_bytes() // run_bytes))
        batch_runs = largest_divisor_at_most(num_runs, min(fit, max_batch_runs or num_runs))
        block = block_runs or default_block_runs(block_of_runs or batch_runs, run_bytes)
        if batch_runs % block:
            raise InvalidChoiceError(f"block_runs={block} must divide the {batch_runs} runs of a batch")
        return cls(num_runs, batch_runs, block, max_devices, fit)

    @property
    def num_batches(self) -> int:
        return self.num_runs // self.batch_runs

    def batches(self, start: int = 0) -> list[tuple[int, slice]]:
        """(batch index, slice of the run axis) for every batch from `start` on."""
        return [(b, slice(b * self.batch_runs, (b + 1) * self.batch_runs)) for b in range(start, self.num_batches)]

    def map(self, fn: Callable, donate_argnums: tuple[int, ...] = ()) -> RunMap:
        """`fn` over one batch's leading run axis (see devices.RunMap)."""
        return RunMap(fn, self.batch_runs, self.block_runs, self.max_devices, donate_argnums=donate_argnums)

    def run_all(self, fn: RunMap, *args: Any) -> tuple[Any, float, float]:
        """`fn` (from `map`) over all runs, batch after batch: args with leading axis num_runs -> (the outputs as
        NumPy arrays with leading axis num_runs, seconds compiling, seconds running)."""
        out, compile_s, run_s = [], 0.0, 0.0
        for _, sl in self.batches():
            batch = jax.tree.map(lambda x: x[sl], args)
            compile_s += fn.compile(*batch)
            t0 = time.perf_counter()
            out.append(jax.device_get(fn(*batch)))
            run_s += time.perf_counter() - t0
        return jax.tree.map(lambda *xs: np.concatenate(xs), *out), compile_s, run_s
