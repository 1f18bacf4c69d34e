"""Hyperparameter search with an ES: a few named hyperparameters, each in a range (log-scale where asked),
searched around the algorithm's defaults; every fitness evaluation is a whole inner training run.

The ES works on positions u in [0, 1]^k (clipped), one per hyperparameter, starting from each default's
position in its range; `decode` turns positions into values. Writes meta_summary.json, fitness.png,
best_config.yaml (the candidate with the highest validation score: the top members of each generation, kept by
training fitness, and the final search mean, re-scored on seeds no generation used; see validation.py) and
mean_config.yaml (the search mean at the end); both are configs that `jaxrl train --config FILE` runs. An
interrupted search writes no best_config.yaml (and removes one left by an earlier, shorter run of the folder).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import yaml

from jaxrl import results
from jaxrl.config import apply_overrides, build, read_hparam
from jaxrl.envs.errors import InvalidChoiceError
from jaxrl.meta import plots
from jaxrl.meta.tasks import inner, inner_settings, make_request_es, make_tasks, search_and_validate, write_summary


@dataclasses.dataclass(frozen=True)
class Dimension:
    key: str
    low: float
    high: float
    log: bool

    def decode(self, u: jax.Array) -> jax.Array:
        u = jnp.clip(u, 0.0, 1.0)
        if self.log:
            return jnp.exp(math.log(self.low) + u * (math.log(self.high) - math.log(self.low)))
        return self.low + u * (self.high - self.low)

    def encode(self, value: float) -> float:
        if self.log:
            u = (math.log(value) - math.log(self.low)) / (math.log(self.high) - math.log(self.low)) if value > 0 else 0.0
        else:
            u = (value - self.low) / (self.high - self.low)
        return float(np.clip(u, 0.0, 1.0))


def parse_search(text: str) -> Dimension:
    """'lr=1e-4:1e-2:log' -> Dimension('lr', 1e-4, 1e-2, log=True)."""
    key, sep, spec = text.partition("=")
    parts = spec.split(":")
    if not sep or not key or len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] != "log"):
        raise InvalidChoiceError(f"expected --search KEY=LOW:HIGH or KEY=LOW:HIGH:log, got {text!r}")
    try:
        low, high = float(parts[0]), float(parts[1])
    except ValueError:
        raise InvalidChoiceError(f"--search {text!r}: LOW and HIGH must be numbers") from None
    if not low < high:
        raise InvalidChoiceError(f"--search {text!r}: LOW must be below HIGH")
    log = len(parts) == 3
    if log and low <= 0:
        raise InvalidChoiceError(f"--search {text!r}: a log range needs LOW > 0")
    return Dimension(key.strip(), low, high, log)


def dimensions(request: dict[str, Any], algorithm: Any, hparams: Any) -> list[Dimension]:
    dims = [parse_search(text) for text in request["search"]]
    if not dims:
        raise InvalidChoiceError("name at least one hyperparameter to search: --search KEY=LOW:HIGH[:log]")
    static = {f.name for f in dataclasses.fields(algorithm.Config)}
    for d in dims:
        if d.key in static:
            raise InvalidChoiceError(f"cannot search {d.key!r}: it is a static setting (it changes shapes or the program); search a hyperparameter")
        build(algorithm.Config, algorithm.Hparams, {d.key: 1.0})  # unknown names: one line with the valid ones
        apply_overrides(hparams, {d.key: 1.0})  # objective parameters that do not exist
    if len({d.key for d in dims}) != len(dims):
        raise InvalidChoiceError(f"a hyperparameter is searched twice: {[d.key for d in dims]}")
    return dims


def tune(request: dict[str, Any], out: str | Path, *, resume: bool = False, progress: bool = True) -> dict[str, Any]:
    """Search the request's hyperparameters, validate the candidates, write the files; returns the summary."""
    out = Path(out)
    inners = [inner(request["algorithm"], inner_settings(request, env_id)) for env_id in request["envs"]]
    dims = dimensions(request, inners[0].algorithm, inners[0].hparams)

    def decode(u: jax.Array) -> dict[str, jax.Array]:
        return {d.key: d.decode(u[i]) for i, d in enumerate(dims)}

    def to_hparams(u, base):
        return apply_overrides(base, decode(u))

    start_values = [float(read_hparam(inners[0].hparams, d.key)) for d in dims]  # the inner runs' own settings
    start = jnp.asarray([d.encode(v) for d, v in zip(dims, start_values)], jnp.float32)
    describe = lambda u: {k: float(v) for k, v in decode(u).items()}
    tasks = make_tasks(request, inners, to_hparams)
    es = make_request_es(request, start)
    result, checked = search_and_validate(request, es, start, tasks, out, resume=resume, progress=progress, describe=describe)

    files = {"best": "best_config.yaml", "mean": "mean_config.yaml", "fitness": "fitness.png"}
    base_settings = {"algorithm": request["algorithm"], **inner_settings(request, request["envs"][0])}
    chosen = {"mean": result.mean}
    if checked is not None:
        chosen["best"] = checked.member
    else:
        (out / files.pop("best")).unlink(missing_ok=True)
    for which, u in chosen.items():
        what = "the candidate with the highest validation score" if which == "best" else "the search mean at the end"
        text = f"# found by `jaxrl meta tune` ({what}); run with: jaxrl train --config FILE\n"
        text += yaml.safe_dump({**base_settings, **describe(u)}, sort_keys=False)
        results.atomic_write_bytes(out / files[which], text.encode())
    plots.plot_fitness(out / files["fitness"], result.history, f"{request['algorithm']} hyperparameters on {', '.join(request['envs'])}")
    searched = [{"key": d.key, "low": d.low, "high": d.high, "log": d.log, "start": v} for d, v in zip(dims, start_values)]
    extra = {"search": searched, "best_hparams": describe(checked.member) if checked is not None else None, "mean_hparams": describe(result.mean)}
    return write_summary(out, request, tasks, result, checked, files, extra)
