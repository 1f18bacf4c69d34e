"""Registry, user registration, and the `jaxrl` console script."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import gymnax
import pytest

from jaxrl import envs
from jaxrl.cli import main
from jaxrl.envs.brax_adapter import BRAX_ENV_NAMES


def test_every_gymnax_and_brax_id_is_registered():
    ids = set(envs.registered_ids())
    assert set(gymnax.registered_envs) <= ids
    assert {f"brax/{n}" for n in BRAX_ENV_NAMES} <= ids


def test_unknown_id_names_the_closest():
    with pytest.raises(envs.InvalidChoiceError, match=r"unknown environment 'CartPol-v1'; closest: CartPole-v1"):
        envs.make("CartPol-v1")
    with pytest.raises(envs.InvalidChoiceError, match=r"brax/hopper"):
        envs.make("brax/hoper")


def test_register_in_one_call():
    gym_cartpole, _ = envs.make("CartPole-v1")
    envs.register("MyCartPole-v0", lambda **kw: type(gym_cartpole)(**kw), overwrite=True)
    env, params = envs.make("MyCartPole-v0")
    assert params.max_steps_in_episode == 500
    assert envs.family_of("MyCartPole-v0") == "user"
    with pytest.raises(envs.InvalidChoiceError, match="already registered"):
        envs.register("MyCartPole-v0", lambda **kw: env)


def test_cli_envs_lists_every_id(capsys):
    assert main(["envs"]) == 0
    listed = {line.split()[0] for line in capsys.readouterr().out.splitlines()}
    assert set(envs.registered_ids()) <= listed


def test_cli_bad_input_is_one_line_and_exit_2(capsys):
    assert main(["envs", "--family", "atari"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "'atari'" in err and "brax" in err
    assert main(["demo", "--envs", "CartPole-v2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "CartPole-v1" in err
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--num-envs", "zero"])
    assert exit_info.value.code == 2


def test_console_script_is_installed():
    script = Path(sys.executable).parent / "jaxrl"
    assert script.exists(), f"no console script at {script}"
    out = subprocess.run([str(script), "envs", "--family", "brax"], capture_output=True, text=True, check=True).stdout
    assert "brax/hopper" in out
    bad = subprocess.run([str(script), "envs", "--family", "atari"], capture_output=True, text=True)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1


def test_plot_keeps_every_seed_splits_environments_and_leaves_run_figures_alone(tmp_path, capsys, monkeypatch):
    import json

    import numpy as np

    from jaxrl.cli import plot_panels_of

    def fake_run(name, env_id, seeds, updates):
        d = tmp_path / name
        d.mkdir()
        summary = {"algorithm": "ppo", "config": {"env_id": env_id}, "grid": {"labels": ["default"]}}
        (d / "summary.json").write_text(json.dumps(summary))
        returns = np.arange(seeds * updates, dtype=float).reshape(1, seeds, updates)
        np.savez(d / "curves.npz", episode_return=returns, episode_return_valid=np.ones_like(returns, bool),
                 env_steps=(np.arange(updates) + 1) * 100)
        (d / "curves.png").write_bytes(b"the run's own figure")
        return str(d)

    a, b, c = fake_run("a", "CartPole-v1", 4, 10), fake_run("b", "CartPole-v1", 2, 6), fake_run("c", "Acrobot-v1", 3, 10)
    panels = plot_panels_of([a, b, c])
    assert list(panels) == ["ppo on CartPole-v1", "ppo on Acrobot-v1"]
    (la, sa, ra, _), (lb, sb, rb, _) = panels["ppo on CartPole-v1"]
    assert la == "a: default (n=4)" and ra.shape == (4, 10) and lb == "b: default (n=2)" and rb.shape == (2, 6)
    assert sb[-1] == 600 and sa[-1] == 1000  # each on its own environment steps
    monkeypatch.chdir(tmp_path)
    assert main(["plot", a, b, c]) == 0
    assert (tmp_path / "curves_compare.png").stat().st_size > 1000
    assert (tmp_path / "a" / "curves.png").read_bytes() == b"the run's own figure"


CORRIDOR = '''
"""A user's own environment, outside jaxrl: walk right along a corridor of 6 cells to the goal."""
import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import environment, spaces


@struct.dataclass
class State(environment.EnvState):
    pos: jax.Array


@struct.dataclass
class Params(environment.EnvParams):
    length: int = 6
    max_steps_in_episode: int = 20


class Corridor(environment.Environment):
    @property
    def default_params(self):
        return Params()

    def reset_env(self, key, params):
        state = State(time=0, pos=jnp.int32(0))
        return self.get_obs(state, params), state

    def step_env(self, key, state, action, params):
        pos = jnp.clip(state.pos + 2 * action - 1, 0, params.length - 1)
        state = State(time=state.time + 1, pos=pos)
        at_goal = pos == params.length - 1
        done = at_goal | (state.time >= params.max_steps_in_episode)
        return self.get_obs(state, params), state, at_goal.astype(jnp.float32), done, {}

    def get_obs(self, state, params=None, key=None):
        return jax.nn.one_hot(state.pos, 6)

    def action_space(self, params=None):
        return spaces.Discrete(2)

    def observation_space(self, params):
        return spaces.Box(0.0, 1.0, (6,), jnp.float32)
'''


def test_custom_environment_by_module_path_trains_from_the_cli(tmp_path, monkeypatch, capsys):
    import json

    import jaxrl

    (tmp_path / "my_corridor.py").write_text(CORRIDOR)
    monkeypatch.chdir(tmp_path)  # importable from the current directory, as with `python -m`
    monkeypatch.delitem(sys.modules, "my_corridor", raising=False)
    env_id = "my_corridor:Corridor"
    out = tmp_path / "run"
    code = main(["train", "ppo", "--env", env_id, "--steps", "4096", "--seeds", "2", "--out", str(out), "--quiet", "--devices", "1",
                 "--set", "num_envs=4", "--set", "num_steps=32", "--set", "eval_episodes=4"])
    assert code == 0, capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["env_id"] == env_id and envs.family_of(env_id) == "user"
    # Going right every step reaches the goal: the trained policies score (reward 1 per episode) after 4k steps.
    assert [r["final_return"] for r in summary["runs"]] == [1.0, 1.0]
    assert jaxrl.load(out).agent.config.env_id == env_id

    # The same environment from an installed package's entry point (group jaxrl.envs), by its plain name.
    from importlib.metadata import EntryPoint

    from jaxrl.envs import registry

    plugin = EntryPoint(name="Corridor-v0", value="my_corridor:Corridor", group=registry.ENTRY_POINT_GROUP)
    monkeypatch.setattr(registry, "entry_points", lambda group: [plugin] if group == registry.ENTRY_POINT_GROUP else [])
    assert "Corridor-v0" in envs.registered_ids("plugin")
    env, params = envs.make("Corridor-v0")
    assert type(env).__name__ == "Corridor" and params.length == 6 and envs.family_of("Corridor-v0") == "plugin"

    for bad, words in [("my_corridor:Corridoor", "Corridoor"), ("no_such_module:Env", "no_such_module"), ("my_corridor:", "module.path:ClassOrFactory")]:
        assert main(["train", "ppo", "--env", bad, "--steps", "4096", "--out", str(tmp_path / "bad")]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and words in err, err
