"""PPO family: one on-device training loop whose policy objective is a plug-in drift (jaxrl.objectives).

    agent = make_agent(PPOConfig(env_id="CartPole-v1"))
    carry, metrics = jax.jit(agent.train)(key, agent.default_hparams())

Read top to bottom: the settings (`PPOConfig`, static; `PPOHparams`, traced), the state (`PPOCarry`), the policy
network, then one update: `collect` (roll the policy out, `rollout_step` per step), `advantages` (GAE), `learn`
(epochs x minibatches of `loss` gradient steps), and finally `evaluate`. `PPO` ties them to the agent protocol
(jaxrl.agents.base), which is all the runner and the meta layer see.

A2C is this loop with one epoch over one minibatch and A2C's settings (experiments/configs/a2c.yaml): then
r = 1 at the only gradient step and the update is exactly A2C's (Huang et al. 2022, "A2C is a special case of
PPO"; tests/test_ppo.py checks it against a hand-written A2C update).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import distrax
import jax
import jax.numpy as jnp
import optax
from flax import struct

from jaxrl import envs, objectives, speedups
from jaxrl.agents.base import Agent, RolloutConfig, Spaces, as_float_tree, episode_metrics, eval_limit, spaces_of
from jaxrl.envs.errors import InvalidChoiceError, invalid_choice
from jaxrl.envs.wrappers import normalize_observation
from jaxrl.networks import ACTIVATIONS, TORSOS, ActorCritic, RecurrentActorCritic, policy_noise, sample_with_noise
from jaxrl.networks import init_params as init_network
from jaxrl.returns import gae, values_after

CONTINUOUS_ACTIONS = ("clip", "tanh")
OPTIMIZERS = ("adam", "rmsprop")
CLIP_FRAC_THRESHOLD = 0.2  # |r - 1| above this counts towards the reported clip fraction


@dataclasses.dataclass(frozen=True)
class PPOConfig(RolloutConfig):
    """Static settings: anything that changes a shape or the program. Sweeping one of these recompiles."""

    env_id: str = "CartPole-v1"
    env_kwargs: tuple[tuple[str, Any], ...] = ()
    num_envs: int = 4
    num_steps: int = 128  # rollout length per environment
    total_timesteps: int = 500_000
    update_epochs: int = 4
    num_minibatches: int = 4
    actor_hidden: tuple[int, ...] = (64, 64)
    critic_hidden: tuple[int, ...] = (64, 64)
    activation: str = "tanh"
    recurrent: bool = False  # GRU torso; minibatches then split environments, not single steps
    gru_size: int = 128
    torso: str = "dense"  # the recurrent network's embedding: dense, or maze_conv (the maze's view, networks.MazeTorso)
    objective: str = "ppo_clip"  # a name from jaxrl.objectives.NAMES or a saved objective file (.npz)
    objective_options: tuple[tuple[str, Any], ...] = ()
    continuous_actions: str = "clip"  # how a Gaussian sample reaches a bounded action space: clip or tanh
    normalize_obs: bool = False
    normalize_reward: bool = False  # by the running std of the discounted return, discounted by hparams.gamma
    normalize_advantages: bool = True  # per minibatch (PPO); A2C uses the raw advantages
    optimizer: str = "adam"  # adam (eps 1e-5) or rmsprop (A2C's: decay 0.99, eps 1e-5 outside the root)
    anneal_lr: bool = True
    eval_episodes: int = 64
    eval_steps: int = 0  # evaluation episodes' step limit; 0 = the environment's episode limit (1000 without one)
    eval_deterministic: bool = False

    def validate(self) -> None:
        self.check_num_updates()
        split = self.num_envs if self.recurrent else self.batch_size
        if split % self.num_minibatches:
            what = "num_envs" if self.recurrent else "num_envs x num_steps"
            raise InvalidChoiceError(f"num_minibatches={self.num_minibatches} must divide {what} = {split}")
        if self.activation not in ACTIVATIONS:
            raise invalid_choice("activation", self.activation, ACTIVATIONS)
        if self.continuous_actions not in CONTINUOUS_ACTIONS:
            raise invalid_choice("continuous_actions", self.continuous_actions, CONTINUOUS_ACTIONS)
        if self.optimizer not in OPTIMIZERS:
            raise invalid_choice("optimizer", self.optimizer, OPTIMIZERS)
        if self.torso not in TORSOS:
            raise invalid_choice("torso", self.torso, TORSOS)
        if self.torso != "dense" and not self.recurrent:
            raise InvalidChoiceError(f"torso={self.torso} needs recurrent=true (it embeds the GRU's input)")


_POSITIVE = (math.ulp(0.0), math.inf, "a number > 0")
_NON_NEGATIVE = (0.0, math.inf, "a number >= 0")
_UNIT = (0.0, 1.0, "a number in [0, 1]")
# Valid values of each hyperparameter; the runner refuses others before anything is compiled.
HPARAM_RANGES = {
    "lr": _POSITIVE, "gamma": _UNIT, "gae_lambda": _UNIT, "value_clip_eps": _NON_NEGATIVE,
    "ent_coef": _NON_NEGATIVE, "vf_coef": _NON_NEGATIVE, "max_grad_norm": _POSITIVE,
}


@struct.dataclass
class PPOHparams:
    """Traced hyperparameters: changing a value never recompiles; a batch of them is a vmap axis."""

    lr: jax.Array = 2.5e-4
    gamma: jax.Array = 0.99
    gae_lambda: jax.Array = 0.95
    value_clip_eps: jax.Array = 0.2
    ent_coef: jax.Array = 0.01
    vf_coef: jax.Array = 0.5
    max_grad_norm: jax.Array = 0.5
    objective: Any = struct.field(default_factory=dict)  # the objective's parameters (see jaxrl.objectives)


@struct.dataclass
class PPOCarry:
    """Everything that changes during training; checkpointing this is checkpointing the run."""

    params: Any
    opt_state: Any
    env_params: Any  # the environments' parameters, leading axis num_envs: levels are data (see `PPO.reset_to`)
    env_state: Any
    obs: jax.Array  # (num_envs, obs_dim)
    hidden: jax.Array  # (num_envs, gru_size); (num_envs, 0) for feed-forward networks
    episode_start: jax.Array  # (num_envs,) bool: obs is the first of an episode (resets the GRU)
    key: jax.Array
    update: jax.Array  # int32 count of updates done


class Transition(NamedTuple):
    """One rollout step of every environment; in a rollout each field gains a leading time axis."""

    obs: jax.Array  # bool for 0/1 observations (envs.compact_observations)
    action: jax.Array  # for tanh-squashed actions, the Gaussian sample before squashing
    log_prob: jax.Array
    value: jax.Array
    reward: jax.Array
    terminated: jax.Array
    done: jax.Array
    episode_start: jax.Array
    final_obs: jax.Array  # the observation after the step, before any auto-reset
    hidden_after: jax.Array
    episode_return: jax.Array  # of the last finished episode; counts where `done`


class RolloutState(NamedTuple):
    """What the rollout loop carries from one step to the next."""

    env_state: Any
    obs: jax.Array  # (num_envs, obs_dim)
    hidden: jax.Array  # (num_envs, gru_size or 0)
    episode_start: jax.Array  # (num_envs,) bool


class EvalState(NamedTuple):
    """What the evaluation loop carries: one episode per environment copy, masked after its end."""

    obs: jax.Array  # (eval_episodes, obs_dim)
    env_state: Any
    hidden: jax.Array
    first: jax.Array  # (eval_episodes,) bool: the first step (resets a recurrent policy)
    active: jax.Array  # (eval_episodes,) bool: the episode has not ended yet
    total: jax.Array  # (eval_episodes,) undiscounted return so far


class Batch(NamedTuple):
    """One update's data: the rollout (T, N) with its advantages and targets, and the hidden state it began in."""

    hidden0: jax.Array  # (num_envs, gru_size or 0)
    traj: Transition
    advantages: jax.Array
    targets: jax.Array
    epoch_key: jax.Array  # shuffles the minibatches


