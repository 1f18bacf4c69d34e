"""Several processes (hosts) on JAX's own distributed runtime, each training a share of one sweep's runs.

    JAX_COORDINATOR_ADDRESS=host0:1234 JAX_NUM_PROCESSES=2 JAX_PROCESS_ID=0 jaxrl train ppo ... --distributed

Process p trains the contiguous share p of the runs, on its own local devices, with the same single-device programs
as one process would (so run r's numbers do not depend on the process count). The processes go in lockstep,
chunk by chunk: checkpoints are collective (orbax writes one checkpoint, each process its own rows), a signal to
any process stops all of them after the same chunk, and at the end process 0 gathers every run's metrics and
writes the combined results folder. The results folder must be on a filesystem every process sees.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np

from jaxrl.envs.errors import InvalidChoiceError

ENV_VARS = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")


def initialize() -> None:
    """`jax.distributed.initialize` from JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID when they
    are set, else from what JAX detects itself (SLURM, Open MPI, Kubernetes, Cloud TPU). Call before any JAX work."""
    address = os.environ.get("JAX_COORDINATOR_ADDRESS")
    count, index = os.environ.get("JAX_NUM_PROCESSES"), os.environ.get("JAX_PROCESS_ID")
    try:
        kwargs = {"num_processes": int(count), "process_id": int(index)} if count is not None and index is not None else {}
    except ValueError:
        raise InvalidChoiceError(f"JAX_NUM_PROCESSES={count!r} and JAX_PROCESS_ID={index!r} must be integers") from None
    try:
        jax.distributed.initialize(coordinator_address=address, **kwargs)
    except (ValueError, RuntimeError) as err:
        raise InvalidChoiceError(f"--distributed: {str(err).splitlines()[0]} (set {', '.join(ENV_VARS)}, or run under "
                                 f"a cluster manager JAX detects)") from None


def index() -> int:
    return jax.process_index()


def count() -> int:
    return jax.process_count()


def share(num_runs: int) -> slice:
    """This process's contiguous share of the run axis."""
    n = count()
    if num_runs % n:
        raise InvalidChoiceError(f"{num_runs} runs do not split evenly over {n} processes: choose seeds x grid points divisible by {n}")
    per = num_runs // n
    return slice(index() * per, (index() + 1) * per)


def any_process(flag: bool) -> bool:
    """True on every process when `flag` is true on any (e.g. a signal that reached one host)."""
    if count() == 1:
        return flag
    from jax.experimental import multihost_utils

    return bool(np.any(multihost_utils.process_allgather(np.asarray([flag]))))


def gather_rows(x: np.ndarray) -> np.ndarray:
    """Every process's rows (axis 0) in process order; each process passes the same shape."""
    if count() == 1:
        return x
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(np.asarray(x), tiled=True))


def sync(name: str) -> None:
    """Wait until every process gets here."""
    if count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def _process_sharding() -> Any:
    """One device per process, rows split by process: the layout of a checkpoint's global arrays."""
    devices = np.asarray([jax.local_devices(process_index=p)[0] for p in range(count())])
    return jax.sharding.NamedSharding(jax.sharding.Mesh(devices, ("process",)), jax.sharding.PartitionSpec("process"))


def to_global(x: Any) -> jax.Array:
    """This process's (n, ...) rows -> a global (processes * n, ...) array, for a collective orbax save."""
    local = jax.device_put(np.asarray(x), jax.local_devices()[0])
    return jax.make_array_from_single_device_arrays((count() * x.shape[0], *x.shape[1:]), _process_sharding(), [local])


def global_target(shape: tuple[int, ...], dtype: Any) -> jax.ShapeDtypeStruct:
    """What a collective restore of a (n, ...) local leaf reads: the global array `to_global` saved."""
    return jax.ShapeDtypeStruct((count() * shape[0], *shape[1:]), dtype, sharding=_process_sharding())


def to_local(x: jax.Array) -> jax.Array:
    """This process's rows of a global array from `to_global` / `global_target`."""
    return x.addressable_shards[0].data
