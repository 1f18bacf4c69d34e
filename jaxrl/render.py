"""Watch a trained policy: one episode of a kept policy as an animation (`jaxrl render DIR --out episode.gif`).

    trained = jaxrl.load("results/ppo-CartPole-v1-...")
    run = median_run(trained.summary)                      # the run with the median final return
    episode = rollout_frames(trained, run, jax.random.key(0))
    write_animation(episode_frames(episode), "episode.gif", fps=25)

The episode is played on the bare environment (no wrappers: raw observations, which the kept observation
statistics normalise as in training) without its auto-reset, so the last picture is the state the episode ended
in. A recurrent policy keeps its memory from step to step (`policy_step`), as it did in training. The pictures
come from jaxrl.frames, one drawing per environment family.
"""

from __future__ import annotations

import ctypes.util
import dataclasses
import functools
import io
import os
import sys
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxrl import envs, frames
from jaxrl.envs.errors import InvalidChoiceError

FORMATS = (".gif", ".html")  # .html: Brax's own viewer, Brax only
DEFAULT_LIMIT = 1000  # steps of an environment whose params name no episode limit


def _prefer_headless_gl() -> None:
    """MuJoCo (Brax's images) picks its OpenGL platform when it is imported; with no display its default (GLFW)
    cannot make a context, but EGL renders without one. Choose EGL then, unless the user chose, MuJoCo is already
    imported, or there is no EGL library (MuJoCo's import fails on a platform it cannot load)."""
    if ("MUJOCO_GL" not in os.environ and "mujoco" not in sys.modules and sys.platform == "linux"
            and not os.environ.get("DISPLAY") and ctypes.util.find_library("EGL")):
        os.environ["MUJOCO_GL"] = "egl"


_prefer_headless_gl()


