"""Meta-training a learned update rule (LPG; TA-LPG with lifetime conditioning) by evolution, on grid-world levels
that a curriculum chooses: uniform random levels (LPG), PLR, or GROOVE's PLR by algorithmic regret (Jackson et al.
2023, "Discovering General Reinforcement Learning Algorithms with Adversarial Environment Design").

    meta = MetaLPG(MetaLPGConfig(curriculum="groove"))
    summary = meta.run(out)                    # `jaxrl meta lpg --curriculum groove ... --out DIR`

One generation (`MetaLPG.generation`), read top to bottom:
  1. the ES asks for P rules in antithetic pairs: member i and member i + P/2 are mean +- sigma z_i (evosax OpenES);
  2. the curriculum proposes P/2 tasks, a level and a lifetime each (curriculum.py: "uniform" is DR, "plr" and
     "groove" replay the buffer's high scorers with probability replay_prob, else new random levels);
  3. both rules of pair i train a fresh agent on task i, from the same initial agent and the same keys, for the
     task's lifetime (`train_on_level`); all P agents are one vmapped program. An agent's return is the mean return
     of its final policy over eval_episodes fresh episodes of the level;
  4. fitness: win / lose within each pair (winner 1, loser 0, 0.5 each on a tie), so levels of different reward
     scales weigh the same; or centred ranks of the raw returns over the population (`shaping`). The ES steps its
     mean (Adam);
  5. the tasks' scores go into the level buffer:
        groove:  AR = R(antagonist) - R(LPG agent)   (algorithmic regret; R(LPG agent) = the pair's mean return)
        plr:     the positive value loss of the antagonist's last rollout on the level
     The antagonist (an A2C agent, PPO's loop with A2C's settings, see `antagonist_config`) trained on the same
     level for the same lifetime does not change with the rule, so it is trained once per level, when the level is
     new, and its return and PVL are kept with the level in the buffer (GROOVE's reference code retrained it on
     every level at every step).

The learned LPG agent has no value function, so PLR's positive value loss is the antagonist's: what an A2C
learner still gets wrong on the level after its lifetime. Unlike AR it does not move as the rule improves.

Generation g draws its keys from fold_in(key, g) alone, and the ES state, the curriculum's buffer and the history
are checkpointed together, so a resumed run continues exactly as the uninterrupted run would have.
"""

from __future__ import annotations

import dataclasses
import functools
import sys
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxrl import results
from jaxrl.agents import lpg, ppo
from jaxrl.agents.base import update_while
from jaxrl.config import apply_overrides, build
from jaxrl.envs import gridworld
from jaxrl.envs.errors import InvalidChoiceError, invalid_choice
from jaxrl.meta.es import make_es
from jaxrl.meta.generations import run_generations
from jaxrl.meta.levels.buffer import PLRConfig, size
from jaxrl.meta.levels.curriculum import NEW, REPLAY, Curriculum
from jaxrl.meta.levels.scores import rollout_scores
from jaxrl.run_axis import RunAxis

CURRICULA = {"uniform": "dr", "plr": "plr", "groove": "plr"}  # ours -> the level curriculum's method
SHAPINGS = ("win_lose", "centered_rank")
EVAL_STEPS = gridworld.MAX_STEPS_RANGE[1]  # the longest random level's episode
HELDOUT_STREAM = 2**32 - 1  # fold_in index of the held-out evaluation's key; generations count up from 0


@functools.partial(jax.jit, static_argnums=2)
def generation_keys(key: jax.Array, g: int | jax.Array, num_pairs: int) -> tuple[jax.Array, ...]:
    """Generation g's keys: ask, propose, the agents' (num_pairs,), the antagonists' (num_pairs,), tell. One compiled
    program (eager splits compiled one small program each in generation 0)."""
    ask, propose, agents, antagonists, tell = jax.random.split(jax.random.fold_in(key, g), 5)
    return ask, propose, jax.random.split(agents, num_pairs), jax.random.split(antagonists, num_pairs), tell


