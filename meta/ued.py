"""Unsupervised environment design (UED) on the agent protocol: a PPO student trained on levels that a curriculum
(DR, PLR or ACCEL, jaxrl.meta.levels.curriculum) chooses, evaluated on held-out mazes.

    agent = make_agent(UEDConfig(method="plr"))
    carry, metrics = jax.jit(agent.train)(key, agent.default_hparams())

One update (`UED.update`), read top to bottom:
  1. the curriculum proposes a batch of levels (new, replayed or edited), one per environment;
  2. the student starts a fresh episode on each (`PPO.reset_to`) and collects its rollout (`PPO.collect`);
  3. each level is scored from that rollout (`scores.rollout_scores`: MaxMC, positive value loss, learnability);
  4. the student learns from the rollout if the curriculum says so (robust PLR: replayed levels only);
  5. the scores go into the level buffer.

Because it is an agent like PPO, `jaxrl ued` runs it through the runner: seeds vmapped, sharded, chunked, with
checkpoints and resume. `snapshot` is what the runner records after every chunk: the held-out evaluation (per maze
return and solve rate) and the buffer (scores, staleness, its highest-scoring levels).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from jaxrl.agents.base import Agent
from jaxrl.agents.ppo import HPARAM_RANGES, PPO, PPOCarry, PPOConfig, PPOHparams, episode_metrics
from jaxrl.agents.ppo import make_agent as make_student
from jaxrl.envs import maze
from jaxrl.envs.errors import InvalidChoiceError, invalid_choice
from jaxrl.meta.levels.buffer import PLRConfig, size
from jaxrl.meta.levels.curriculum import EDIT, METHODS, REPLAY, Curriculum, CurriculumState
from jaxrl.meta.levels.edits import edit_maze
from jaxrl.meta.levels.scores import SCORE_FUNCTIONS, rollout_scores

DEFAULT_WALLS = {"dr": 25, "plr": 25, "accel": 0}  # ACCEL grows its levels from empty rooms


@dataclasses.dataclass(frozen=True)
class UEDConfig(PPOConfig):
    """Static settings: the student's (PPOConfig's, with the JaxUED maze student's values as defaults) and the
    curriculum's. `eval_episodes` is the number of episodes per held-out maze."""

    env_id: str = "Maze-v0"
    num_envs: int = 32
    num_steps: int = 256
    total_timesteps: int = 32 * 256 * 250
    update_epochs: int = 5
    num_minibatches: int = 1
    actor_hidden: tuple[int, ...] = (32,)
    critic_hidden: tuple[int, ...] = (32,)
    activation: str = "relu"
    recurrent: bool = True
    gru_size: int = 256
    torso: str = "maze_conv"
    anneal_lr: bool = False
    eval_episodes: int = 10

    method: str = "plr"  # dr | plr | accel
    score: str = "maxmc"  # maxmc | pvl | learnability
    robust: bool = True  # PLR / ACCEL: gradient steps on replayed levels only
    capacity: int = 4000
    replay_prob: float = 0.8
    prioritization: str = "rank"
    temperature: float = 0.3
    top_k: int = 1
    staleness_coef: float = 0.3
    min_fill: float = 0.5
    num_walls: int = -1  # walls of a new random level; -1: 25 for dr and plr, 0 for accel
    max_edits: int = 20  # ACCEL: edits per mutated level, uniform in 1..max_edits
    eval_mazes: tuple[str, ...] = maze.HELD_OUT_MAZES
    top_levels: int = 16  # highest-scoring buffer levels kept in each snapshot (for the picture grid)

    def validate(self) -> None:
        super().validate()
        if self.method not in METHODS:
            raise invalid_choice("UED method", self.method, METHODS)
        if self.score not in SCORE_FUNCTIONS:
            raise invalid_choice("score function", self.score, SCORE_FUNCTIONS)
        if self.env_id != "Maze-v0":
            raise invalid_choice("UED environment", self.env_id, ["Maze-v0"])
        for name in self.eval_mazes:
            if name not in maze.HELD_OUT_MAZES:
                raise invalid_choice("held-out maze", name, maze.HELD_OUT_MAZES)
        if not self.eval_mazes:
            raise InvalidChoiceError(f"eval_mazes is empty; choices: {', '.join(maze.HELD_OUT_MAZES)}")
        if not 0 <= self.walls <= maze.NUM_CELLS - 2:
            raise InvalidChoiceError(f"invalid num_walls {self.num_walls!r}; choices: -1 (the method's default) or 0..{maze.NUM_CELLS - 2}")
        if self.top_levels < 1:
            raise InvalidChoiceError(f"invalid top_levels {self.top_levels!r}; choices: an integer >= 1")

    @property
    def walls(self) -> int:
        return DEFAULT_WALLS[self.method] if self.num_walls < 0 else self.num_walls

    def plr(self) -> PLRConfig:
        return PLRConfig(self.capacity, self.replay_prob, self.prioritization, self.temperature, self.top_k, self.staleness_coef, self.min_fill)

    def student(self) -> PPOConfig:
        return PPOConfig(**{f.name: getattr(self, f.name) for f in dataclasses.fields(PPOConfig)})