def median_run(summary: dict[str, Any]) -> int:
    """The index of the run whose final return (summary.json's `runs`) is the median of the runs with a finite
    one; the lower of the two middle ones for an even count, ties to the lower index."""
    finals = [(r["final_return"], i) for i, r in enumerate(summary.get("runs", [])) if np.isfinite(r.get("final_return", np.nan))]
    if not finals:
        raise InvalidChoiceError("no run has a finite final return to take the median of; choose one with --run")
    return sorted(finals)[(len(finals) - 1) // 2][1]


@dataclasses.dataclass(frozen=True)
class Episode:
    """One played episode. `states` and `obs` have a leading axis length + 1: the reset, then after each step."""

    env_id: str
    env: Any  # the bare environment
    env_params: Any
    states: Any  # environment states (NumPy leaves)
    obs: np.ndarray  # (length + 1, *obs_shape) raw observations
    actions: np.ndarray  # (length, ...) the actions taken, as the environment got them
    rewards: np.ndarray  # (length,)
    length: int  # steps played
    finished: bool  # the episode ended (terminated or truncated); False: cut at max_steps

    @property
    def episode_return(self) -> float:
        return float(self.rewards.sum())


def episode_limit(env_params: Any) -> int:
    """The most steps an episode of these params can last: `max_steps_in_episode` (gymnax, Brax, the maze), the
    grid world's level's `max_steps`, else DEFAULT_LIMIT."""
    limit = getattr(env_params, "max_steps_in_episode", None)
    if limit is None:
        limit = getattr(getattr(env_params, "level", None), "max_steps", None)
    return DEFAULT_LIMIT if limit is None else int(limit)


def _action_signature(env: Any, params: Any) -> tuple:
    space = env.action_space(params)
    return (int(space.n),) if isinstance(space, envs.Discrete) else tuple(space.shape)


def make_env(trained: Any, env_id: str | None = None, env_kwargs: dict[str, Any] | None = None) -> tuple[str, Any, Any]:
    """(env id, bare environment, params) to play: the run's own (with its env_kwargs), or `env_id` with
    `env_kwargs` (default none), which must have the run's observation size and action space."""
    config = trained.agent.config
    own = (config.env_id, dict(config.env_kwargs))
    env_id = env_id or config.env_id
    kwargs = dict(own[1] if env_id == config.env_id and env_kwargs is None else env_kwargs or {})
    try:
        env, params = envs.make(env_id, **kwargs)
    except TypeError as err:  # a keyword the environment does not take
        raise InvalidChoiceError(f"cannot make {env_id!r} with {kwargs}: {err}") from None
    if (env_id, kwargs) != own:
        run_env, run_params = envs.make(own[0], **own[1])
        mine = (envs.observation_size(env, params), _action_signature(env, params))
        theirs = (envs.observation_size(run_env, run_params), _action_signature(run_env, run_params))
        if mine != theirs:
            raise InvalidChoiceError(f"{env_id!r} has other spaces than {config.env_id!r} (observation size, actions: {mine} vs {theirs})")
    return env_id, env, params


def _play(agent: Any, env: Any, limit: int, deterministic: bool, policy: Any, params: Any, key: jax.Array):
    """`limit` steps of one environment copy from a reset; returns (first obs, first state, per-step obs, states,
    actions, rewards, done flags), the per-step ones with a leading axis `limit`. Steps after the episode's end are
    played too (one fixed-length scan is one compile) and cut off by the caller."""
    reset_key, key = jax.random.split(key)
    obs, state = env.reset(reset_key, params)

    def step(carry, step_key):
        obs, state, hidden, first = carry
        act_key, env_key = jax.random.split(step_key)
        # The policy sees flat observations (the training stack's FlattenObservation), a batch of one.
        hidden, action = agent.policy_step(policy, hidden, obs.reshape(1, -1), first, act_key, deterministic)
        obs, state, reward, terminated, truncated, _ = env.step(env_key, state, action[0], params)
        return (obs, state, hidden, jnp.zeros_like(first)), (obs, state, action[0], reward, terminated | truncated)

    start = (obs, state, agent.initial_hidden(1), jnp.ones((1,), bool))
    _, (obs_seq, states, actions, rewards, dones) = jax.lax.scan(step, start, jax.random.split(key, limit))
    return obs, state, obs_seq, states, actions, rewards, dones


def rollout_frames(trained: Any, run: int, key: jax.Array, env_id: str | None = None, max_steps: int | None = None,
                   deterministic: bool = False, env_kwargs: dict[str, Any] | None = None) -> Episode:
    """One episode of run `run`'s kept policy (`trained` from `jaxrl.load`) on the bare environment (the run's own,
    or `env_id` with the same spaces), up to its end or `max_steps` steps. Keeps every state for the pictures."""
    policy = trained.policy_state(run)  # refuses a run out of range
    return play_episode(trained.agent, policy, *make_env(trained, env_id, env_kwargs), key, max_steps, deterministic)


def play_episode(agent: Any, policy: Any, env_id: str, env: Any, params: Any, key: jax.Array, max_steps: int | None = None,
                 deterministic: bool = False) -> Episode:
    """`rollout_frames` for a policy state `policy` of `agent` (one run's) and an environment already made."""
    limit = episode_limit(params) if max_steps is None else min(episode_limit(params), int(max_steps))
    if limit < 1:
        raise InvalidChoiceError(f"max_steps must be >= 1, got {max_steps!r}")
    # No auto-reset: the state after the last step is the episode's end, not a fresh start.
    bare = envs.NoAutoReset(env) if envs.NoAutoReset.supports(env) else env
    play = jax.jit(functools.partial(_play, agent, bare, limit, deterministic))
    obs0, state0, obs_seq, states, actions, rewards, dones = jax.device_get(play(policy, params, key))
    ends = np.flatnonzero(dones)
    length = int(ends[0]) + 1 if len(ends) else limit
    join = lambda first, rest: np.concatenate([np.asarray(first)[None], np.asarray(rest)[:length]])
    return Episode(env_id, env, params, jax.tree.map(join, state0, states), join(obs0, obs_seq), np.asarray(actions[:length]),
                   np.asarray(rewards[:length]), length, bool(len(ends)))


def episode_frames(episode: Episode) -> list[np.ndarray]:
    """The episode's pictures, (H, W, 3) uint8 each, length + 1 of them."""
    draw, _ = frames.renderer_for(episode.env_id)
    return draw(episode.env, episode.env_params, episode.states, episode.obs)


def caption(picture: np.ndarray, text: str, height: int = 16) -> np.ndarray:
    """`picture` (H, W, 3) with a white bar of `height` pixels below it holding `text`: (H + height, W, 3)."""
    from PIL import Image, ImageDraw

    bar = Image.new("RGB", (picture.shape[1], height), (255, 255, 255))
    ImageDraw.Draw(bar).text((4, 2), text, fill=(0, 0, 0))
    return np.concatenate([picture, np.asarray(bar)], axis=0)


def write_animation(pictures: list[np.ndarray], path: str | Path, fps: int) -> None:
    """A looping GIF of `pictures` (each (H, W, 3) uint8, one size), `fps` per second, written atomically. GIF
    delays are whole 1/100 s, and Pillow merges a picture identical to the one before it into one longer frame
    (what `captioned_frames`' step counter prevents)."""
    from PIL import Image

    from jaxrl.results import atomic_write_bytes

    if Path(path).suffix.lower() != ".gif":
        raise InvalidChoiceError(f"write_animation writes .gif files, not {str(path)!r}")
    images = [Image.fromarray(np.asarray(p, np.uint8)) for p in pictures]
    buffer = io.BytesIO()
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0)
    atomic_write_bytes(path, buffer.getvalue())


