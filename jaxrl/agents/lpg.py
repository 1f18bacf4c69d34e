"""LPG: an agent trained by a learned update rule (Oh et al. 2020, "Discovering Reinforcement Learning
Algorithms"), and TA-LPG, the rule that also sees how far through its lifetime the agent is (Jackson et al. 2024,
"Discovering Temporally-Aware Reinforcement Learning Algorithms").

    agent = make_agent(LPGConfig(objective="rules/groove.npz"))
    carry, metrics = jax.jit(agent.train)(key, agent.default_hparams())

The agent has a policy pi(a|s) and a prediction y(s), a categorical vector over `target_width` bins, and no value
function: what y comes to mean is up to the rule. The rule (`LPGRule`, its parameters are `hparams.objective`, so a
population of rules is a vmap) reads the agent's rollout backwards in time with a GRU that restarts where an
episode ended, and gives at every step t

    pi_hat_t (a scalar: how much to raise log pi(a_t|s_t))   and   y_hat_t (a target distribution for y(s_t))

from the inputs [r_t, d_t, gamma, pi(a_t|s_t), phi(y(s_t)), (1 - d_t) phi(y(s_t+1))] (+ [n / N, log N] for
TA-LPG: update n of a lifetime of N updates), phi a small MLP shared by both predictions. The agent descends (LPG,
eq. 1, whose update is E[grad log pi(a|s) pi_hat - alpha_y grad KL(y(s) || y_hat)]):

    L(theta) = -mean_t[ pi_hat_t log pi_theta(a_t|s_t) ] + alpha_y mean_t KL( y_theta(s_t) || y_hat_t )

Time limits are not terminations: d_t is `terminated` (no bootstrap past a terminal state), y(s_t+1) is the
prediction at the step's final observation (before any auto-reset), and the GRU restarts at every episode end.

One update, read top to bottom: `collect` (num_steps steps of every environment, actions sampled from pi), `loss`
(the rule's outputs on the rollout, then L), one gradient step of each network. Defaults: GROOVE's tabular agents
(linear policy and prediction on the one-hot grid-world observation, SGD with lr 40 and 4, gradient norm clipped at
0.5, 64 environments x 20 steps, alpha_y 0.5).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen as nn
from flax import struct
from flax.traverse_util import flatten_dict, unflatten_dict

from jaxrl import envs
from jaxrl.agents.base import RolloutConfig, Spaces, as_float_tree, episode_metrics, spaces_of
from jaxrl.agents.offpolicy import FeedForwardAgent, RolloutCarry, Step, rollout
from jaxrl.envs.errors import InvalidChoiceError, invalid_choice
from jaxrl.networks import ACTIVATIONS, MLP, ResetGRU

RANDOM_RULE = "random"  # the rule network at its initialisation from key 0: a starting point for meta-training
OPTIMIZERS = ("sgd", "adam")


@dataclasses.dataclass(frozen=True)
class LPGConfig(RolloutConfig):
    """Static settings (a change recompiles). `objective` is the update rule: RANDOM_RULE or a file `save_rule`
    wrote (`jaxrl meta lpg` writes one); a file brings its rule's architecture (target_width ... lifetime_conditioning)."""

    env_id: str = "GridWorld-v0"
    env_kwargs: tuple[tuple[str, Any], ...] = ()
    objective: str = RANDOM_RULE
    num_envs: int = 64
    num_steps: int = 20
    total_timesteps: int = 64 * 20 * 250
    actor_hidden: tuple[int, ...] = ()  # () = linear, without bias: a table on one-hot observations
    predictor_hidden: tuple[int, ...] = ()
    activation: str = "relu"
    optimizer: str = "sgd"
    target_width: int = 8  # bins of the prediction y
    embedding_width: int = 16  # phi's hidden layer
    gru_width: int = 256
    lifetime_conditioning: bool = False  # TA-LPG
    eval_episodes: int = 64
    eval_deterministic: bool = False  # evaluate the stochastic policy the rule trained
    eval_steps: int = 0  # evaluation episodes' step limit; 0 = the environment's episode limit (1000 without one)

    def validate(self) -> None:
        self.check_num_updates()
        if self.activation not in ACTIVATIONS:
            raise invalid_choice("activation", self.activation, ACTIVATIONS)
        if self.optimizer not in OPTIMIZERS:
            raise invalid_choice("optimizer", self.optimizer, OPTIMIZERS)
        if self.target_width < 2:
            raise InvalidChoiceError(f"target_width={self.target_width} must be at least 2 (y is a categorical vector)")