@dataclasses.dataclass(frozen=True)
class MetaLPGConfig:
    """Static settings of a meta-training run. The agent's settings (num_envs x num_steps per update, optimiser,
    learning rates) are LPGConfig's defaults, GROOVE's tabular ones, unless `agent` overrides them."""

    curriculum: str = "groove"
    population: int = 16  # P rules a generation, P/2 antithetic pairs and as many tasks
    generations: int = 100
    sigma: float = 0.1
    lr: float = 0.01
    shaping: str = "win_lose"
    lifetime: int = 250  # agent updates; every agent lives this long unless min_lifetime is set
    min_lifetime: int = 0  # > 0: lifetimes log-uniform in [min_lifetime, lifetime] (TA-LPG's lifetime schedules)
    lifetime_conditioning: bool = False  # TA-LPG: the rule sees n / N and log N
    level: str = "random"  # "random" (GROOVE's distribution) or an LPG level's name: meta-train on that one level
    eval_episodes: int = 64
    buffer_capacity: int = 1000
    replay_prob: float = 0.5  # GROOVE's
    temperature: float = 1.0  # rank prioritisation h = (1 / rank) ** (1 / temperature)
    staleness_coef: float = 0.3
    min_fill: float = 0.0  # replay as soon as the buffer holds a batch of levels
    agent: tuple[tuple[str, Any], ...] = ()  # LPGConfig settings (e.g. num_envs, gru_width)
    antagonist_lr: float = 0.01  # Adam; measured best of 0.003-1 on random levels, lifetime 50 (tune_lpg_antagonist.py)
    heldout_every: int = 10  # every k generations the ES mean trains agents on LPG's five levels (0: never)
    checkpoint_every: int = 10
    max_devices: int | None = None
    seed: int = 0

    def validate(self) -> None:
        if self.curriculum not in CURRICULA:
            raise invalid_choice("curriculum", self.curriculum, CURRICULA)
        if self.shaping not in SHAPINGS:
            raise invalid_choice("fitness shaping", self.shaping, SHAPINGS)
        if self.population < 2 or self.population % 2:
            raise InvalidChoiceError(f"population={self.population} must be an even number >= 2 (antithetic pairs)")
        if self.level != "random" and self.level not in gridworld.LPG_LEVELS:
            raise invalid_choice("level", self.level, ("random", *gridworld.LPG_LEVELS))
        if not 0 <= self.min_lifetime <= self.lifetime:
            raise InvalidChoiceError(f"min_lifetime={self.min_lifetime} must be in [0, lifetime={self.lifetime}]")
        if self.heldout_every < 0:
            raise InvalidChoiceError(f"heldout_every={self.heldout_every} must be >= 0 (0: no held-out evaluation)")
        if self.curriculum != "uniform" and self.buffer_capacity < self.population // 2:
            raise InvalidChoiceError(f"buffer_capacity={self.buffer_capacity} must hold a generation's {self.population // 2} levels")

    @property
    def num_pairs(self) -> int:
        return self.population // 2


@struct.dataclass
class Task:
    """A level to meta-train on, its lifetime, and what the antagonist achieves there (NaN until computed)."""

    level: gridworld.GridLevel
    lifetime: jax.Array  # () int32, agent updates
    antagonist_return: jax.Array  # () float32
    antagonist_pvl: jax.Array  # () float32


# ---------------------------------------------------------------------------------------------- pieces


def win_lose(returns: np.ndarray) -> np.ndarray:
    """Fitness (P,) from returns (P,) of antithetic pairs (i, i + P/2): 1 for the pair's winner, 0 for its loser,
    0.5 each on a tie."""
    half = len(returns) // 2
    plus, minus = returns[:half], returns[half:]
    won = np.where(plus > minus, 1.0, np.where(plus < minus, 0.0, 0.5))
    return np.concatenate([won, 1.0 - won])


