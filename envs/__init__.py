"""jaxrl.envs: one environment protocol (gymnax 1.0) for the whole stack, a registry, adapters and wrappers.

    env, params = jaxrl.envs.make("CartPole-v1")
    obs, state = env.reset(key, params)
    obs, state, reward, terminated, truncated, info = env.step(key, state, action, params)

`step` auto-resets; the observation before the reset is `info["final_observation"]`.

Names are imported on first use, so `from jaxrl.envs.errors import InvalidChoiceError` (what every layer raises)
does not import gymnax, Brax or JAX.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "Box": "jaxrl.envs.gymnax_import",
    "Discrete": "jaxrl.envs.gymnax_import",
    "BRAX_BACKENDS": "jaxrl.envs.brax_adapter",
    "DEFAULT_BRAX_BACKEND": "jaxrl.envs.brax_adapter",
    "BraxEnv": "jaxrl.envs.brax_adapter",
    "BraxParams": "jaxrl.envs.brax_adapter",
    "InvalidChoiceError": "jaxrl.envs.errors",
    "family_of": "jaxrl.envs.registry",
    "make": "jaxrl.envs.registry",
    "register": "jaxrl.envs.registry",
    "registered_ids": "jaxrl.envs.registry",
    "GridLevel": "jaxrl.envs.gridworld",
    "GridParams": "jaxrl.envs.gridworld",
    "GridState": "jaxrl.envs.gridworld",
    "GridWorld": "jaxrl.envs.gridworld",
    "LPG_LEVELS": "jaxrl.envs.gridworld",
    "lpg_level": "jaxrl.envs.gridworld",
    "lpg_levels": "jaxrl.envs.gridworld",
    "random_grid_level": "jaxrl.envs.gridworld",
    "render_grid_level": "jaxrl.envs.gridworld",
    "HELD_OUT_MAZES": "jaxrl.envs.maze",
    "Maze": "jaxrl.envs.maze",
    "MazeLevel": "jaxrl.envs.maze",
    "MazeParams": "jaxrl.envs.maze",
    "MazeState": "jaxrl.envs.maze",
    "empty_level": "jaxrl.envs.maze",
    "format_level": "jaxrl.envs.maze",
    "held_out_levels": "jaxrl.envs.maze",
    "level_is_valid": "jaxrl.envs.maze",
    "load_maze": "jaxrl.envs.maze",
    "make_level": "jaxrl.envs.maze",
    "parse_maze": "jaxrl.envs.maze",
    "random_level": "jaxrl.envs.maze",
    "render_grid": "jaxrl.envs.maze",
    "render_level": "jaxrl.envs.maze",
    "shortest_path_length": "jaxrl.envs.maze",
    "split_observation": "jaxrl.envs.maze",
    "RunningMeanStd": "jaxrl.envs.running_stats",
    "StackSpec": "jaxrl.envs.stack",
    "build_stack": "jaxrl.envs.stack",
    "keep_statistics": "jaxrl.envs.stack",
    "observation_size": "jaxrl.envs.stack",
    "compact_observations": "jaxrl.envs.stack",
    "ClipAction": "jaxrl.envs.wrappers",
    "EpisodeStatistics": "jaxrl.envs.wrappers",
    "FlattenObservation": "jaxrl.envs.wrappers",
    "NoAutoReset": "jaxrl.envs.wrappers",
    "NormalizeObservation": "jaxrl.envs.wrappers",
    "NormalizeReward": "jaxrl.envs.wrappers",
    "VecEnv": "jaxrl.envs.wrappers",
    "Wrapper": "jaxrl.envs.wrappers",
    "find_obs_stats": "jaxrl.envs.wrappers",
}
# Names that would clash with the maze's at the package level: exported under another name.
_ALIASES = {"random_grid_level": "random_level", "render_grid_level": "render_level"}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'jaxrl.envs' has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), _ALIASES.get(name, name))
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