_POSITIVE = (math.ulp(0.0), math.inf, "a number > 0")
_NON_NEGATIVE = (0.0, math.inf, "a number >= 0")
HPARAM_RANGES = {"actor_lr": _POSITIVE, "predictor_lr": _POSITIVE, "max_grad_norm": _POSITIVE, "gamma": (0.0, 1.0, "a number in [0, 1]"),
                 "target_coeff": _NON_NEGATIVE, "lifetime": (0.0, math.inf, "a number >= 0 (0: num_updates)")}


@struct.dataclass
class LPGHparams:
    """Traced hyperparameters (a sweep over them is a vmap); `objective` holds the rule's parameters."""

    actor_lr: jax.Array = 40.0
    predictor_lr: jax.Array = 4.0
    max_grad_norm: jax.Array = 0.5
    gamma: jax.Array = 0.99  # only an input of the rule: the rule decides what to do with it
    target_coeff: jax.Array = 0.5  # alpha_y
    lifetime: jax.Array = 0.0  # N, the lifetime the rule is told (TA-LPG), 0 = num_updates; meta-training stops the agent there
    objective: Any = struct.field(default_factory=dict)


# ---------------------------------------------------------------------------------------------- the rule


class LPGRule(nn.Module):
    """The learned update rule. Inputs per step, arrays (T, N) unless said: reward, terminated, done (an episode
    ended: the backward GRU restarts), pi_taken = pi(a_t|s_t), y and next_y (T, N, K) the agent's predictions at
    s_t and at the step's final observation; scalars gamma, progress (n / N) and log_lifetime (log N).
    Returns pi_hat (T, N) and log y_hat (T, N, K)."""

    target_width: int = 8
    embedding_width: int = 16
    gru_width: int = 256
    lifetime_conditioning: bool = False

    @nn.compact
    def __call__(self, reward, terminated, done, pi_taken, y, next_y, gamma, progress, log_lifetime):
        embed = nn.Sequential([nn.Dense(self.embedding_width), nn.relu, nn.Dense(1)])  # phi, shared by y and next_y
        alive = 1.0 - terminated.astype(jnp.float32)
        scalar = lambda v: jnp.broadcast_to(jnp.asarray(v, jnp.float32), reward.shape)
        features = [reward, terminated.astype(jnp.float32), scalar(gamma), pi_taken]
        if self.lifetime_conditioning:
            features += [scalar(progress), scalar(log_lifetime)]
        x = jnp.concatenate([jnp.stack(features, axis=-1), embed(y), alive[..., None] * embed(next_y)], axis=-1)
        carry = jnp.zeros((reward.shape[1], self.gru_width))
        _, h = ResetGRU(self.gru_width, reverse=True)(carry, x, done)
        h = nn.relu(h)
        pi_hat = nn.Dense(1)(h)[..., 0]
        log_y_hat = jax.nn.log_softmax(nn.Dense(self.target_width)(h), axis=-1)
        return pi_hat, log_y_hat


def rule_of(config: LPGConfig) -> LPGRule:
    return LPGRule(config.target_width, config.embedding_width, config.gru_width, config.lifetime_conditioning)


def init_rule(rule: LPGRule, key: jax.Array) -> dict:
    """The rule's parameters at initialisation, from inputs of one step of one environment."""
    one = jnp.zeros((1, 1))
    y = jnp.full((1, 1, rule.target_width), 1.0 / rule.target_width)
    return rule.init(key, one, one.astype(bool), one.astype(bool), one, y, y, 0.99, 0.0, 0.0)


def rule_spec(rule: LPGRule) -> dict[str, Any]:
    return {"target_width": rule.target_width, "embedding_width": rule.embedding_width, "gru_width": rule.gru_width,
            "lifetime_conditioning": rule.lifetime_conditioning}


def save_rule(path: str, rule: LPGRule, params: Any) -> None:
    """Write a rule (its architecture and parameters) to an .npz file, atomically."""
    from jaxrl import results

    arrays = {"param/" + "/".join(k): np.asarray(v) for k, v in flatten_dict(params).items()}
    results.atomic_write_npz(path, {"__rule__": np.asarray(json.dumps(rule_spec(rule))), **arrays})


def _read_rule(path: str) -> tuple[dict[str, Any], dict]:
    try:
        with np.load(path, allow_pickle=False) as data:
            spec = json.loads(str(data["__rule__"]))
            flat = {tuple(k.split("/")[1:]): jnp.asarray(data[k]) for k in data.files if k.startswith("param/")}
    except (OSError, ValueError, KeyError) as err:
        raise InvalidChoiceError(f"cannot read rule file {path!r}: {err}") from None
    return spec, flat


