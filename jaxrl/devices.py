"""Devices for the run axis (seeds x grid points).

On a CPU, XLA runs one program on one core for small networks like ours; exposing each core as a device
and sharding the runs across them uses them all (CartPole PPO, 32 seeds on 2 cores: 128k -> 270k steps/s).
"""

from __future__ import annotations

import functools
import io
import math
import os
import pickle
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

import jax
import numpy as np
from jax._src.lib import xla_client
from jax.sharding import Mesh, NamedSharding, PartitionSpec, SingleDeviceSharding

from jaxrl import speedups

_FLAG = "--xla_force_host_platform_device_count"


def use_all_cpu_cores() -> None:
    """Expose every CPU core as a JAX device. Must run before JAX starts its backends; does nothing if the user
    already set the device count, or if JAX is already initialised (then it cannot take effect)."""
    flags = os.environ.get("XLA_FLAGS", "")
    if _FLAG in flags or _backends_started():
        return
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if cores > 1:
        os.environ["XLA_FLAGS"] = f"{flags} {_FLAG}={cores}".strip()


def _backends_started() -> bool:
    from jax._src import xla_bridge

    return bool(getattr(xla_bridge, "_backends", {}))


def run_devices(num_runs: int, max_devices: int | None = None) -> list:
    """The devices to split `num_runs` runs over: as many as divide the runs evenly (at most `max_devices`)."""
    devices = jax.local_devices()[: max_devices or None]
    return devices[: math.gcd(num_runs, len(devices))]


def run_sharding(num_runs: int, max_devices: int | None = None) -> NamedSharding:
    """Split a leading run axis of `num_runs` over the run devices (a 1-D mesh named "run")."""
    return NamedSharding(Mesh(np.asarray(run_devices(num_runs, max_devices)), ("run",)), PartitionSpec("run"))


def shard_runs(tree, num_runs: int, max_devices: int | None = None):
    """Place a pytree whose leaves have a leading run axis of `num_runs` across the run devices."""
    return jax.device_put(tree, run_sharding(num_runs, max_devices))


def largest_divisor_at_most(n: int, k: int) -> int:
    """The largest divisor of n that is at most k (at least 1): equal-sized pieces no larger than k."""
    return max(d for d in range(1, min(n, max(k, 1)) + 1) if n % d == 0)


# On a CPU, vmapping runs together pays only while the runs are small: wider blocks spill a block's parameters and
# optimizer states out of the caches, and a run whose update already multiplies wide matrices gains nothing from a
# batch axis on them. So a CPU block holds at most CPU_MAX_BLOCK_RUNS runs and CPU_MAX_BLOCK_BYTES of their memory
# (run_axis.per_run_bytes). Measured on 2 cores: PPO CartPole (2.7 MB a run), 256 seeds x 50k steps, blocks of
# 1/2/4/8/32: 250k/259k/310k/269k/224k steps/s; PPO Breakout-MinAtar (117 MB a run), 16 seeds x 262k steps, blocks of
# 1/2: 99.4k/80.7k and, in a second pair, 86.4k/70.6k steps/s.
CPU_MAX_BLOCK_RUNS = 4
CPU_MAX_BLOCK_BYTES = 32 * 2**20


