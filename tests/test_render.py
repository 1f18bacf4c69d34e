"""`jaxrl render`: one episode of a kept policy as a GIF (Brax also as HTML), the median run by default."""

from __future__ import annotations

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from jaxrl import frames, render  # render first: it picks MuJoCo's headless OpenGL platform before Brax loads MuJoCo
from jaxrl.agents.ppo import PPOConfig, make_agent
from jaxrl.cli import main
from jaxrl.envs.errors import InvalidChoiceError
from jaxrl.trained import Trained, load


@pytest.fixture(scope="module")
def cartpole_dir(tmp_path_factory):
    """A finished CartPole run of 3 seeds (4 updates each), observations normalised (the kept statistics are used)."""
    out = tmp_path_factory.mktemp("render") / "cp"
    assert main(["train", "ppo", "--env", "CartPole-v1", "--steps", "2048", "--seeds", "3", "--set", "normalize_obs=true",
                 "--out", str(out), "--quiet", "--devices", "1"]) == 0
    return out


def untrained(env_id: str, **settings) -> Trained:
    """One run of a freshly initialised PPO policy on `env_id`, as `jaxrl.load` returns a trained one."""
    agent = make_agent(PPOConfig(env_id=env_id, **settings))
    policies = jax.tree.map(lambda x: x[None], {"params": jax.jit(agent.policy.init)(jax.random.key(0)), "obs_stats": None})
    return Trained(agent, policies, {"runs": [{"final_return": 0.0}]})


def gif_frames(path) -> int:
    with Image.open(path) as im:
        return im.n_frames


@pytest.mark.parametrize("finals, expected", [
    ([5.0, 1.0, 3.0], 2),                  # odd count: the middle value
    ([4.0, 1.0, 3.0, 2.0], 3),             # even count: the lower of the two middle values (2.0)
    ([2.0, float("nan"), 1.0, 9.0], 0),    # a diverged run does not count
    ([7.0, 7.0, 7.0], 1),                  # ties: the middle index
])
def test_median_run_is_the_run_with_the_median_final_return(finals, expected):
    assert render.median_run({"runs": [{"final_return": f} for f in finals]}) == expected


def test_median_run_refuses_a_folder_without_finite_returns():
    with pytest.raises(InvalidChoiceError):
        render.median_run({"runs": [{"final_return": float("nan")}]})


def test_cartpole_gif_has_one_frame_per_step_of_the_median_run(cartpole_dir, capsys):
    summary = json.loads((cartpole_dir / "summary.json").read_text())
    finals = [r["final_return"] for r in summary["runs"]]
    median = int(np.argsort(finals)[1])  # three runs: the middle one
    out = cartpole_dir / "episode.gif"
    assert main(["render", str(cartpole_dir), "--out", str(out), "--seed", "1"]) == 0
    printed = capsys.readouterr().out
    assert f"run {median} (median final return of 3 runs)" in printed

    episode = render.rollout_frames(load(cartpole_dir), median, jax.random.key(1))
    # Independent counts of the episode's length: CartPole pays 1 per step, and the last state (only the last) is
    # outside the limits (or the time limit is reached).
    assert episode.finished and episode.episode_return == episode.length
    p = episode.env_params
    outside = (np.abs(episode.states.x) > p.x_threshold) | (np.abs(episode.states.theta) > p.theta_threshold_radians)
    ended = outside | (episode.states.time >= p.max_steps_in_episode)
    assert ended[-1] and not ended[:-1].any()
    assert gif_frames(out) == episode.length + 1
    assert f"over {episode.length} steps" in printed and f"{episode.length + 1} frames" in printed

    pictures = render.episode_frames(episode)  # without captions: the pictures alone must move
    assert len(pictures) == episode.length + 1 and pictures[0].shape == (240, 360, 3) and pictures[0].dtype == np.uint8
    changed = [not np.array_equal(a, b) for a, b in zip(pictures, pictures[1:])]
    assert np.mean(changed) > 0.9


def test_max_steps_cuts_the_episode_and_run_chooses_the_run(cartpole_dir, capsys):
    out = cartpole_dir / "short.gif"
    assert main(["render", str(cartpole_dir), "--out", str(out), "--run", "2", "--max-steps", "5", "--fps", "10", "--deterministic"]) == 0
    printed = capsys.readouterr().out
    assert "run 2," in printed and "cut at --max-steps" in printed
    assert gif_frames(out) == 6
    with Image.open(out) as im:
        assert im.info["duration"] == 100