def captioned_frames(episode: Episode, run: int) -> list[np.ndarray]:
    """`episode_frames` with a caption under each: run, step and return so far (every picture differs by it)."""
    so_far = np.concatenate([[0.0], np.cumsum(episode.rewards)])
    return [caption(p, f"run {run}  step {t}/{episode.length}  return {so_far[t]:.2f}")
            for t, p in enumerate(episode_frames(episode))]


def render(trained: Any, out: str | Path, run: int | None = None, seed: int = 0, env_id: str | None = None,
           env_kwargs: dict[str, Any] | None = None, max_steps: int | None = None, fps: int | None = None,
           deterministic: bool = False) -> dict[str, Any]:
    """Play one episode of run `run` (default `median_run`) and write it to `out`: a GIF, or for Brax also Brax's
    HTML viewer (.html). Everything is checked before the episode is played. Returns what was written."""
    out = Path(out)
    if out.suffix.lower() not in FORMATS:
        raise InvalidChoiceError(f"cannot write {str(out)!r}; the output must end in {' or '.join(FORMATS)} (.html: Brax only)")
    run = median_run(trained.summary) if run is None else run
    policy = trained.policy_state(run)  # refuses a run out of range
    _, default_fps = frames.renderer_for(env_id or trained.agent.config.env_id)  # before the spaces are compared
    env_id, env, params = make_env(trained, env_id, env_kwargs)
    brax = envs.family_of(env_id) == "brax"
    if out.suffix.lower() == ".html" and not brax:
        raise InvalidChoiceError(f".html is Brax's viewer; write {env_id!r} as .gif")
    if fps is not None and fps < 1:
        raise InvalidChoiceError(f"fps must be >= 1, got {fps!r}")
    if brax and out.suffix.lower() == ".gif":
        frames.check_brax_images(env)

    episode = play_episode(trained.agent, policy, env_id, env, params, jax.random.key(seed), max_steps, deterministic)
    write_episode(episode, out, run, fps or default_fps)
    return {"path": str(out), "run": run, "env_id": env_id, "episode_return": episode.episode_return,
            "length": episode.length, "finished": episode.finished, "frames": episode.length + 1}


def write_episode(episode: Episode, out: str | Path, run: int, fps: int) -> None:
    """`episode` (of run `run`) as a captioned GIF, or as Brax's HTML viewer when `out` ends in .html."""
    if Path(out).suffix.lower() == ".html":
        from jaxrl.results import atomic_write_bytes

        atomic_write_bytes(out, frames.brax_html(episode.env, episode.states).encode())
    else:
        write_animation(captioned_frames(episode, run), out, fps)