def default_block_runs(num_runs: int, run_bytes: int = 0) -> int:
    """Runs vmapped together by default: the largest divisor of `num_runs` that is at most num_runs / 8, so up to 8
    devices can share the blocks, and on a CPU at most `CPU_MAX_BLOCK_RUNS` runs and `CPU_MAX_BLOCK_BYTES` of their
    memory (`run_bytes` a run; 0: not counted). It depends on the runs and the platform, never on the device count
    (a run's numbers depend on its block size)."""
    cap = num_runs // 8
    if jax.default_backend() == "cpu":
        cap = min(cap, CPU_MAX_BLOCK_RUNS, max(1, CPU_MAX_BLOCK_BYTES // max(run_bytes, 1)))
    return largest_divisor_at_most(num_runs, cap)


def map_in_blocks(fn: Callable, block_runs: int) -> Callable:
    """fn vmapped over the leading run axis of every argument, `block_runs` runs at a time, blocks in sequence.

    Blocks of one run are not vmapped: under a vmap a `lax.cond` whose predicate differs per run computes both
    branches and selects, while a single run takes only its branch (a robust PLR update on new levels then skips the
    learning step it would discard)."""

    def blocked(*args):
        n = jax.tree.leaves(args)[0].shape[0]
        if block_runs == 1:
            return jax.lax.map(lambda a: fn(*a), args)
        blocks = jax.tree.map(lambda x: x.reshape(n // block_runs, block_runs, *x.shape[1:]), args)
        out = jax.lax.map(lambda a: jax.vmap(fn)(*a), blocks)
        return jax.tree.map(lambda x: x.reshape(n, *x.shape[2:]), out)

    return blocked


class _Program(NamedTuple):
    jit: Any  # the jitted blocked function
    executables: dict  # (devices, runs per device, argument structure and shapes) -> one executable per device


@functools.lru_cache(maxsize=32)
def _program(fn: Callable, block_runs: int, donate_argnums: tuple[int, ...], speedups_on: bool) -> _Program:
    """One jitted blocked function per (fn, block size), and the executables compiled from it, kept for later maps
    of the same fn: a second `runner.run` of the same agent in a process (a notebook's next sweep, a resume)
    then neither traces nor compiles again. JAX's own caches are keyed on the function object, which a fresh
    `jax.jit(map_in_blocks(...))` would not share. The speed-ups switch is part of the key because it is read at trace
    time. Bounded, since entries keep their function (and its agent) and executables alive."""
    return _Program(jax.jit(map_in_blocks(fn, block_runs), donate_argnums=donate_argnums), {})


class RunMap:
    """`fn` over a leading run axis of `num_runs`: vmapped in blocks of `block_runs` that run one after another,
    the runs split evenly over the run devices, every device executing the same single-device program.

    Why not one SPMD-partitioned program: XLA:CPU rounds a partitioned program differently from the same
    computation on one device (1e-8 after one PPO update, which RL amplifies), and a vmap of 16 runs differently
    from a vmap of 32. With a fixed block size and one program per device, run r's numbers are the same on 1, 2
    or 8 devices (tests/test_runner.py). The program is compiled once, for the first device, and the other
    devices get copies of that executable (`executable_on`); where a copy cannot be made, each device compiles.

    Inputs and outputs are global arrays sharded by `self.sharding` (NamedSharding over a mesh axis "run").
    """

    def __init__(self, fn: Callable, num_runs: int, block_runs: int, max_devices: int | None = None, donate_argnums: tuple[int, ...] = ()) -> None:
        if num_runs % block_runs:
            from jaxrl.envs.errors import InvalidChoiceError  # not at the top: jaxrl.envs starts JAX's backends

            raise InvalidChoiceError(f"block_runs={block_runs} must divide the {num_runs} runs it maps over")
        self.num_runs, self.block_runs = num_runs, block_runs
        self.devices = run_devices(num_runs // block_runs, max_devices)
        self.per_device = num_runs // len(self.devices)
        self.sharding = run_sharding(num_runs // block_runs, max_devices)  # blocks, not runs, are what devices share
        self._program = _program(fn, block_runs, donate_argnums, speedups.enabled())
        self._compiled: list[Any] = []

    def _local(self, x: Any, device: Any) -> jax.ShapeDtypeStruct:
        return jax.ShapeDtypeStruct((self.per_device, *x.shape[1:]), x.dtype, sharding=SingleDeviceSharding(device))

    def compile(self, *args: Any) -> float:
        """Compile for every device from (abstract or concrete) global arguments; returns seconds. Idempotent, and a
        later map of the same function and block size over arguments of the same shapes on the same devices reuses
        these executables (see `_program`)."""
        if self._compiled:
            return 0.0
        leaves, treedef = jax.tree.flatten(args)
        signature = (tuple(d.id for d in self.devices), self.per_device, treedef, tuple((x.shape[1:], x.dtype) for x in leaves))
        if signature in self._program.executables:
            self._compiled = self._program.executables[signature]
            return 0.0
        t0 = time.perf_counter()

        def one(device):
            return self._program.jit.lower(*jax.tree.map(lambda x: self._local(x, device), args)).compile()

        compiled, todo = [], self.devices
        if self.devices[0].platform == "cpu":  # compile for the first device, copy to the others
            first, fresh = compiled_fresh(lambda: one(self.devices[0]))
            compiled, todo = [first], self.devices[1:]
            # An executable loaded from the persistent compile cache does not serialize back whole (with jaxlib 0.10
            # its copy failed at the first call: "Function iota_convert_fusion not found"); then every device
            # loads the program from the cache itself, which is as fast.
            copies = [executable_on(first, self.devices[0], device) if fresh else None for device in todo]
            if all(c is not None for c in copies):
                compiled, todo = compiled + copies, []
        with ThreadPoolExecutor(max(len(todo), 1)) as pool:  # XLA compiles without the GIL
            self._compiled = compiled + list(pool.map(one, todo))
        self._program.executables[signature] = self._compiled
        return time.perf_counter() - t0

    def eval_shape(self, *args: Any) -> Any:
        """Global abstract outputs (with this map's sharding)."""
        out = jax.eval_shape(self._program.jit, *args)
        return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=self.sharding), out)

    def __call__(self, *args: Any) -> Any:
        self.compile(*args)
        args = jax.device_put(args, self.sharding)
        leaves, treedef = jax.tree.flatten(args)
        shards = [sorted(x.addressable_shards, key=lambda s: s.index[0].start or 0) for x in leaves]
        # Dispatch is asynchronous: every device starts before the first one finishes.
        outs = [compiled(*jax.tree.unflatten(treedef, [s[i].data for s in shards])) for i, compiled in enumerate(self._compiled)]
        out_leaves = [jax.tree.leaves(o) for o in outs]
        out_treedef = jax.tree.structure(outs[0])
        # An output that does not depend on the inputs (a constant) may come back on the default device: put every
        # part on its own device (no copy where it already is).
        merged = [
            jax.make_array_from_single_device_arrays(
                (self.num_runs, *parts[0].shape[1:]), self.sharding, [jax.device_put(p, d) for p, d in zip(parts, self.devices)]
            )
            for parts in zip(*out_leaves)
        ]
        return jax.tree.unflatten(out_treedef, merged)


class _Retarget(pickle.Unpickler):
    """Unpickles a serialized single-device executable onto another device of the same client."""

    def __init__(self, payload: bytes, source: Any, target: Any) -> None:
        from jax._src import compiler

        super().__init__(io.BytesIO(payload))
        self.source, self.target = source, target
        self.options = compiler.get_compile_options(num_replicas=1, num_partitions=1, device_assignment=[target])

    def persistent_load(self, pid: tuple) -> Any:
        kind = pid[0]
        if kind == "exec":
            return self.target.client.deserialize_executable(pid[1], executable_devices=xla_client.DeviceList((self.target,)), compile_options=self.options)
        if kind == "device" and pid[1] == self.source.id:
            return self.target
        if kind == "client":
            return self.target.client
        raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")


_thread = threading.local()


def _note_cache_hit(event: str, **kwargs: Any) -> None:
    if event == "/jax/compilation_cache/cache_hits":  # recorded in the compiling thread
        _thread.cache_hit = True


jax.monitoring.register_event_listener(_note_cache_hit)


def compiled_fresh(compile: Callable[[], Any]) -> tuple[Any, bool]:
    """(compile(), whether XLA compiled it in this call rather than loading it from the persistent cache)."""
    _thread.cache_hit = False
    compiled = compile()
    return compiled, not _thread.cache_hit


def executable_on(compiled: Any, source: Any, device: Any) -> Any | None:
    """A copy of `compiled`, compiled for `source` alone, that runs on `device`, or None where it cannot be made.

    XLA:CPU's machine code does not depend on which CPU device runs it, but an executable is bound to the device
    it was compiled for; every CPU device compiling its own copy made a 2-device brax/hopper run compile for
    125 s instead of 57 s. Serializing the executable and loading it with the other device's assignment takes
    milliseconds. Only for CPU devices: an accelerator's code may depend on the chip, and there one process
    usually drives one device anyway."""
    if source.platform != "cpu" or device.platform != "cpu" or device.client is not source.client:
        return None
    try:
        from jax.experimental import serialize_executable

        payload, in_tree, out_tree = serialize_executable.serialize(compiled)
        unloaded, args_info, no_kwargs = _Retarget(payload, source, device).load()
        return jax.stages.Compiled(unloaded.load(), [], in_tree.unflatten(args_info), out_tree, no_kwargs=no_kwargs)
    except Exception:  # a private interface of this JAX version changed: fall back to compiling on the device
        return None


def compile_together(jobs: list[tuple[RunMap, tuple]]) -> float:
    """Compile several (RunMap, arguments) at once, in threads: XLA compiles without the GIL, so independent
    programs (a run's init, update chunk and evaluation) take the longest one's time on a machine with the cores
    for it, instead of their sum. Returns wall seconds."""
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max(len(jobs), 1)) as pool:
        list(pool.map(lambda job: job[0].compile(*job[1]), jobs))
    return time.perf_counter() - t0