@struct.dataclass
class UEDHparams(PPOHparams):
    """The student's traced hyperparameters, with the JaxUED maze student's values as defaults."""

    lr: jax.Array = 1e-4
    gamma: jax.Array = 0.995
    gae_lambda: jax.Array = 0.98
    ent_coef: jax.Array = 1e-3


@struct.dataclass
class UEDCarry:
    student: PPOCarry
    curriculum: CurriculumState
    key: jax.Array

    @property
    def params(self) -> Any:  # what the runner checks for NaNs and what `act` takes
        return self.student.params


@dataclasses.dataclass(frozen=True, eq=False)
class UED(Agent):
    config: UEDConfig
    student: PPO
    curriculum: Curriculum
    eval_levels: maze.MazeLevel  # held-out mazes, each repeated eval_episodes times: leading axis L * E
    hparam_ranges = HPARAM_RANGES

    @property
    def num_updates(self) -> int:
        return self.student.num_updates

    @property
    def steps_per_update(self) -> int:
        return self.student.steps_per_update

    def default_hparams(self) -> UEDHparams:
        return jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), UEDHparams(objective=self.student.objective_params))

    def init(self, key: jax.Array, hparams: UEDHparams) -> UEDCarry:
        student_key, curriculum_key, key = jax.random.split(key, 3)
        return UEDCarry(self.student.init(student_key, hparams), self.curriculum.init(curriculum_key), key)

    def update(self, carry: UEDCarry, hparams: UEDHparams) -> tuple[UEDCarry, dict]:
        key, propose_key, reset_key = jax.random.split(carry.key, 3)
        proposal = self.curriculum.propose(carry.curriculum, propose_key)
        student = self.student.reset_to(carry.student, with_levels(carry.student.env_params, proposal.levels), reset_key, hparams)
        student, batch = self.student.collect(student, hparams)
        traj = batch.traj
        scores = rollout_scores(self.config.score, batch.advantages, traj.value, traj.done, traj.episode_return)
        learn = self.curriculum.trains_on(proposal)
        student, metrics = jax.lax.cond(learn, self.student.learn, self._skip_learning, student, batch, hparams)
        curriculum = self.curriculum.observe(carry.curriculum, proposal, scores)

        buffer = curriculum.buffer
        metrics.update(
            learned=learn,
            replay=proposal.kind == REPLAY,
            edit=proposal.kind == EDIT,
            level_score=scores.mean(),
            level_walls=proposal.levels.wall_map.sum((1, 2)).mean(dtype=jnp.float32),
            train_solved=(traj.done & (traj.episode_return > 0)).sum() / jnp.maximum(traj.done.sum(), 1),
            buffer_size=size(buffer),
            buffer_score=jnp.sum(jnp.where(buffer.filled, buffer.scores, 0.0)) / jnp.maximum(size(buffer), 1),
        )
        return UEDCarry(student, curriculum, key), metrics

    def _skip_learning(self, student: PPOCarry, batch: Any, hparams: UEDHparams) -> tuple[PPOCarry, dict]:
        """What `learn` returns when the update takes no gradient step: the same carry (one update further) and
        zeros for the learning statistics; the episode statistics still count."""
        _, shapes = jax.eval_shape(self.student.learn, student, batch, hparams)
        zeros = {k: jnp.zeros(v.shape, v.dtype) for k, v in shapes.items()}
        return student.replace(update=student.update + 1), {**zeros, **episode_metrics(batch.traj)}

    def act(self, params: Any, obs: jax.Array, key: jax.Array) -> jax.Array:
        return self.student.act(params, obs, key)

    def policy_state(self, carry: UEDCarry) -> dict[str, Any]:
        return self.student.policy_state(carry.student)

    def act_with(self, state: dict[str, Any], obs: jax.Array, key: jax.Array, deterministic: bool = False) -> jax.Array:
        return self.student.act_with(state, obs, key, deterministic)

    def initial_hidden(self, batch: int) -> jax.Array:
        return self.student.initial_hidden(batch)

    def policy_step(self, state: dict[str, Any], hidden: jax.Array, obs: jax.Array, first: jax.Array, key: jax.Array,
                    deterministic: bool = False) -> tuple[jax.Array, jax.Array]:
        """The student's `PPO.policy_step`: one step that keeps the GRU's memory (what `jaxrl render` plays)."""
        return self.student.policy_step(state, hidden, obs, first, key, deterministic)

    def held_out_returns(self, carry: UEDCarry, key: jax.Array) -> jax.Array:
        """(L, E) returns of E fresh episodes on each of the L held-out mazes (`eval_mazes`)."""
        returns = self.episode_returns(self.policy_state(carry), key)
        return returns.reshape(len(self.config.eval_mazes), self.config.eval_episodes)

    def episode_returns(self, state: dict[str, Any], key: jax.Array) -> jax.Array:
        """(L * E,) returns of a kept policy state on the held-out mazes, E episodes each, maze by maze."""
        levels = with_levels(batch_default(self.student, self.eval_levels.agent_dir.shape[0]), self.eval_levels)
        return self.student.episode_returns(state, key, levels)

    def evaluate(self, carry: UEDCarry, key: jax.Array) -> jax.Array:
        """Mean return over the held-out mazes (a maze is solved when its return is > 0)."""
        return self.held_out_returns(carry, key).mean()

    def snapshot(self, carry: UEDCarry, key: jax.Array) -> dict[str, jax.Array]:
        """What the runner records after each chunk: held-out return and solve rate per maze (L,), and for PLR /
        ACCEL the buffer's scores, staleness and fill (capacity,) and its `top_levels` highest-scoring levels."""
        returns = self.held_out_returns(carry, jax.random.fold_in(key, carry.student.update))
        out = {"maze_return": returns.mean(1), "maze_solved": (returns > 0).mean(1)}
        if self.config.method == "dr":
            return out
        buffer = carry.curriculum.buffer
        _, top = jax.lax.top_k(jnp.where(buffer.filled, buffer.scores, -jnp.inf), self.config.top_levels)
        top_levels = jax.tree.map(lambda x: x[top], buffer.levels)
        return {
            **out,
            "buffer_score": buffer.scores,
            "buffer_staleness": buffer.step - buffer.last_sampled,
            "buffer_filled": buffer.filled,
            "buffer_walls": buffer.levels.wall_map.sum((1, 2)),
            "top_score": buffer.scores[top],
            "top_filled": buffer.filled[top],
            "top_wall_map": top_levels.wall_map,
            "top_agent_pos": top_levels.agent_pos,
            "top_agent_dir": top_levels.agent_dir,
            "top_goal_pos": top_levels.goal_pos,
        }


def with_levels(env_params: maze.MazeParams, levels: maze.MazeLevel) -> maze.MazeParams:
    """Batched maze parameters (leading axis B) playing `levels` (leading axis B)."""
    return env_params.replace(level=levels)


def batch_default(student: PPO, n: int) -> maze.MazeParams:
    return jax.tree.map(lambda x: jnp.broadcast_to(jnp.asarray(x), (n, *jnp.shape(x))), student.default_env_params)


def make_agent(config: UEDConfig) -> UED:
    """Validate `config` and build the UED agent: the student, the curriculum and the held-out levels."""
    config.validate()
    student = make_student(config.student())
    curriculum = Curriculum(
        method=config.method,
        new_level=functools.partial(maze.random_level, num_walls=config.walls),
        batch_size=config.num_envs,
        plr=config.plr(),
        edit_level=edit_maze,
        max_edits=config.max_edits,
        robust=config.robust,
    )
    held_out = maze.held_out_levels(config.eval_mazes)
    eval_levels = jax.tree.map(lambda x: jnp.repeat(x, config.eval_episodes, axis=0), held_out)
    return UED(config, student, curriculum, eval_levels)


# The names the CLI and the runner look up on an algorithm module.
Config, Hparams = UEDConfig, UEDHparams