# ---------------------------------------------------------------------------------------------- the network


class Policy(NamedTuple):
    """The actor-critic network seen as sequences: `apply(params, hidden, obs (T, B, obs_dim), starts (T, B))
    -> (hidden after, pi over (T, B), value (T, B))`. A feed-forward network ignores `hidden` and `starts`."""

    apply: Callable[[Any, jax.Array, jax.Array, jax.Array], tuple[jax.Array, distrax.Distribution, jax.Array]]
    init: Callable[[jax.Array], Any]  # key -> params
    hidden_size: int  # 0 for a feed-forward network
    recurrent: bool


def make_policy(config: PPOConfig, obs_dim: int, num_actions: int, action_dim: int) -> Policy:
    """The configured actor-critic (MLP, or GRU torso with `recurrent`) behind the one sequence interface, so the
    rollout, the loss and the evaluation never branch on the network kind."""
    if config.recurrent:
        net = RecurrentActorCritic(num_actions, action_dim, config.gru_size, config.actor_hidden, config.critic_hidden, config.activation, config.torso)
        example = (jnp.zeros((config.num_envs, config.gru_size)), jnp.zeros((1, config.num_envs, obs_dim)), jnp.zeros((1, config.num_envs), bool))
        return Policy(net.apply, lambda key: init_network(net, key, *example), config.gru_size, True)

    net = ActorCritic(num_actions, action_dim, config.actor_hidden, config.critic_hidden, config.activation)

    def apply(params, hidden, obs, starts):
        pi, value = net.apply(params, obs)
        return hidden, pi, value

    return Policy(apply, lambda key: init_network(net, key, jnp.zeros((1, obs_dim))), 0, False)


