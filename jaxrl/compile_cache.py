"""The persistent XLA compilation cache of the `jaxrl` command: a program compiled once (a Brax PPO chunk takes a
minute on a CPU) is read back from disk by every later run that compiles the same program, e.g. the same config
with other seeds or other traced hyperparameters, or a resumed run. The numbers are the same either way.

    JAXRL_COMPILE_CACHE=DIR    cache there instead of ~/.cache/jaxrl/xla
    JAXRL_COMPILE_CACHE=off    no cache
JAX's own JAX_COMPILATION_CACHE_DIR, when set, wins (the test suite sets one per session).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

DEFAULT_DIR = Path("~/.cache/jaxrl/xla")
MAX_BYTES = 4 * 2**30  # least recently used entries go first beyond this
MIN_COMPILE_S = 1.0  # programs that compile faster are not worth a disk entry
OFF = ("0", "off", "false", "no", "none")


def enable(environ: Mapping[str, str] = os.environ) -> str | None:
    """Turn the cache on before the first compile; returns its folder, or None when it is off."""
    import jax

    if environ.get("JAX_COMPILATION_CACHE_DIR"):
        return environ["JAX_COMPILATION_CACHE_DIR"]
    setting = environ.get("JAXRL_COMPILE_CACHE", "").strip()
    if setting.lower() in OFF:
        return None
    folder = str(Path(setting or DEFAULT_DIR).expanduser())
    jax.config.update("jax_compilation_cache_dir", folder)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_S)
    jax.config.update("jax_compilation_cache_max_size", MAX_BYTES)
    return folder