@pytest.mark.parametrize("args, message", [
    (["--out", "x.mp4"], "must end in .gif or .html"),
    (["--out", "x.html"], "Brax's viewer"),
    (["--out", "x.gif", "--run", "3"], "invalid run 3"),
    (["--out", "x.gif", "--env", "Catch-bsuite"], "no renderer for 'Catch-bsuite'"),
    (["--out", "x.gif", "--env", "Acrobot-v1"], "other spaces"),
    (["--out", "x.gif", "--env", "CartPol-v1"], "unknown environment"),
    (["--out", "x.gif", "--level", "SixteenRooms"], "cannot make 'CartPole-v1'"),
])
def test_bad_input_is_one_line_and_exit_2(cartpole_dir, capsys, args, message):
    assert main(["render", str(cartpole_dir), *args]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1 and message in captured.err
    assert not list(cartpole_dir.glob("x.*"))


def test_a_folder_without_policies_is_one_line_and_exit_2(tmp_path, capsys):
    assert main(["render", str(tmp_path), "--out", str(tmp_path / "x.gif")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds no kept policies" in err


@pytest.mark.parametrize("env_id", ["Acrobot-v1", "MountainCar-v0", "MountainCarContinuous-v0", "Pendulum-v1",
                                    "Breakout-MinAtar", "GridWorld-v0", "Maze-v0"])
def test_every_family_draws_one_moving_picture_per_state(env_id):
    kwargs = {"env_kwargs": {"level": "SixteenRooms"}} if env_id == "Maze-v0" else {}
    episode = render.rollout_frames(untrained(env_id), 0, jax.random.key(0), max_steps=12, **kwargs)
    pictures = render.episode_frames(episode)
    assert len(pictures) == episode.length + 1 == len(episode.obs)
    assert all(p.dtype == np.uint8 and p.ndim == 3 and p.shape == pictures[0].shape for p in pictures)
    if episode.length >= 3:  # a random MinAtar policy may lose at once; otherwise something moves
        assert any(not np.array_equal(a, b) for a, b in zip(pictures, pictures[1:]))
    if env_id.endswith("MinAtar"):
        # A cell is black exactly where no observation channel is set (tile 24: sample the cell centres).
        for picture, obs in zip(pictures, episode.obs):
            lit = picture[12::24, 12::24].any(-1)
            assert np.array_equal(lit, np.asarray(obs).any(-1))


def test_a_recurrent_policy_keeps_its_memory_through_the_episode():
    """A GRU policy: the rendered episode's actions are those of the network applied to the whole observation
    sequence at once (as in training), not those of a policy restarted at every step."""
    trained = untrained("CartPole-v1", recurrent=True, gru_size=16)
    # Larger weights than at initialisation, so the memory changes the most likely action (it does not at init).
    trained = dataclasses.replace(trained, policies=jax.tree.map(lambda x: 3 * x, trained.policies))
    episode = render.rollout_frames(trained, 0, jax.random.key(0), max_steps=30, deterministic=True)
    agent, params = trained.agent, trained.policy_state(0)["params"]
    obs = jnp.asarray(episode.obs[:-1])[:, None]  # (T, 1, obs_dim): the observations the actions answered
    starts = jnp.zeros((len(obs), 1), bool).at[0].set(True)
    modes = jax.jit(lambda params, obs, starts: agent.policy.apply(params, agent.initial_hidden(1), obs, starts)[1].mode())
    assert np.array_equal(episode.actions, np.asarray(modes(params, obs, starts))[:, 0])
    memoryless = jax.jit(lambda params, obs, key: agent.act(params, obs, key, deterministic=True))(params, obs[:, 0], jax.random.key(0))
    assert (episode.actions != np.asarray(memoryless)).sum() >= 3  # the check above tells the two apart


def test_brax_writes_its_html_viewer_and_a_gif_where_opengl_works(tmp_path):
    trained = untrained("brax/inverted_pendulum")
    episode = render.rollout_frames(trained, 0, jax.random.key(0), max_steps=4)  # one compile for both files
    assert episode.length == 4 and len(episode.states.time) == 5
    render.write_episode(episode, tmp_path / "ep.html", 0, 25)
    html = (tmp_path / "ep.html").read_text()
    assert "<html" in html and "brax" in html.lower()
    with pytest.raises(InvalidChoiceError, match="Brax's viewer"):  # .html is Brax's alone
        render.render(untrained("CartPole-v1"), tmp_path / "cp.html")
    try:
        frames.check_brax_images(episode.env)
    except InvalidChoiceError as err:
        assert ".html" in str(err)
        pytest.skip(f"no OpenGL context for Brax images here: {err}")
    render.write_episode(episode, tmp_path / "ep.gif", 0, 25)
    assert gif_frames(tmp_path / "ep.gif") == 5
    pictures = render.episode_frames(episode)
    assert pictures[0].shape == frames.BRAX_SIZE + (3,) and not np.array_equal(pictures[0], pictures[-1])