def _flat(x: jax.Array) -> jax.Array:
    """(T, N, ...) -> (1, T * N, ...): a feed-forward batch as T * N length-1 sequences."""
    return x.reshape((1, x.shape[0] * x.shape[1]) + x.shape[2:])


def squash(action: jax.Array, spaces: Spaces) -> jax.Array:
    """A Gaussian sample u -> low + (tanh(u) + 1) / 2 * (high - low), inside the action space."""
    return spaces.low + 0.5 * (jnp.tanh(action) + 1.0) * (spaces.high - spaces.low)


def squashed_entropy(pi: distrax.Distribution, action: jax.Array, spaces: Spaces) -> jax.Array:
    """One-sample estimate of the entropy of the squashed action a = squash(u):
    H[a] = H[u] + E[log |da/du|], log |da/du| = sum_i log((high_i - low_i) / 2) + log(1 - tanh(u_i)^2).

    The Gaussian's own entropy alone ignores the squashing and rewards spreading u into the flat tails of tanh,
    i.e. saturated actions. u is the stored sample, re-expressed through the current policy's location and scale
    (reparameterised) so the estimate's gradient reaches both; log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u))
    is the stable form."""
    noise = jax.lax.stop_gradient((action - pi.loc) / pi.scale_diag)
    u = pi.loc + pi.scale_diag * noise
    log_det = 2.0 * (jnp.log(2.0) - u - jax.nn.softplus(-2.0 * u)) + jnp.log(0.5 * (spaces.high - spaces.low))
    return pi.entropy() + log_det.sum(-1)


# ---------------------------------------------------------------------------------------------- the agent


