"""Policy objectives as drift functions (mirror learning).

Every objective is a drift D(r, A) >= 0 with D = 0 and zero gradient at r = 1; the actor loss is

    L_actor = -mean(r * A - D),    r = pi_new(a|s) / pi_old(a|s),  A the minibatch-normalised advantage.

`make(name, **options)` returns an `Objective` with `init(key) -> params` and
`drift(params, log_ratio, advantage, progress) -> D` (elementwise; `progress` = fraction of training done).
Objective parameters (clip width, DPO's alpha and beta, LPO weights) live in the hyperparameter pytree, so a
batch of different objectives of one kind trains in one vmapped program.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxrl.envs.errors import InvalidChoiceError, invalid_choice

LPO_OFFSET = 1e-4  # D = relu(f - offset): keeps D at exactly 0 (and flat) around r = 1
PPO_INIT_CLIP = 0.2  # the fixed clip range of LPO's "PPO init"


class Objective(NamedTuple):
    name: str
    options: dict
    init: Callable[[jax.Array], Any]
    drift: Callable[[Any, jax.Array, jax.Array, jax.Array], jax.Array]


def ppo_clip_drift(params, log_ratio, advantage, progress):
    """PPO-clip (Schulman et al. 2017, eq. 7) as a drift (Kuba et al. 2022): D = relu((r - clip(r, 1-eps, 1+eps)) A),
    since min(rA, clip(r)A) = rA - D."""
    ratio = jnp.exp(log_ratio)
    eps = params["clip_eps"]
    return jax.nn.relu((ratio - jnp.clip(ratio, 1.0 - eps, 1.0 + eps)) * advantage)


def zero_drift(params, log_ratio, advantage, progress):
    """D = 0: the plain importance-weighted policy gradient with no trust region. Under one epoch over one
    minibatch (r = 1 at the only step) it is A2C's gradient; the exact A2C update also needs A2C's other settings,
    see experiments/configs/a2c.yaml. Under several epochs it is what its name says."""
    return jnp.zeros_like(log_ratio)


def mdpo_drift(params, log_ratio, advantage, progress):
    """On-policy MDPO (Tomar et al. 2020, eq. 13): D = KL(pi_new || pi_old) / t_k per state.

    Under samples of pi_old, E[r log r] = KL(pi_new || pi_old), and r log r - (r - 1) is its estimator that is
    >= 0 with value and slope 0 at r = 1 (E[r - 1] = 0). ((r - 1) - log r estimates the other direction,
    KL(pi_old || pi_new), TRPO's.) The step size is annealed, t_k = step_size * (1 - n/N), floored at
    `min_anneal` so the penalty stays finite at the end of training.
    """
    t_k = params["step_size"] * jnp.maximum(1.0 - progress, params["min_anneal"])
    ratio = jnp.exp(log_ratio)
    return (ratio * log_ratio - jnp.expm1(log_ratio)) / t_k


def dpo_drift(params, log_ratio, advantage, progress):
    """DPO (Lu et al. 2022, eq. 6): D = relu((r-1)A - alpha tanh((r-1)A / alpha)) for A >= 0 and
    relu(log(r) A - beta tanh(log(r) A / beta)) for A < 0; alpha = 2, beta = 0.6 by default."""
    alpha, beta = params["alpha"], params["beta"]
    pos = (jnp.expm1(log_ratio)) * advantage
    neg = log_ratio * advantage
    drift_pos = jax.nn.relu(pos - alpha * jnp.tanh(pos / alpha))
    drift_neg = jax.nn.relu(neg - beta * jnp.tanh(neg / beta))
    return jnp.where(advantage >= 0, drift_pos, drift_neg)


def lpo_features(log_ratio: jax.Array, advantage: jax.Array) -> jax.Array:
    """The 8 LPO input features, each 0 at r = 1: (...,) -> (..., 8)."""
    one_minus_r = -jnp.expm1(log_ratio)
    l, a = log_ratio, advantage
    return jnp.stack([l, l**2, one_minus_r, one_minus_r**2, a * l, a * l**2, a * one_minus_r, a * one_minus_r**2], -1)


def _lpo_drift(temporal: bool, ppo_init: bool):
    def drift(params, log_ratio, advantage, progress):
        x = lpo_features(log_ratio, advantage)
        if temporal:  # multiplying by x keeps every feature 0 at r = 1
            x = jnp.concatenate([x, progress * x], -1)
        f = (jnp.tanh(x @ params["w1"]) @ params["w2"])[..., 0]  # no biases: f = 0 at r = 1
        if ppo_init:
            f = f + ppo_clip_drift({"clip_eps": PPO_INIT_CLIP}, log_ratio, advantage, progress)
        return jax.nn.relu(f - LPO_OFFSET)

    return drift


def _lpo_init(num_features: int, hidden: int, init_scale: float):
    """w1 is a random projection; w2 = init_scale * noise, so the default init_scale = 0 gives f = 0 (D = 0,
    or exactly PPO's drift with ppo_init) while an ES perturbation of w2 changes D at first order. (With w1 = 0
    too, as in a literal phi = 0, every perturbation changes D only at second order, sigma^2, and a population
    at sigma = 0.03 trains identically.)"""

    def init(key):
        k1, k2 = jax.random.split(key)
        return {
            "w1": jax.random.normal(k1, (num_features, hidden)) / np.sqrt(num_features),
            "w2": init_scale * jax.random.normal(k2, (hidden, 1)) / np.sqrt(hidden),
        }

    return init


def _constant_init(**values: float):
    return lambda key: {k: jnp.asarray(v, jnp.float32) for k, v in values.items()}


def _make_ppo_clip(clip_eps: float = 0.2):
    return _constant_init(clip_eps=clip_eps), ppo_clip_drift


def _make_no_trust_region():
    return (lambda key: {}), zero_drift


def _make_mdpo(step_size: float = 1.0, min_anneal: float = 0.05):
    return _constant_init(step_size=step_size, min_anneal=min_anneal), mdpo_drift


def _make_dpo(alpha: float = 2.0, beta: float = 0.6):
    return _constant_init(alpha=alpha, beta=beta), dpo_drift


def _make_lpo(hidden: int = 128, ppo_init: bool = False, init_scale: float = 0.0):
    return _lpo_init(8, hidden, init_scale), _lpo_drift(False, ppo_init)


def _make_ta_lpo(hidden: int = 128, ppo_init: bool = False, init_scale: float = 0.0):
    return _lpo_init(16, hidden, init_scale), _lpo_drift(True, ppo_init)


_BUILDERS = {
    "ppo_clip": _make_ppo_clip,
    "no_trust_region": _make_no_trust_region,
    "mdpo": _make_mdpo,
    "dpo": _make_dpo,
    "lpo": _make_lpo,
    "ta_lpo": _make_ta_lpo,
}
NAMES = tuple(_BUILDERS)
LEARNED = ("lpo", "ta_lpo")


# Names that earlier versions used, with what to use now.
RENAMED = {"a2c": "no_trust_region (the zero drift; for A2C itself run experiments/configs/a2c.yaml)"}


def make(name: str, **options: Any) -> Objective:
    """Build an objective by name; options are the builder's keywords (e.g. `make("lpo", ppo_init=True)`)."""
    if name in RENAMED:
        raise InvalidChoiceError(f"objective {name!r} is now called {RENAMED[name]}")
    if name not in _BUILDERS:
        raise invalid_choice("objective", name, NAMES)
    try:
        init, drift = _BUILDERS[name](**options)
    except TypeError:
        import inspect

        valid = list(inspect.signature(_BUILDERS[name]).parameters)
        bad = sorted(set(options) - set(valid))
        raise InvalidChoiceError(f"unknown option(s) {bad} for objective {name!r}; valid: {valid}") from None
    return Objective(name, dict(options), init, drift)


def sweep_spec(names: list[str] | tuple[str, ...]) -> str:
    """The `objective` setting of a sweep over closed-form objectives: their names joined by commas. The one
    representation of an objective sweep: `resolve` builds its switch from it, `sweep_index` reads it."""
    return ",".join(map(str, names))


def sweep_index(spec: str, name: str) -> int:
    """The switch index (`objective.index`) of `name` inside the sweep `spec`."""
    members = spec.split(",")
    if name not in members:
        raise invalid_choice("objective in this sweep", name, members)
    return members.index(name)


def make_switch(names: list[str] | tuple[str, ...]) -> Objective:
    """Several closed-form objectives behind one index, so a sweep over objectives is data, not code: params
    are {"index": i, NAME: params of NAME, ...} and the drift is that of names[i]. Under vmap every member's
    drift is evaluated and one is selected (cheap next to the networks)."""
    members = [make(n) for n in names]
    learned = [m.name for m in members if m.name in LEARNED]
    if learned or len(set(names)) != len(names) or len(names) < 2:
        raise InvalidChoiceError(f"an objective sweep takes 2+ distinct closed-form objectives, got {list(names)}")

    def init(key):
        return {"index": jnp.float32(0), **{m.name: m.init(key) for m in members}}

    def drift(params, log_ratio, advantage, progress):
        branches = [lambda l, a, p, m=m: m.drift(params[m.name], l, a, p) for m in members]
        return jax.lax.switch(params["index"].astype(jnp.int32), branches, log_ratio, advantage, progress)

    return Objective(sweep_spec(names), {}, init, drift)


def save(path: str | os.PathLike, objective: Objective, params: Any) -> None:
    """Write an objective (name, options, parameters) to an .npz file, atomically."""
    leaves = {f"param/{k}": np.asarray(v) for k, v in params.items()}
    meta = json.dumps({"name": objective.name, "options": objective.options})
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, suffix=".npz.tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, __objective__=np.asarray(meta), **leaves)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def load(path: str | os.PathLike) -> tuple[Objective, dict]:
    """Read a file written by `save`: returns (objective, params)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["__objective__"]))
            params = {k.split("/", 1)[1]: jnp.asarray(data[k]) for k in data.files if k.startswith("param/")}
    except (OSError, ValueError, KeyError) as err:
        raise InvalidChoiceError(f"cannot read objective file {str(path)!r}: {err}") from None
    objective = make(meta["name"], **meta["options"])
    expected = jax.tree.map(jnp.shape, objective.init(jax.random.key(0)))
    if jax.tree.map(jnp.shape, params) != expected:
        raise InvalidChoiceError(f"objective file {str(path)!r} has parameter shapes that do not match {meta}")
    return objective, params


def resolve(spec: str, **options: Any) -> tuple[Objective, dict | None]:
    """A name (-> objective, None: use its init), comma-separated names (-> a switch over them, see
    `make_switch`) or a path to a saved objective (-> objective, its params)."""
    if spec in _BUILDERS or spec in RENAMED:
        return make(spec, **options), None
    if "," in spec:
        return make_switch(spec.split(",")), None
    if spec.endswith(".npz") or os.path.exists(spec):
        return load(spec)
    raise invalid_choice("objective", spec, NAMES)
