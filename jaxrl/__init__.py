"""jaxrl: end-to-end accelerated reinforcement learning and meta-RL in JAX.

Subpackages: `jaxrl.envs` (environments), `jaxrl.meta` (outer loops). Kept import-light: `import jaxrl` does
not import JAX.
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    # `jaxrl.load` without importing JAX at `import jaxrl`.
    if name == "load":
        from jaxrl.trained import load

        return load
    raise AttributeError(f"module 'jaxrl' has no attribute {name!r}")