@dataclasses.dataclass(frozen=True, eq=False)
class PPO(Agent):
    """PPO on the agent protocol. Build with `make_agent(config)`; every method is a pure function of its
    arguments (the fields are static: config, environment, network, objective)."""

    config: PPOConfig
    env: Any  # the bare environment
    default_env_params: Any  # its default parameters, one copy (the carry holds one per environment copy)
    spaces: Spaces
    policy: Policy
    objective: objectives.Objective
    objective_params: Any  # the objective's default parameters (a saved objective's, or its init)
    hparam_ranges = HPARAM_RANGES

    @property
    def num_updates(self) -> int:
        return self.config.num_updates

    @property
    def steps_per_update(self) -> int:
        return self.config.batch_size

    # -------------------------------------------------------------------------------- settings and state

    def default_hparams(self) -> PPOHparams:
        return as_float_tree(PPOHparams(objective=self.objective_params))

    def env_stack(self, gamma: jax.Array | None = None, *, evaluation: bool = False, obs_stats: Any = None,
                  eval_levels: int = 0) -> Any:
        """The training (or evaluation) environment stack. Reward normalisation discounts with `gamma`, the
        agent's own (traced) discount, so a sweep over gamma keeps the two consistent and never recompiles.
        eval_levels > 0: an evaluation stack of that many copies, each with its own parameters (levels)."""
        c = self.config
        spec = envs.StackSpec(
            num_envs=eval_levels or (c.eval_episodes if evaluation else c.num_envs),
            clip_actions=c.continuous_actions == "clip",
            normalize_obs=c.normalize_obs,
            normalize_reward=c.normalize_reward,
            per_env_params=not evaluation or eval_levels > 0,
        )
        return envs.build_stack(self.env, spec, evaluation=evaluation, reward_gamma=gamma, obs_stats=obs_stats)

    def to_env_action(self, action: jax.Array) -> jax.Array:
        if self.spaces.num_actions or self.config.continuous_actions == "clip":
            return action  # ClipAction clips continuous actions inside the environment stack
        return squash(action, self.spaces)

    def make_optimizer(self, hparams: PPOHparams) -> optax.GradientTransformation:
        c = self.config
        grad_steps_per_update = c.update_epochs * c.num_minibatches

        def annealed(count):
            return hparams.lr * (1.0 - (count // grad_steps_per_update) / c.num_updates)

        learning_rate = annealed if c.anneal_lr else hparams.lr
        if c.optimizer == "rmsprop":  # PyTorch's (and so the A2C baselines'): eps added outside the square root
            inner = optax.rmsprop(learning_rate, decay=0.99, eps=1e-5, eps_in_sqrt=False)
        else:
            inner = optax.adam(learning_rate, eps=1e-5)
        return optax.chain(optax.clip_by_global_norm(hparams.max_grad_norm), inner)

    def init(self, key: jax.Array, hparams: PPOHparams) -> PPOCarry:
        c = self.config
        key, net_key, env_key = jax.random.split(key, 3)
        params = self.policy.init(net_key)
        env = self.env_stack(hparams.gamma)
        env_params = env.batch_params(self.default_env_params)
        # JAX's own keys for the reset: its draw is sliced into the state's fields (see speedups.loop_key).
        obs, env_state = env.reset(env_key, env_params)
        return PPOCarry(
            params=params,
            opt_state=self.make_optimizer(hparams).init(params),
            env_params=env_params,
            env_state=env_state,
            obs=obs,
            hidden=jnp.zeros((c.num_envs, self.policy.hidden_size)),
            episode_start=jnp.ones((c.num_envs,), bool),
            key=key,
            update=jnp.zeros((), jnp.int32),
        )

    def reset_to(self, carry: PPOCarry, env_params: Any, key: jax.Array, hparams: PPOHparams) -> PPOCarry:
        """Put new levels in the carry (`env_params` with a leading axis of num_envs) and start a fresh episode on
        each. Normalisation and episode statistics carry over (the new observations are normalised with the kept
        statistics); the recurrent state restarts."""
        stats = envs.find_obs_stats(carry.env_state) if self.config.normalize_obs else None
        obs, env_state = self.env_stack(hparams.gamma, obs_stats=stats).reset(key, env_params)
        return carry.replace(
            env_params=env_params,
            env_state=envs.keep_statistics(carry.env_state, env_state),
            obs=obs,
            hidden=jnp.zeros_like(carry.hidden),
            episode_start=jnp.ones_like(carry.episode_start),
        )

    # -------------------------------------------------------------------------------- collect

    def rollout_step(self, params: Any, env: Any, env_params: Any, state: RolloutState, xs: tuple) -> tuple[RolloutState, Transition]:
        """One environment step for every environment. xs: (policy noise (num_envs, ...), environment key)."""
        noise, step_key = xs
        hidden, pi, value = self.policy.apply(params, state.hidden, state.obs[None], state.episode_start[None])
        action = sample_with_noise(pi, noise[None])
        log_prob = pi.log_prob(action)
        action, log_prob, value = action[0], log_prob[0], value[0]
        next_obs, env_state, reward, terminated, truncated, info = env.step(step_key, state.env_state, self.to_env_action(action), env_params)
        done = jnp.logical_or(terminated, truncated)
        transition = Transition(
            obs=envs.compact_observations(env, state.obs), action=action, log_prob=log_prob, value=value, reward=reward,
            terminated=terminated, done=done, episode_start=state.episode_start,
            final_obs=envs.compact_observations(env, info["final_observation"]), hidden_after=hidden,
            episode_return=info["episode_return"],
        )
        return RolloutState(env_state, next_obs, hidden, done), transition

    def collect(self, carry: PPOCarry, hparams: PPOHparams) -> tuple[PPOCarry, Batch]:
        """Roll the current policy out for `num_steps` steps; the batch's arrays are (num_steps, num_envs, ...)
        with advantages and value targets from GAE."""
        c, s = self.config, self.spaces
        key, noise_key, rollout_key, epoch_key = jax.random.split(carry.key, 4)
        noise = policy_noise(speedups.loop_key(noise_key), (c.num_steps, c.num_envs), s.num_actions, s.action_dim)
        xs = (noise, speedups.split_for_loop(rollout_key, c.num_steps))
        env = self.env_stack(hparams.gamma)
        step = functools.partial(self.rollout_step, carry.params, env, carry.env_params)
        start = RolloutState(carry.env_state, carry.obs, carry.hidden, carry.episode_start)
        end, traj = jax.lax.scan(step, start, xs)
        # An observation starts an episode iff the step before it ended one (derived here, not stored per step).
        traj = traj._replace(episode_start=jnp.concatenate([carry.episode_start[None], traj.done[:-1]]))
        traj, next_values = self.critic_values(carry.params, traj, end._replace(obs=envs.compact_observations(env, end.obs)))
        advantages, targets = gae(traj.reward, traj.value, next_values, traj.terminated, traj.done, hparams.gamma, hparams.gae_lambda)
        new_carry = carry.replace(env_state=end.env_state, obs=end.obs, hidden=end.hidden, episode_start=end.episode_start, key=key)
        return new_carry, Batch(carry.hidden, traj, advantages, targets, epoch_key)

    def critic_values(self, params: Any, traj: Transition, last: RolloutState) -> tuple[Transition, jax.Array]:
        """Values (num_steps, num_envs) of the observations that followed each step, before any auto-reset (what GAE
        bootstraps from; see returns.values_after): the rollout's own next values, the value of `last.obs` (the
        observation after the last step) and, at time limits only, of the final observation. A feed-forward critic
        may also re-evaluate the rollout's own observations in the same pass (speedups.critic_pass)."""
        if self.policy.recurrent:
            value = lambda hidden, obs, starts: self.policy.apply(params, hidden, obs[None], starts[None])[2][0]
            values, last_values = traj.value, value(last.hidden, last.obs, last.episode_start)
            at_time_limit = lambda rows: value(rows(traj.hidden_after), rows(traj.final_obs), jnp.zeros_like(last.episode_start))
        else:
            critic = lambda obs: self.policy.apply(params, None, _flat(obs), None)[2].reshape(obs.shape[:2])
            values, last_values = speedups.critic_pass(critic, traj.obs, last.obs, traj.value)
            at_time_limit = lambda rows: critic(rows(traj.final_obs)[None])[0]
        truncated = traj.done & ~traj.terminated
        return traj._replace(value=values), values_after(values, last_values, truncated, at_time_limit)

    # -------------------------------------------------------------------------------- learn

    def loss(self, params: Any, hparams: PPOHparams, minibatch: tuple, progress: jax.Array) -> tuple[jax.Array, dict]:
        """Actor loss -mean(r A - D(r, A)) (mirror learning; D is the objective's drift), clipped value loss and
        entropy bonus, for one minibatch of sequences (T, B)."""
        hidden0, traj, advantages, targets = minibatch
        _, pi, value = self.policy.apply(params, hidden0, traj.obs, traj.episode_start)
        log_ratio = pi.log_prob(traj.action) - traj.log_prob
        ratio = jnp.exp(log_ratio)
        adv = (advantages - advantages.mean()) / (advantages.std() + 1e-8) if self.config.normalize_advantages else advantages
        drift = self.objective.drift(hparams.objective, log_ratio, adv, progress)
        actor_loss = -jnp.mean(ratio * adv - drift)

        value_clipped = traj.value + jnp.clip(value - traj.value, -hparams.value_clip_eps, hparams.value_clip_eps)
        value_loss = 0.5 * jnp.mean(jnp.maximum((value - targets) ** 2, (value_clipped - targets) ** 2))
        if self.spaces.num_actions or self.config.continuous_actions == "clip":
            entropy = jnp.mean(pi.entropy())
        else:
            entropy = jnp.mean(squashed_entropy(pi, traj.action, self.spaces))
        total = actor_loss + hparams.vf_coef * value_loss - hparams.ent_coef * entropy
        stats = {
            "actor_loss": actor_loss,
            "value_loss": value_loss,
            "entropy": entropy,
            "approx_kl": jnp.mean(jnp.expm1(log_ratio) - log_ratio),
            "clip_frac": jnp.mean((jnp.abs(ratio - 1.0) > CLIP_FRAC_THRESHOLD).astype(jnp.float32)),
            "drift": jnp.mean(drift),
        }
        return total, stats

    def learn(self, carry: PPOCarry, batch: Batch, hparams: PPOHparams) -> tuple[PPOCarry, dict]:
        """`update_epochs` passes of `num_minibatches` gradient steps over `batch`; returns per-update means."""
        c = self.config
        # Minibatches split axis 1 of (time, column) arrays. Feed-forward: every sample is its own column of a
        # length-1 sequence; recurrent: every environment is a column, whole sequences stay together.
        if c.recurrent:
            hidden0, traj, advantages, targets = batch.hidden0, batch.traj, batch.advantages, batch.targets
        else:
            hidden0 = jnp.zeros((c.batch_size, 0))
            traj, advantages, targets = jax.tree.map(_flat, (batch.traj, batch.advantages, batch.targets))
        num_columns = advantages.shape[1]
        progress = carry.update.astype(jnp.float32) / c.num_updates
        optimizer = self.make_optimizer(hparams)
        grad_fn = jax.value_and_grad(self.loss, has_aux=True)

        def minibatch_step(state, minibatch):
            params, opt_state = state
            (loss, stats), grads = grad_fn(params, hparams, minibatch, progress)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            params = optax.apply_updates(params, updates)
            return (params, opt_state), {**stats, "loss": loss, "grad_norm": optax.tree.norm(grads)}

        def gathered_step(state, columns):
            # Each minibatch gathers its own columns: one pass over the batch per epoch, and only over the fields
            # the loss reads (a shuffled copy of the whole batch, then sliced, was two).
            minibatch = (jnp.take(hidden0, columns, 0), jax.tree.map(lambda x: jnp.take(x, columns, 1), traj),
                         jnp.take(advantages, columns, 1), jnp.take(targets, columns, 1))
            return minibatch_step(state, minibatch)

        perms = speedups.permutations(batch.epoch_key, num_columns, (c.update_epochs,))
        columns = perms.reshape((c.update_epochs * c.num_minibatches, num_columns // c.num_minibatches))
        (params, opt_state), stats = jax.lax.scan(gathered_step, (carry.params, carry.opt_state), columns)

        metrics = {**{k: v.mean() for k, v in stats.items()}, **episode_metrics(batch.traj)}
        return carry.replace(params=params, opt_state=opt_state, update=carry.update + 1), metrics

    def update(self, carry: PPOCarry, hparams: PPOHparams) -> tuple[PPOCarry, dict]:
        carry, batch = self.collect(carry, hparams)
        return self.learn(carry, batch, hparams)

    # -------------------------------------------------------------------------------- acting and evaluation

    def act(self, params: Any, obs: jax.Array, key: jax.Array, deterministic: bool = False) -> jax.Array:
        """Actions (B, ...) for observations obs (B, obs_dim), inside the action space. A recurrent policy acts as at
        the first step of an episode (no memory); `policy_step` keeps one."""
        return self.policy_step({"params": params}, self.initial_hidden(obs.shape[0]), obs, jnp.ones(obs.shape[:1], bool), key, deterministic)[1]

    def policy_state(self, carry: PPOCarry) -> dict[str, Any]:
        """What acting needs after training (the runner keeps it in the results folder): the parameters, and the
        observation statistics when observations are normalised."""
        stats = envs.find_obs_stats(carry.env_state) if self.config.normalize_obs else None
        return {"params": carry.params, "obs_stats": stats}

    def act_with(self, state: dict[str, Any], obs: jax.Array, key: jax.Array, deterministic: bool = False) -> jax.Array:
        """Actions (B, ...) for raw observations obs (B, obs_dim) from a kept `policy_state`: normalised as in
        training, then `act` (a recurrent policy without memory: see `policy_step`)."""
        return self.policy_step(state, self.initial_hidden(obs.shape[0]), obs, jnp.ones(obs.shape[:1], bool), key, deterministic)[1]

    def initial_hidden(self, batch: int) -> jax.Array:
        """The recurrent state (batch, hidden_size) `policy_step` starts from; (batch, 0) for a feed-forward policy."""
        return jnp.zeros((batch, self.policy.hidden_size))

    def policy_step(self, state: dict[str, Any], hidden: jax.Array, obs: jax.Array, first: jax.Array, key: jax.Array,
                    deterministic: bool = False) -> tuple[jax.Array, jax.Array]:
        """One step of a kept policy `state` (`policy_state`, or just {"params": ...}) that carries its memory from step
        to step, as in training: raw observations obs (B, obs_dim) (normalised with the state's statistics, if any),
        the recurrent state `hidden` (B, hidden_size), `first` (B,) bool, True at an episode's first observation (the
        GRU restarts there) -> (hidden after, actions (B, ...) inside the action space)."""
        if state.get("obs_stats") is not None:
            obs = normalize_observation(state["obs_stats"], obs)
        hidden, pi, _ = self.policy.apply(state["params"], hidden, obs[None], first[None])
        action = self.to_env_action((pi.mode() if deterministic else pi.sample(seed=key))[0])
        if not self.spaces.num_actions:  # inside the space, whatever the stack it is given to
            action = jnp.clip(action, self.spaces.low, self.spaces.high)
        return hidden, action

    def eval_limit(self) -> int:
        return eval_limit(self.config, self.default_env_params)

    def evaluate(self, carry: PPOCarry, key: jax.Array) -> jax.Array:
        """Mean undiscounted return of the current policy over `eval_episodes` fresh episodes (one each) of the
        default environment, observations normalised with the training statistics, frozen."""
        return self.episode_returns(self.policy_state(carry), key).mean()

    def episode_returns(self, state: dict[str, Any], key: jax.Array, levels: Any = None) -> jax.Array:
        """Undiscounted returns (n,) of one fresh episode each of the policy `state` (`policy_state`): of the default
        environment (n = eval_episodes), or of `levels`, environment parameters with a leading axis n (one level
        per episode, e.g. held-out mazes)."""
        c, s = self.config, self.spaces
        params, stats = state["params"], state["obs_stats"]
        n = c.eval_episodes if levels is None else jax.tree.leaves(levels)[0].shape[0]
        env = self.env_stack(evaluation=True, obs_stats=stats, eval_levels=0 if levels is None else n)
        env_params = self.default_env_params if levels is None else levels
        reset_key, noise_key, step_key = jax.random.split(key, 3)
        obs, env_state = env.reset(reset_key, env_params)
        limit = self.eval_limit()
        noise = policy_noise(speedups.loop_key(noise_key), (limit, n), s.num_actions, s.action_dim)
        xs = (noise, speedups.split_for_loop(step_key, limit))

        def step(state: EvalState, xs):
            noise, env_key = xs
            hidden, pi, _ = self.policy.apply(params, state.hidden, state.obs[None], state.first[None])
            action = pi.mode() if c.eval_deterministic else sample_with_noise(pi, noise[None])
            obs, env_state, reward, terminated, truncated, _ = env.step(env_key, state.env_state, self.to_env_action(action[0]), env_params)
            total = state.total + reward * state.active
            active = state.active & ~(terminated | truncated)  # each episode counts once, up to its end
            return EvalState(obs, env_state, hidden, jnp.zeros_like(state.first), active, total), None

        start = EvalState(obs, env_state, jnp.zeros((n, self.policy.hidden_size)), jnp.ones((n,), bool), jnp.ones((n,), bool), jnp.zeros((n,)))
        end, _ = jax.lax.scan(step, start, xs)
        return end.total


def make_agent(config: PPOConfig) -> PPO:
    """Validate `config` and build the agent (environment, network, objective)."""
    config.validate()
    objective, saved_objective_params = objectives.resolve(config.objective, **dict(config.objective_options))
    env, env_params = envs.make(config.env_id, **dict(config.env_kwargs))
    spaces = spaces_of(env, env_params)
    policy = make_policy(config, spaces.obs_dim, spaces.num_actions, spaces.action_dim)
    objective_params = saved_objective_params if saved_objective_params is not None else objective.init(jax.random.key(0))
    return PPO(config, env, env_params, spaces, policy, objective, objective_params)


# The names the CLI and the runner look up on every algorithm module.
Config, Hparams = PPOConfig, PPOHparams


def make_train(config: PPOConfig) -> Any:
    """`train(key, hparams) -> (final carry, metrics)`; metrics are per-update arrays plus `final_return`."""
    return make_agent(config).train