def with_rule_architecture(config: LPGConfig) -> LPGConfig:
    """`config` with the rule architecture its rule file was saved with, so `--rule FILE` needs no other flag.
    An architecture setting the config changed from its default must agree with the file."""
    spec, _ = _read_rule(config.objective)
    defaults = LPGConfig()
    clash = sorted(k for k in spec if getattr(config, k) not in (getattr(defaults, k), spec[k]))
    if clash:
        raise InvalidChoiceError(f"rule file {config.objective!r} was saved with {', '.join(f'{k}={spec[k]}' for k in clash)}; "
                                 f"drop the other setting or set the same")
    return dataclasses.replace(config, **spec)


def load_rule(path: str, rule: LPGRule) -> Any:
    """The parameters in a file `save_rule` wrote, checked against the architecture `rule`."""
    spec, flat = _read_rule(path)
    if spec != rule_spec(rule):
        changed = sorted(k for k in spec if spec[k] != rule_spec(rule).get(k))
        raise InvalidChoiceError(f"rule file {path!r} was saved with {', '.join(f'{k}={spec[k]}' for k in changed)}; set the same to use it")
    params = unflatten_dict(flat)
    expected = jax.tree.map(jnp.shape, jax.eval_shape(lambda key: init_rule(rule, key), jax.random.key(0)))  # shapes only: no compile
    if jax.tree.map(jnp.shape, params) != expected:
        raise InvalidChoiceError(f"rule file {path!r} has parameter shapes that do not match its architecture {spec}")
    return params


def agent_loss(log_pi_taken: jax.Array, log_y: jax.Array, pi_hat: jax.Array, log_y_hat: jax.Array, target_coeff: jax.Array) -> tuple[jax.Array, dict]:
    """L = -mean(pi_hat log pi(a|s)) + alpha_y mean KL(y || y_hat), and its two terms. log_pi_taken, pi_hat (T, N);
    log_y, log_y_hat (T, N, K)."""
    policy_loss = -jnp.mean(pi_hat * log_pi_taken)
    kl = jnp.sum(jnp.exp(log_y) * (log_y - log_y_hat), axis=-1)
    return policy_loss + target_coeff * kl.mean(), {"policy_loss": policy_loss, "prediction_kl": kl.mean()}


# ---------------------------------------------------------------------------------------------- the agent


class Head(nn.Module):
    """An MLP and a linear output; with no hidden layers a linear map without bias (a table on one-hot inputs)."""

    features: int
    hidden: Sequence[int] = ()
    activation: str = "relu"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = MLP(self.hidden, self.activation)(x)
        return nn.Dense(self.features, use_bias=bool(self.hidden))(x)


