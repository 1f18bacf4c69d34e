"""Settings: the shipped CartPole config equals the defaults; bad settings give one clear error."""

from __future__ import annotations

from pathlib import Path

import jax.numpy as jnp
import pytest

from jaxrl.agents.ppo import PPOConfig, PPOHparams
from jaxrl.config import apply_overrides, build, load_yaml, parse_assignment, read_hparam
from jaxrl.envs import InvalidChoiceError

CONFIGS = Path(__file__).resolve().parents[1] / "experiments" / "configs"


def test_shipped_cartpole_config_is_the_default():
    config, overrides = build(PPOConfig, PPOHparams, load_yaml(CONFIGS / "ppo_cartpole.yaml"))
    assert config == PPOConfig()
    default = PPOHparams(objective={"clip_eps": 0.2})
    hp = apply_overrides(default, overrides)
    for name in ("lr", "gamma", "gae_lambda", "value_clip_eps", "ent_coef", "vf_coef", "max_grad_norm"):
        assert float(getattr(hp, name)) == pytest.approx(float(getattr(default, name))), name
    assert float(hp.objective["clip_eps"]) == pytest.approx(0.2)


def test_assignments_are_typed():
    assert parse_assignment("lr=3e-4") == ("lr", 3e-4)
    assert parse_assignment("actor_hidden=[32, 32]") == ("actor_hidden", [32, 32])
    config, overrides = build(PPOConfig, PPOHparams, dict([parse_assignment("actor_hidden=[32,32]"), parse_assignment("normalize_obs=true"), parse_assignment("lr=1e-3")]))
    assert config.actor_hidden == (32, 32) and config.normalize_obs is True
    assert overrides == {"lr": 1e-3}


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"lrr": 1.0}, "unknown setting 'lrr'; closest: lr"),
        ({"num_envs": "four"}, "num_envs must be an integer, got 'four'"),
        ({"normalize_obs": 1}, "normalize_obs must be true or false"),
        ({"lr": "fast"}, "hyperparameter lr must be a number"),
    ],
)
def test_bad_settings(settings, message):
    with pytest.raises(InvalidChoiceError, match=message):
        build(PPOConfig, PPOHparams, settings)


def test_bad_objective_parameter_and_files(tmp_path):
    with pytest.raises(InvalidChoiceError, match="unknown objective parameter 'eps'; closest: clip_eps"):
        apply_overrides(PPOHparams(objective={"clip_eps": jnp.float32(0.2)}), {"objective.eps": 0.1})
    with pytest.raises(InvalidChoiceError, match="cannot read config file"):
        load_yaml(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(InvalidChoiceError, match="not valid YAML"):
        load_yaml(bad)


def test_read_hparam_reads_what_apply_overrides_set():
    hp = PPOHparams(objective={"dpo": {"alpha": jnp.float32(2.0)}, "index": jnp.float32(0)})
    hp = apply_overrides(hp, {"lr": 0.003, "objective.dpo.alpha": 1.5})
    assert float(read_hparam(hp, "lr")) == pytest.approx(0.003)
    assert float(read_hparam(hp, "objective.dpo.alpha")) == 1.5


def test_the_compile_cache_is_on_by_default_and_gives_way_to_jax_s_own_setting_or_off(monkeypatch, tmp_path):
    import jax

    from jaxrl import compile_cache

    updates = {}
    monkeypatch.setattr(jax.config, "update", lambda name, value: updates.__setitem__(name, value))
    assert compile_cache.enable({}) == str(compile_cache.DEFAULT_DIR.expanduser())
    assert updates["jax_compilation_cache_dir"] == str(compile_cache.DEFAULT_DIR.expanduser())
    assert updates["jax_compilation_cache_max_size"] > 0 and updates["jax_persistent_cache_min_compile_time_secs"] > 0
    updates.clear()
    assert compile_cache.enable({"JAXRL_COMPILE_CACHE": str(tmp_path)}) == str(tmp_path) == updates["jax_compilation_cache_dir"]
    updates.clear()
    assert compile_cache.enable({"JAXRL_COMPILE_CACHE": "off"}) is None and not updates
    assert compile_cache.enable({"JAX_COMPILATION_CACHE_DIR": "/x", "JAXRL_COMPILE_CACHE": str(tmp_path)}) == "/x" and not updates


def test_every_shipped_training_config_validates():
    """Each YAML `jaxrl run` takes resolves to an agent and its hyperparameters (names, types, ranges) without
    training: a typo in a shipped config fails here, not minutes into a user's run."""
    import argparse

    from jaxrl.agents import ALGORITHMS
    from jaxrl.cli import _resolve_plan

    checked = []
    for path in sorted(CONFIGS.glob("*.yaml")):
        settings = load_yaml(path)
        if settings.get("algorithm") not in ALGORITHMS:  # meta and UED configs belong to their own commands
            continue
        args = argparse.Namespace(env=None, steps=None, objective=None, rule=None, seeds=None, seed=0, set=[], sweep=[])
        plan, agent, _ = _resolve_plan(None, settings, args)
        assert agent.config.env_id == settings["env_id"], path.name
        checked.append(path.name)
    assert {"brax_ant.yaml", "brax_hopper.yaml", "pqn_minatar.yaml", "sac_pendulum.yaml"} <= set(checked)
