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
