"""jaxrl.envs: one environment protocol (gymnax 1.0) for the whole stack, a registry, adapters and wrappers.

    env, params = jaxrl.envs.make("CartPole-v1")
    obs, state = env.reset(key, params)
    obs, state, reward, terminated, truncated, info = env.step(key, state, action, params)

`step` auto-resets; the observation before the reset is `info["final_observation"]`.
"""

from gymnax.environments.spaces import Box, Discrete

from jaxrl.envs.brax_adapter import BRAX_BACKENDS, DEFAULT_BRAX_BACKEND, BraxEnv, BraxParams
from jaxrl.envs.errors import InvalidChoiceError
from jaxrl.envs.registry import family_of, make, register, registered_ids
from jaxrl.envs.running_stats import RunningMeanStd
from jaxrl.envs.wrappers import (
    ClipAction,
    EpisodeStatistics,
    FlattenObservation,
    NoAutoReset,
    NormalizeObservation,
    NormalizeReward,
    VecEnv,
    Wrapper,
)

__all__ = [
    "BRAX_BACKENDS",
    "DEFAULT_BRAX_BACKEND",
    "Box",
    "BraxEnv",
    "BraxParams",
    "ClipAction",
    "Discrete",
    "EpisodeStatistics",
    "FlattenObservation",
    "InvalidChoiceError",
    "NoAutoReset",
    "NormalizeObservation",
    "NormalizeReward",
    "RunningMeanStd",
    "VecEnv",
    "Wrapper",
    "family_of",
    "make",
    "register",
    "registered_ids",
]
