"""Settings from YAML files and `--set KEY=VALUE` flags -> (static Config, Hparams pytree).

One flat namespace: a key is a field of the algorithm's Config (static), a field of its Hparams (traced), or
`objective.NAME` for a parameter of the objective (e.g. `objective.clip_eps`). `algorithm` and `seeds` are
also accepted in files.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import jax
import jax.numpy as jnp
import yaml

from jaxrl.envs.errors import InvalidChoiceError, invalid_choice

RUN_KEYS = ("algorithm", "seeds", "sweep", "out")
# Settings that earlier versions had, with what replaced them.
REMOVED = {"reward_norm_gamma": "reward normalisation now discounts with the agent's own gamma"}


def load_yaml(path: str | os.PathLike) -> dict[str, Any]:
    try:
        with open(path) as f:
            data = yaml.safe_load(f) or {}
    except OSError as err:
        raise InvalidChoiceError(f"cannot read config file {str(path)!r}: {err.strerror}") from None
    except yaml.YAMLError as err:
        raise InvalidChoiceError(f"config file {str(path)!r} is not valid YAML: {str(err).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise InvalidChoiceError(f"config file {str(path)!r} must hold a mapping of settings, got {type(data).__name__}")
    return {k: _yaml_number_fix(v) for k, v in data.items()}


def parse_assignment(text: str) -> tuple[str, Any]:
    """'lr=3e-4' -> ('lr', 0.0003): the value is read as YAML, so numbers, booleans and lists work."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise InvalidChoiceError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key.strip(), _yaml_number_fix(yaml.safe_load(value))
    except yaml.YAMLError:
        raise InvalidChoiceError(f"cannot read the value in {text!r}") from None


def _yaml_number_fix(value: Any) -> Any:
    """YAML 1.1 reads '3e-4' (no dot) as a string; researchers mean a number."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    if isinstance(value, list):
        return [_yaml_number_fix(v) for v in value]
    return value


def _coerce(name: str, value: Any, annotation: Any) -> Any:
    """Check and convert a static setting to its declared type."""
    if annotation in ("int", int):
        if isinstance(value, bool) or not isinstance(value, int) and not (isinstance(value, float) and value.is_integer()):
            raise InvalidChoiceError(f"{name} must be an integer, got {value!r}")
        return int(value)
    if annotation in ("float", float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InvalidChoiceError(f"{name} must be a number, got {value!r}")
        return float(value)
    if annotation in ("bool", bool):
        if not isinstance(value, bool):
            raise InvalidChoiceError(f"{name} must be true or false, got {value!r}")
        return value
    if annotation in ("str", str):
        if not isinstance(value, str):
            raise InvalidChoiceError(f"{name} must be a string, got {value!r}")
        return value
    if isinstance(annotation, str) and annotation.startswith("tuple[int"):
        items = value if isinstance(value, (list, tuple)) else [value]
        return tuple(_coerce(name, v, int) for v in items)
    if isinstance(annotation, str) and annotation.startswith("tuple[str"):
        items = value.split(",") if isinstance(value, str) else value if isinstance(value, (list, tuple)) else [value]
        return tuple(_coerce(name, v.strip() if isinstance(v, str) else v, str) for v in items)
    if isinstance(annotation, str) and annotation.startswith("tuple[tuple[str"):
        if not isinstance(value, dict):
            raise InvalidChoiceError(f"{name} must be a mapping, got {value!r}")
        return tuple(sorted(value.items()))
    return value


def build(config_cls: type, hparams_cls: type, settings: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """Split flat `settings` into a validated static config and a dict of hyperparameter overrides.

    Returns (config, overrides) where overrides maps hparam names (and `objective.X`) to Python values; apply
    them with `apply_overrides` once the default hparams (which depend on the config) exist.
    """
    config_fields = {f.name: f for f in dataclasses.fields(config_cls)}
    hparam_fields = {f.name for f in dataclasses.fields(hparams_cls)} - {"objective"}
    static, overrides = {}, {}
    for key, value in settings.items():
        if key in RUN_KEYS:
            continue
        if key in config_fields:
            static[key] = _coerce(key, value, config_fields[key].type)
        elif key in hparam_fields or key.startswith("objective."):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise InvalidChoiceError(f"hyperparameter {key} must be a number, got {value!r}")
            overrides[key] = float(value)
        elif key in REMOVED:
            raise InvalidChoiceError(f"setting {key!r} is gone: {REMOVED[key]}")
        else:
            raise invalid_choice("setting", key, [*config_fields, *hparam_fields, "objective.<param>", *RUN_KEYS])
    return config_cls(**static), overrides


def read_hparam(hparams: Any, key: str) -> Any:
    """The value `apply_overrides` would set for `key` (a hyperparameter, or `objective.` + a dotted path)."""
    if not key.startswith("objective."):
        return getattr(hparams, key)
    node = hparams.objective
    for part in key.split(".")[1:]:
        node = node[part]
    return node


def check_range(key: str, value: float, ranges: dict[str, tuple[float, float, str]]) -> None:
    """Refuse a hyperparameter outside its valid range: ranges maps a name to (low, high, description), the
    interval closed at both ends (use math.nextafter for an open end)."""
    if key in ranges:
        low, high, text = ranges[key]
        if not low <= value <= high:
            raise InvalidChoiceError(f"invalid {key} {value!r}; choices: {text}")


def apply_overrides(hparams: Any, overrides: dict[str, float]) -> Any:
    """Set hyperparameters, and objective parameters by dotted path (`objective.clip_eps`,
    `objective.dpo.alpha` inside an objective sweep), on an Hparams pytree (a flax struct dataclass)."""
    if not overrides:
        return hparams
    fields = [f.name for f in dataclasses.fields(hparams) if f.name != "objective"]
    for key in overrides:
        if not key.startswith("objective.") and key not in fields:
            raise invalid_choice("hyperparameter", key, [*fields, "objective.<param>"])
    if not hasattr(hparams, "objective"):  # an agent without an objective: plain fields only
        bad = [k for k in overrides if k.startswith("objective.")]
        if bad:
            raise InvalidChoiceError(f"{bad[0]}: this agent has no objective parameters")
        return hparams.replace(**{k: jnp.float32(v) for k, v in overrides.items()})
    objective = jax.tree.map(lambda x: x, hparams.objective)  # a copy we may change in place
    plain = {}
    for key, value in overrides.items():
        if not key.startswith("objective."):
            plain[key] = jnp.float32(value)
            continue
        *parents, name = key.split(".")[1:]
        node = objective
        for part in parents:
            if not isinstance(node.get(part), dict):
                raise invalid_choice("objective parameter group", part, [k for k, v in node.items() if isinstance(v, dict)] or ["(none)"])
            node = node[part]
        if name not in node or isinstance(node[name], dict):
            choices = [k for k, v in node.items() if not isinstance(v, dict)]
            raise invalid_choice("objective parameter", name, choices or ["(this objective has none)"])
        if jnp.ndim(node[name]) != 0:
            raise InvalidChoiceError(f"objective parameter {name} is an array; set it through an objective file")
        node[name] = jnp.float32(value)
    return hparams.replace(objective=objective, **plain)
