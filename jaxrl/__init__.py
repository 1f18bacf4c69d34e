"""jaxrl: end-to-end accelerated reinforcement learning and meta-RL in JAX.

Subpackages: `jaxrl.envs` (environments), `jaxrl.meta` (outer loops). Kept import-light: `import jaxrl` does
not import JAX.
"""

__version__ = "0.1.0"
