"""Environment ids -> constructors. Every gymnax id, every Brax environment as `brax/NAME`, and user entries."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

from jaxrl.envs.brax_adapter import BRAX_ENV_NAMES, BraxEnv
from jaxrl.envs.errors import InvalidChoiceError, invalid_choice
from jaxrl.envs.gymnax_import import gymnax

EnvFactory = Callable[..., Any]  # (**kwargs) -> environment following the gymnax 1.0 protocol

_REGISTRY: dict[str, EnvFactory] = {}
_FAMILIES: dict[str, str] = {}


def register(env_id: str, factory: EnvFactory, *, family: str = "user", overwrite: bool = False) -> None:
    """Register `factory(**kwargs) -> env` under `env_id`; `make(env_id)` then returns `(env, env.default_params)`.

    The environment must follow the gymnax 1.0 protocol (`reset`, `step`, `default_params`, spaces).
    """
    if not isinstance(env_id, str) or not env_id:
        raise InvalidChoiceError(f"environment id must be a non-empty string, got {env_id!r}")
    if not callable(factory):
        raise InvalidChoiceError(f"factory for {env_id!r} must be callable, got {type(factory).__name__}")
    if env_id in _REGISTRY and not overwrite:
        raise InvalidChoiceError(f"environment id {env_id!r} is already registered (pass overwrite=True)")
    _REGISTRY[env_id] = factory
    _FAMILIES[env_id] = family


def make(env_id: str, **kwargs: Any) -> tuple[Any, Any]:
    """Build a registered environment: returns `(env, default_params)`.

    Brax ids accept `backend=` (default "positional") and Brax constructor keywords; gymnax ids accept the
    keywords of their gymnax class.
    """
    if env_id not in _REGISTRY:
        _resolve_user_env(env_id)
    env = _REGISTRY[env_id](**kwargs)
    missing = [a for a in ("reset", "step", "default_params", "action_space", "observation_space") if not hasattr(env, a)]
    if missing:
        raise InvalidChoiceError(f"environment {env_id!r} lacks {', '.join(missing)} of the gymnax protocol")
    return env, env.default_params


def registered_ids(family: str | None = None) -> list[str]:
    """All registered ids in registration order, or those of one family; then the installed plugins' ids
    (family "plugin"), which are imported on first use."""
    plugins = [ep.name for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name not in _REGISTRY]
    ids = [i for i in _REGISTRY if family is None or _FAMILIES[i] == family]
    return ids + (plugins if family in (None, "plugin") else [])


def family_of(env_id: str) -> str:
    if env_id not in _FAMILIES:
        _resolve_user_env(env_id)
    return _FAMILIES[env_id]


# Packages may add environments under this entry-point group: `NAME = "package.module:ClassOrFactory"`.
ENTRY_POINT_GROUP = "jaxrl.envs"


def _resolve_user_env(env_id: str) -> None:
    """Register a user's environment named by an id the registry does not know yet: `module.path:ClassOrFactory`
    (the current directory is importable, as for `python -m`), or the name of a `jaxrl.envs` entry point of an
    installed package. Raises the unknown-environment error otherwise. The id stays as given, so run.json, resume
    and `jaxrl.load` rebuild the same environment."""
    plugins = {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
    if env_id in plugins:
        factory = _load_attribute(env_id, plugins[env_id].load)
        register(env_id, factory, family="plugin")
        return
    module_name, sep, attr = env_id.partition(":")
    if not sep:
        raise invalid_choice("environment", env_id, [*_REGISTRY, *plugins])
    if not module_name or not attr:
        raise InvalidChoiceError(f"custom environment {env_id!r}: expected module.path:ClassOrFactory")

    def load() -> Any:
        if os.getcwd() not in sys.path and "" not in sys.path:
            sys.path.insert(0, os.getcwd())
        target: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            target = getattr(target, part)
        return target

    register(env_id, _load_attribute(env_id, load), family="user")


def _load_attribute(env_id: str, load: Callable[[], Any]) -> EnvFactory:
    """`load()`, with an import failure or a missing name as one line."""
    try:
        factory = load()
    except ModuleNotFoundError as err:
        raise InvalidChoiceError(f"custom environment {env_id!r}: no module {err.name!r} (is it on PYTHONPATH or in the current directory?)") from None
    except AttributeError as err:
        raise InvalidChoiceError(f"custom environment {env_id!r}: {err}") from None
    if not callable(factory):
        raise InvalidChoiceError(f"custom environment {env_id!r} is a {type(factory).__name__}, not a class or factory")
    return factory


def _gymnax_family(env_id: str) -> str:
    suffix = env_id.rsplit("-", 1)[-1]
    return {"MinAtar": "minatar", "bsuite": "bsuite", "misc": "misc"}.get(suffix, "classic_control")


def _gymnax_factory(env_id: str) -> EnvFactory:
    def factory(**kwargs: Any) -> Any:
        env = gymnax.make(env_id, **kwargs)[0]
        # MinAtar's observations are 0/1 channels, though gymnax declares them float32 (see compact_observations).
        env.binary_observations = _gymnax_family(env_id) == "minatar"
        return env

    return factory


def _brax_factory(name: str) -> EnvFactory:
    return lambda **kwargs: BraxEnv(name, **kwargs)


def _maze_factory(**kwargs: Any) -> Any:
    """`Maze(level=None | MazeLevel | held-out maze name, max_steps_in_episode=250)`."""
    from jaxrl.envs.maze import Maze

    return Maze(**kwargs)


def _gridworld_factory(**kwargs: Any) -> Any:
    """`GridWorld(level=None | GridLevel | LPG level name)`."""
    from jaxrl.envs.gridworld import GridWorld

    return GridWorld(**kwargs)


for _id in gymnax.registered_envs:
    register(_id, _gymnax_factory(_id), family=f"gymnax/{_gymnax_family(_id)}")
for _name in BRAX_ENV_NAMES:
    register(f"brax/{_name}", _brax_factory(_name), family="brax")
# Unsupervised environment design: levels are data carried by the params (see maze.py).
register("Maze-v0", _maze_factory, family="ued")
register("GridWorld-v0", _gridworld_factory, family="ued")
