"""Checkpoints of pytrees (orbax) and clean interruption, shared by the runner and the meta loops.

Typed PRNG keys are stored as their uint32 data and empty arrays are left out (orbax cannot save them); a
restore needs the abstract tree (`jax.eval_shape` of whatever made it) to rebuild both.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxrl.envs.errors import InvalidChoiceError


def is_key(x: Any) -> bool:
    return jnp.issubdtype(x.dtype, jax.dtypes.prng_key)


def save_tree(path: str | os.PathLike, tree: Any) -> None:
    """Write `tree` to the directory `path`, replacing what was there only once the new copy is complete.

    Under several processes (jaxrl.multihost) every process calls it at the same point with its own rows (every
    leaf has a leading run axis): one collective checkpoint of global arrays, each process writing its rows."""
    import orbax.checkpoint as ocp

    from jaxrl import multihost

    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    if multihost.index() == 0:
        shutil.rmtree(tmp, ignore_errors=True)
    multihost.sync(f"save-start:{path}")
    leaves = [jax.random.key_data(x) if is_key(x) else x for x in jax.tree.leaves(tree)]
    if multihost.count() > 1:
        leaves = [multihost.to_global(x) for x in leaves]
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(tmp.absolute(), {str(i): x for i, x in enumerate(leaves) if x.size})
        checkpointer.wait_until_finished()
    if multihost.index() == 0:
        shutil.rmtree(path, ignore_errors=True)
        os.replace(tmp, path)
    multihost.sync(f"save-end:{path}")


def restore_tree(path: str | os.PathLike, abstract: Any, sharding: Any = None) -> Any:
    """Read a tree written by `save_tree`; `abstract` gives its structure, shapes and dtypes (keys included)."""
    import orbax.checkpoint as ocp

    from jaxrl import multihost

    path = Path(path)
    abstract_leaves, treedef = jax.tree.flatten(abstract)
    collective = multihost.count() > 1

    def stored(x):
        shape, dtype = (x.shape + (2,), jnp.uint32) if is_key(x) else (x.shape, x.dtype)
        if collective:
            return multihost.global_target(shape, dtype)
        return jax.ShapeDtypeStruct(shape, dtype, sharding=sharding) if sharding is not None else np.zeros(shape, dtype)

    target = {str(i): stored(x) for i, x in enumerate(abstract_leaves) if np.prod(x.shape)}
    try:
        with ocp.StandardCheckpointer() as checkpointer:
            restored = checkpointer.restore(path.absolute(), target)
    except Exception as err:  # orbax raises many types for missing or damaged files
        raise InvalidChoiceError(f"checkpoint {str(path)!r} is corrupt or incomplete: {type(err).__name__}: {str(err).splitlines()[0][:200]}") from None
    if collective:  # this process's rows, where a single-process restore would have put them
        restored = {i: multihost.to_local(v) for i, v in restored.items()}
        restored = {i: jax.device_put(v, sharding) if sharding is not None else np.asarray(v) for i, v in restored.items()}
    leaves = []
    for i, x in enumerate(abstract_leaves):
        if str(i) not in restored:
            empty = jnp.zeros(x.shape, x.dtype)
            leaves.append(jax.device_put(empty, sharding) if sharding is not None else empty)
        else:
            value = restored[str(i)] if sharding is not None else jnp.asarray(restored[str(i)])
            leaves.append(jax.random.wrap_key_data(value) if is_key(x) else value)
    return jax.tree.unflatten(treedef, leaves)


class StopFlag:
    """SIGINT / SIGTERM ask a host loop to finish its step (a chunk, a generation), checkpoint and exit; a
    second signal aborts at once."""

    def __init__(self, what: str = "chunk") -> None:
        self.signal: int | None = None
        self.what = what

    @contextlib.contextmanager
    def installed(self):
        def handler(signum, frame):
            if self.signal is not None:
                raise KeyboardInterrupt
            self.signal = signum
            print(f"\nreceived {signal.Signals(signum).name}: finishing this {self.what}, then checkpointing", file=sys.stderr)

        previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for s, h in previous.items():
                signal.signal(s, h)