def algorithmic_regret(antagonist_returns: np.ndarray, returns: np.ndarray) -> np.ndarray:
    """AR (P/2,) of each pair's task: the antagonist's return minus the LPG agents' (the mean over the pair's two
    rules, which share the task). returns: (P,) with pairs (i, i + P/2)."""
    half = len(returns) // 2
    return antagonist_returns - 0.5 * (returns[:half] + returns[half:])


def level_copies(level: gridworld.GridLevel, n: int) -> gridworld.GridParams:
    """Environment parameters with a leading axis n, every copy playing `level`."""
    return jax.tree.map(lambda x: jnp.broadcast_to(x, (n, *x.shape)), gridworld.GridParams(level=level))


def train_on_level(agent: Any, hparams: Any, level: gridworld.GridLevel, lifetime: jax.Array, key: jax.Array) -> Any:
    """A fresh agent trained on `level` (all its environments) for `lifetime` updates (<= agent.num_updates; the
    updates after it are computed and discarded, so agents of different lifetimes share one program)."""
    init_key, reset_key = jax.random.split(key)
    carry = agent.init(init_key, hparams)
    carry = agent.reset_to(carry, level_copies(level, agent.config.num_envs), reset_key, hparams)

    def step(carry, n):
        return update_while(agent, carry, hparams, n < lifetime)[0], None

    return jax.lax.scan(step, carry, jnp.arange(agent.num_updates))[0]


def level_return(agent: Any, carry: Any, level: gridworld.GridLevel, key: jax.Array, episodes: int) -> jax.Array:
    """Mean return of the carry's policy over `episodes` fresh episodes of `level`."""
    return agent.episode_returns(agent.policy_state(carry), key, level_copies(level, episodes)).mean()


def antagonist_config(config: MetaLPGConfig, agent_config: lpg.LPGConfig) -> ppo.PPOConfig:
    """GROOVE's A2C antagonist as PPO's loop: the LPG agent's batch (num_envs x num_steps) and lifetime, one
    gradient step per rollout (one epoch, one minibatch, no trust region), normalised advantages, linear policy and
    value on the one-hot observation, GAE lambda 0.95 and entropy 0.01 (set in `antagonist_hparams`)."""
    return ppo.PPOConfig(
        env_id=agent_config.env_id, num_envs=agent_config.num_envs, num_steps=agent_config.num_steps,
        total_timesteps=agent_config.total_timesteps, update_epochs=1, num_minibatches=1, objective="no_trust_region",
        actor_hidden=agent_config.actor_hidden, critic_hidden=agent_config.predictor_hidden, anneal_lr=False,
        eval_episodes=config.eval_episodes, eval_steps=EVAL_STEPS,
    )


def agent_settings(config: MetaLPGConfig) -> tuple[lpg.LPGConfig, dict[str, float]]:
    """The LPG agent's static config and hyperparameter overrides: `config.agent` (LPGConfig settings and LPGHparams
    names) over GROOVE's tabular defaults, with the lifetime, evaluation and rule architecture of `config`."""
    fixed = {"total_timesteps", "eval_episodes", "eval_steps", "lifetime_conditioning", "objective", "env_id", "lifetime"}
    clash = sorted(fixed & {k for k, _ in config.agent})
    if clash:
        raise InvalidChoiceError(f"agent setting {clash[0]!r} is set by meta lpg itself (see its flags)")
    settings = {"num_envs": 64, "num_steps": 20, **dict(config.agent)}
    agent_config, overrides = build(lpg.LPGConfig, lpg.LPGHparams, settings)
    return dataclasses.replace(agent_config, total_timesteps=agent_config.batch_size * config.lifetime, eval_episodes=config.eval_episodes,
                               eval_steps=EVAL_STEPS, lifetime_conditioning=config.lifetime_conditioning), overrides


# ---------------------------------------------------------------------------------------------- the loop