@dataclasses.dataclass(frozen=True, eq=False)
class LPG(FeedForwardAgent):
    config: LPGConfig
    env: Any
    default_env_params: Any
    spaces: Spaces
    actor: Head
    predictor: Head
    rule: LPGRule
    rule_params: Any  # the default rule's parameters (the config's file, or the random initialisation)
    hparam_ranges = HPARAM_RANGES

    def default_hparams(self) -> LPGHparams:
        return as_float_tree(LPGHparams(lifetime=self.num_updates, objective=self.rule_params))

    def policy_action(self, params: Any, obs: jax.Array, key: jax.Array, deterministic: bool) -> jax.Array:
        """A sample of pi; deterministic: its most likely action."""
        logits = self.actor.apply(params["actor"], obs)
        return jnp.argmax(logits, axis=-1) if deterministic else jax.random.categorical(key, logits)

    def optimizers(self, hparams: LPGHparams) -> dict[str, optax.GradientTransformation]:
        make = optax.sgd if self.config.optimizer == "sgd" else optax.adam
        clip = optax.clip_by_global_norm(hparams.max_grad_norm)  # each network's gradient on its own, as GROOVE
        return {"actor": optax.chain(clip, make(hparams.actor_lr)), "predictor": optax.chain(clip, make(hparams.predictor_lr))}

    def init(self, key: jax.Array, hparams: LPGHparams) -> RolloutCarry:
        key, actor_key, predictor_key, env_key = jax.random.split(key, 4)
        example = jnp.zeros((1, self.spaces.obs_dim))
        params = {"actor": self.actor.init(actor_key, example), "predictor": self.predictor.init(predictor_key, example)}
        opt_state = {name: opt.init(params[name]) for name, opt in self.optimizers(hparams).items()}
        env_params, env_state, obs = self.init_env(env_key)
        return RolloutCarry(params, opt_state, env_params, env_state, obs, key, jnp.zeros((), jnp.int32))

    # -------------------------------------------------------------------------------- one update

    def collect(self, carry: RolloutCarry) -> tuple[RolloutCarry, Step]:
        """`num_steps` steps of every environment, actions sampled from pi: Step arrays (T, N, ...)."""
        key, rollout_key = jax.random.split(carry.key)
        act = lambda obs, k: (self.policy_action(carry.params, obs, k, False), None)
        env_state, obs, steps = rollout(self.env_stack(), carry.env_params, carry.env_state, carry.obs, act, rollout_key, self.config.num_steps)
        return carry.replace(env_state=env_state, obs=obs, key=key), steps

    def loss(self, params: Any, steps: Step, hparams: LPGHparams, progress: jax.Array, lifetime: jax.Array) -> tuple[jax.Array, dict]:
        """The agent's loss L on a rollout (module docstring): the rule sees the agent's predictions and
        probabilities but passes no gradient to them (its targets are fixed for this update)."""
        log_probs = jax.nn.log_softmax(self.actor.apply(params["actor"], steps.obs), axis=-1)
        log_pi_taken = jnp.take_along_axis(log_probs, steps.action[..., None], axis=-1)[..., 0]
        log_y = jax.nn.log_softmax(self.predictor.apply(params["predictor"], steps.obs), axis=-1)
        next_y = jax.nn.softmax(self.predictor.apply(params["predictor"], steps.final_obs), axis=-1)
        inputs = jax.lax.stop_gradient((jnp.exp(log_pi_taken), jnp.exp(log_y), next_y))
        pi_hat, log_y_hat = self.rule.apply(hparams.objective, steps.reward, steps.terminated, steps.done, *inputs, hparams.gamma, progress,
                                            jnp.log(lifetime.astype(jnp.float32)))
        loss, terms = agent_loss(log_pi_taken, log_y, pi_hat, log_y_hat, hparams.target_coeff)
        entropy = -jnp.sum(jnp.exp(log_probs) * log_probs, axis=-1).mean()
        return loss, {**terms, "pi_hat_mean": pi_hat.mean(), "pi_hat_abs": jnp.abs(pi_hat).mean(), "entropy": entropy}

    def lifetime(self, hparams: LPGHparams) -> jax.Array:
        return jnp.where(hparams.lifetime > 0, jnp.minimum(hparams.lifetime, self.num_updates), self.num_updates)

    def update(self, carry: RolloutCarry, hparams: LPGHparams) -> tuple[RolloutCarry, dict]:
        carry, steps = self.collect(carry)
        lifetime = self.lifetime(hparams)
        progress = carry.update.astype(jnp.float32) / lifetime
        (loss, stats), grads = jax.value_and_grad(self.loss, has_aux=True)(carry.params, steps, hparams, progress, lifetime)
        params, opt_state = {}, {}
        for name, optimizer in self.optimizers(hparams).items():
            updates, opt_state[name] = optimizer.update(grads[name], carry.opt_state[name], carry.params[name])
            params[name] = optax.apply_updates(carry.params[name], updates)
        carry = carry.replace(params=params, opt_state=opt_state, update=carry.update + 1)
        return carry, {**stats, "loss": loss, **episode_metrics(steps)}


def make_agent(config: LPGConfig) -> LPG:
    """Validate `config` and build the agent (environment, networks, rule and its default parameters)."""
    config.validate()
    if config.objective != RANDOM_RULE:
        config = with_rule_architecture(config)
    env, env_params = envs.make(config.env_id, **dict(config.env_kwargs))
    spaces = spaces_of(env, env_params)
    if not spaces.num_actions:
        raise InvalidChoiceError(f"lpg needs discrete actions; {config.env_id!r} has continuous ones")
    rule = rule_of(config)
    rule_params = init_rule(rule, jax.random.key(0)) if config.objective == RANDOM_RULE else load_rule(config.objective, rule)
    actor = Head(spaces.num_actions, config.actor_hidden, config.activation)
    predictor = Head(config.target_width, config.predictor_hidden, config.activation)
    return LPG(config, env, env_params, spaces, actor, predictor, rule, rule_params)


Config, Hparams = LPGConfig, LPGHparams