class MetaLPG:
    def __init__(self, config: MetaLPGConfig) -> None:
        config.validate()
        self.config = config
        agent_config, overrides = agent_settings(config)
        self.agent = lpg.make_agent(agent_config)
        self.hparams = apply_overrides(self.agent.default_hparams(), overrides)
        self.antagonist = ppo.make_agent(antagonist_config(config, agent_config))
        base = self.antagonist.default_hparams()
        self.antagonist_hparams = base.replace(lr=jnp.float32(config.antagonist_lr), gae_lambda=jnp.float32(0.95), ent_coef=jnp.float32(0.01))
        self.es = make_es("open_es", config.population, self.hparams.objective, sigma=config.sigma, lr=config.lr,
                          shaping="none" if config.shaping == "win_lose" else "centered_rank", antithetic=True)
        plr = PLRConfig(capacity=max(config.buffer_capacity, 1), replay_prob=config.replay_prob, temperature=config.temperature,
                        staleness_coef=config.staleness_coef, min_fill=config.min_fill)
        self.curriculum = Curriculum(CURRICULA[config.curriculum], self.new_task, config.num_pairs, plr)
        self.protagonist_axis = RunAxis.plan(self.agent, self.hparams, config.population, max_devices=config.max_devices)
        self.antagonist_axis = RunAxis.plan(self.antagonist, self.antagonist_hparams, config.num_pairs, max_devices=config.max_devices)
        self._ask, self._tell = jax.jit(self.es.ask), jax.jit(self.es.tell)
        self._init_state = jax.jit(self.init_state)
        self._propose, self._observe = jax.jit(self.curriculum.propose), jax.jit(self.curriculum.observe)
        self._protagonists = self.protagonist_axis.map(self._protagonist_return)
        self._antagonists = self.antagonist_axis.map(self._antagonist_stats)
        self.compile_s = 0.0

    # -- tasks

    def new_task(self, key: jax.Array) -> Task:
        level_key, lifetime_key = jax.random.split(key)
        c = self.config
        level = gridworld.random_level(level_key) if c.level == "random" else gridworld.lpg_level(c.level)
        if c.min_lifetime:
            u = jax.random.uniform(lifetime_key)
            lifetime = jnp.round(jnp.exp(np.log(c.min_lifetime) + u * (np.log(c.lifetime) - np.log(c.min_lifetime)))).astype(jnp.int32)
        else:
            lifetime = jnp.int32(c.lifetime)
        return Task(level, lifetime, jnp.float32(jnp.nan), jnp.float32(jnp.nan))

    # -- the inner runs (one run each: vmapped and sharded by RunAxis)

    def _protagonist_return(self, rule: Any, task: Task, key: jax.Array) -> jax.Array:
        train_key, eval_key = jax.random.split(key)
        hparams = self.hparams.replace(objective=rule, lifetime=task.lifetime.astype(jnp.float32))
        carry = train_on_level(self.agent, hparams, task.level, task.lifetime, train_key)
        return level_return(self.agent, carry, task.level, eval_key, self.config.eval_episodes)

    def _antagonist_stats(self, task: Task, key: jax.Array) -> tuple[jax.Array, jax.Array]:
        train_key, eval_key, rollout_key = jax.random.split(key, 3)
        carry = train_on_level(self.antagonist, self.antagonist_hparams, task.level, task.lifetime, train_key)
        carry, batch = self.antagonist.collect(carry.replace(key=rollout_key), self.antagonist_hparams)
        traj = batch.traj
        pvl = rollout_scores("pvl", batch.advantages, traj.value, traj.done, traj.episode_return).mean()
        return level_return(self.antagonist, carry, task.level, eval_key, self.config.eval_episodes), pvl

    def _over_runs(self, axis: RunAxis, fn: Any, *args: Any) -> Any:
        out, compile_s, _ = axis.run_all(fn, *args)
        self.compile_s += compile_s
        return out

    def protagonist_returns(self, rules: Any, tasks: Task, keys: jax.Array) -> np.ndarray:
        """Final returns (P,) of the P rules; rule i trains on task i mod P/2 with key i mod P/2 (pairs share both)."""
        tile = lambda x: jnp.concatenate([x, x])
        return self._over_runs(self.protagonist_axis, self._protagonists, rules, jax.tree.map(tile, tasks), tile(keys))

    def antagonist_stats(self, tasks: Task, keys: jax.Array) -> tuple[np.ndarray, np.ndarray]:
        """The antagonist's final return and last-rollout PVL (P/2,) on each task."""
        return self._over_runs(self.antagonist_axis, self._antagonists, tasks, keys)

    def heldout_returns(self, rule: Any, key: jax.Array) -> dict[str, float]:
        """The mean final return on each of LPG's five levels (never meta-trained on unless `level` names one) of
        agents trained by `rule` for the full lifetime: P agents, agent i on level i mod 5, so it is the
        generation's own compiled program (a population under 5 covers the first P levels). The same key every
        time, so the curve moves with the rule alone."""
        c = self.config
        names = gridworld.LPG_LEVELS
        which = np.arange(c.population) % len(names)
        levels = jax.tree.map(lambda x: x[which], gridworld.lpg_levels(names))
        tasks = Task(levels, jnp.full(c.population, c.lifetime, jnp.int32), *(jnp.full(c.population, jnp.nan, jnp.float32),) * 2)
        rules = jax.tree.map(lambda x: jnp.broadcast_to(x, (c.population, *x.shape)), rule)
        returns = self._over_runs(self.protagonist_axis, self._protagonists, rules, tasks, jax.random.split(key, c.population))
        return {name: float(returns[which == i].mean()) for i, name in enumerate(names[:c.population])}

    # -- one generation

    def init_state(self, key: jax.Array) -> dict[str, Any]:
        es_key, curriculum_key = jax.random.split(key)
        return {"es": self.es.init(es_key, self.hparams.objective), "curriculum": self.curriculum.init(curriculum_key)}

    def generation(self, state: dict[str, Any], key: jax.Array, g: int) -> tuple[dict[str, Any], dict[str, Any]]:
        c = self.config
        ask_key, propose_key, agent_keys, antagonist_keys, tell_key = generation_keys(key, g, c.num_pairs)
        heldout = None
        if c.heldout_every and g % c.heldout_every == 0:  # the rule this generation starts from
            t0, compiled = time.perf_counter(), self.compile_s
            heldout = self.heldout_returns(self.mean_rule(state), jax.random.fold_in(key, HELDOUT_STREAM))
            heldout_s = time.perf_counter() - t0 - (self.compile_s - compiled)
        rules, es_state = self._ask(ask_key, state["es"])
        proposal = self._propose(state["curriculum"], propose_key)
        tasks = proposal.levels
        kind = int(proposal.kind)
        if c.curriculum != "uniform" and kind == NEW:  # the antagonist's numbers are computed once per level
            ant_return, ant_pvl = self.antagonist_stats(tasks, antagonist_keys)
            tasks = tasks.replace(antagonist_return=jnp.asarray(ant_return, jnp.float32), antagonist_pvl=jnp.asarray(ant_pvl, jnp.float32))
        returns = self.protagonist_returns(rules, tasks, agent_keys)
        finite = np.isfinite(returns)
        safe = np.where(finite, returns, np.min(returns[finite], initial=0.0) - 1.0)  # a diverged agent loses its pair
        fitness = win_lose(safe) if c.shaping == "win_lose" else safe
        es_state, _ = self._tell(tell_key, rules, jnp.asarray(fitness, jnp.float32), es_state)

        regret = algorithmic_regret(np.asarray(tasks.antagonist_return), safe)
        scores = regret if c.curriculum == "groove" else np.asarray(tasks.antagonist_pvl) if c.curriculum == "plr" else np.zeros(c.num_pairs)
        curriculum_state = self._observe(state["curriculum"], proposal.replace(levels=tasks), jnp.asarray(scores, jnp.float32))
        entry = {
            "generation": g,
            "kind": "replay" if kind == REPLAY else "new",
            "return_mean": float(returns[finite].mean()) if finite.any() else None,
            "return_best": float(returns[finite].max()) if finite.any() else None,
            "returns": returns.tolist(),
            "lifetimes": np.asarray(tasks.lifetime).tolist(),
            "regret": None if c.curriculum == "uniform" else regret.tolist(),
            "antagonist_returns": None if c.curriculum == "uniform" else np.asarray(tasks.antagonist_return).tolist(),
            "buffer_size": int(size(curriculum_state.buffer)),
            "nonfinite": int((~finite).sum()),
            "heldout": heldout,
            "heldout_s": heldout_s if heldout is not None else 0.0,
        }
        return {"es": es_state, "curriculum": curriculum_state}, entry

    def mean_rule(self, state: dict[str, Any]) -> Any:
        return self.es.mean(state["es"])

    # -- the host loop: checkpoints, resume, signals

    def run(self, out: str | Path, *, resume: bool = False, progress: bool = True, generations: int | None = None) -> dict[str, Any]:
        """Generations [start, generations) with checkpoints in out/checkpoints; writes the results (see
        `write_results`) and returns the summary."""
        c = self.config
        out = Path(out)
        init_key, loop_key = jax.random.split(jax.random.key(c.seed))

        def show(entry: dict[str, Any]) -> None:
            if progress:
                print(f"generation {entry['generation']}: {entry['kind']} levels, return mean {entry['return_mean']:.3f} best {entry['return_best']:.3f}"
                      + (f", regret mean {np.mean(entry['regret']):.3f}" if entry["regret"] is not None else "")
                      + f", {entry['time_s']:.1f} s", file=sys.stderr)
                if entry["heldout"] is not None:
                    print("  held-out LPG levels, ES mean: " + ", ".join(f"{k} {v:.3f}" for k, v in entry["heldout"].items()), file=sys.stderr)

        out.mkdir(parents=True, exist_ok=True)
        done = run_generations(out / "checkpoints", lambda: self._init_state(init_key), jax.eval_shape(self.init_state, init_key),
                               lambda state, g: self.generation(state, loop_key, g), generations or c.generations,
                               checkpoint_every=c.checkpoint_every, resume=resume, compile_seconds=lambda: self.compile_s, on_entry=show)
        return self.write_results(out, done.state, done.history, done.status)

    def write_results(self, out: Path, state: dict[str, Any], history: list[dict[str, Any]], status: str) -> dict[str, Any]:
        """rule.npz (the ES mean: `jaxrl train lpg --rule out/rule.npz`), meta_summary.json, and the figures."""
        from jaxrl.meta import plots

        c = self.config
        lpg.save_rule(str(out / "rule.npz"), self.agent.rule, self.mean_rule(state))
        files = {"rule": "rule.npz", "returns": "returns.png"}
        plots.plot_lpg_returns(out / files["returns"], history, f"LPG meta-training, {c.curriculum} curriculum")
        if any(h.get("heldout") for h in history):
            files["heldout"] = "heldout.png"
            plots.plot_heldout(out / files["heldout"], history, f"LPG meta-training, {c.curriculum} curriculum: the ES mean on held-out levels")
        if c.curriculum != "uniform":
            files.update(regret="regret.png", buffer="buffer.png")
            plots.plot_regret(out / files["regret"], history)
            plots.plot_level_buffer(out / files["buffer"], state["curriculum"].buffer, c.curriculum)
        seconds = sum(h["time_s"] for h in history)
        agents = c.population * (len(history) + sum(h.get("heldout") is not None for h in history))
        steps = agents * self.agent.num_updates * self.agent.steps_per_update
        summary = {
            "kind": "lpg",
            "status": status,
            "config": dataclasses.asdict(c),
            "generations_done": len(history),
            "agent": dataclasses.asdict(self.agent.config),
            "files": files,
            "timing": {"compile_s": self.compile_s, "run_s": seconds, "seconds_per_generation": seconds / max(len(history), 1),
                       "agent_env_steps_per_s": steps / seconds if seconds else None},
            "history": history,
        }
        results.atomic_write_json(out / "meta_summary.json", summary)
        return summary
