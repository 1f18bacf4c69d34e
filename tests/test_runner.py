"""The runner: runs equal `agent.train`, sharding changes nothing, NaNs are reported per run, a run killed
with SIGTERM resumes to the same results, and bad input is one line with exit code 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl.agents.ppo import PPOConfig, make_agent
from jaxrl.cli import main
from jaxrl.devices import RunMap, default_block_runs
from jaxrl.runner import RunPlan, _CompileCounter, run

from conftest import interrupt_after_first_chunk

CONFIG = PPOConfig(num_envs=4, num_steps=16, total_timesteps=4 * 16 * 12, eval_episodes=4)
SETTINGS = {"num_envs": 4, "num_steps": 16, "total_timesteps": 4 * 16 * 12, "eval_episodes": 4}


@pytest.fixture(scope="module")
def agent():
    return make_agent(CONFIG)


def load(out):
    summary = json.loads((Path(out) / "summary.json").read_text())
    with np.load(Path(out) / "curves.npz") as data:
        curves = {k: data[k] for k in data.files}
    return summary, curves


def test_runs_equal_train_and_sharding_changes_nothing(agent, tmp_path):
    assert jax.device_count() == 4
    plan = RunPlan("ppo", SETTINGS, {"lr": [1e-3, 2.5e-4]}, [0, 1, 2, 3])
    # All four devices (one compile, copied to the others: devices.executable_on) against one.
    sharded = run(agent, plan, {}, tmp_path / "a", chunk_updates=4, block_runs=2, progress=False)
    single = run(agent, plan, {}, tmp_path / "b", chunk_updates=4, block_runs=2, max_devices=1, progress=False)
    assert sharded["devices"]["used"] == 4 and single["devices"]["used"] == 1
    assert sharded["compiles"] == 1 and sharded["block_runs"] == 2
    # A later run of the same agent (a notebook's next sweep, here the grid's two values swapped) reuses the compiled
    # programs: no compile, and the numbers of the first run's program.
    compiles = _CompileCounter()
    try:
        run(agent, RunPlan("ppo", SETTINGS, {"lr": [2.5e-4, 1e-3]}, [0, 1, 2, 3]), {}, tmp_path / "c", chunk_updates=4, block_runs=2, progress=False)
    finally:
        recompiled = compiles.stop()
    assert recompiled == 0
    _, a = load(tmp_path / "a")
    _, b = load(tmp_path / "b")
    _, c = load(tmp_path / "c")
    for name in ("loss", "episode_return", "final_return", "grad_norm"):
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)  # bit for bit, not just close
        np.testing.assert_array_equal(a[name], c[name][::-1], err_msg=name)
    # Run (grid point 1, seed 1) is agent.train with key(1) and lr 2.5e-4.
    hp = agent.default_hparams().replace(lr=jnp.float32(2.5e-4))
    _, metrics = jax.jit(agent.train)(jax.random.key(1), hp)
    np.testing.assert_allclose(a["loss"][1, 1], metrics["loss"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(a["final_return"][1, 1], metrics["final_return"], rtol=1e-4)
    for f in ("summary.json", "curves.npz", "curves.png", "report.md"):
        assert (tmp_path / "a" / f).stat().st_size > 0


def test_a_run_map_compiles_once_and_copies_the_executable_to_the_other_devices():
    """XLA:CPU code runs on any CPU device: the program is compiled for the first device only (a count of
    backend compiles), the copies run on their own devices, and they compute what the compiled original does."""
    def f(x):
        return jnp.tanh(x @ x.T).sum() + jnp.float32(0.25)

    fn = RunMap(f, num_runs=8, block_runs=2)
    xs = jax.random.normal(jax.random.key(3), (8, 5, 5))
    compiles = _CompileCounter()
    try:
        fn.compile(xs)
    finally:
        compiled = compiles.stop()
    assert compiled == 1 and len(fn.devices) == 4
    assert [c.input_shardings[0][0].device_set for c in fn._compiled] == [{d} for d in fn.devices]
    out = fn(xs)
    assert {s.device for s in out.addressable_shards} == set(fn.devices)
    np.testing.assert_allclose(np.asarray(out), np.asarray(jax.jit(jax.vmap(f))(xs)), rtol=1e-6)


def test_a_run_map_of_the_same_function_reuses_its_program_unless_the_speedups_switch_changed():
    """RunMap keeps the programs of a function for later maps of it; the speed-ups switch is read at trace time, so
    flipping it must trace again (a kept program would silently keep the other branch)."""
    from jaxrl import speedups

    def f(x):
        return x + (1.0 if speedups.enabled() else 2.0)

    xs = jnp.zeros((4, 3))
    with speedups.using(True):
        compiles = _CompileCounter()
        try:
            RunMap(f, 4, 1).compile(xs)
            first = compiles.n
            RunMap(f, 4, 1).compile(xs)
        finally:
            total = compiles.stop()
        assert first == 1 and total == 1
        np.testing.assert_array_equal(RunMap(f, 4, 1)(xs), 1.0)
    with speedups.using(False):
        np.testing.assert_array_equal(RunMap(f, 4, 1)(xs), 2.0)


def test_default_blocks_are_runs_over_8_and_on_a_cpu_at_most_4_runs_and_32_mb():
    assert jax.default_backend() == "cpu"
    assert [default_block_runs(n) for n in (1, 8, 16, 24, 32, 256, 1024, 36)] == [1, 1, 2, 3, 4, 4, 4, 4]
    mb = 2**20
    # PPO CartPole needs about 2.7 MB a run, PPO Breakout-MinAtar 117 MB (run_axis.per_run_bytes).
    assert [default_block_runs(256, int(b * mb)) for b in (2.7, 8, 11, 16.5, 117)] == [4, 4, 2, 1, 1]


def test_nan_is_reported_with_grid_point_seed_and_update(agent, tmp_path):
    # lr = NaN is refused up front (a range check), so the NaN comes from inside the objective.
    plan = RunPlan("ppo", SETTINGS, {"objective.clip_eps": [0.2, float("nan")]}, [3])
    summary = run(agent, plan, {}, tmp_path, chunk_updates=4, max_devices=1, progress=False)
    good, bad = summary["runs"]
    assert good["nan"] is False and bad["nan"] is True
    assert bad["grid_index"] == 1 and bad["seed"] == 3 and bad["first_nan_update"] == 0
    assert np.isfinite(good["final_return"])
    assert "NaN: grid point 1" in (tmp_path / "report.md").read_text()


def test_sigterm_then_resume_equals_uninterrupted(tmp_path, monkeypatch, capsys):
    """A real SIGTERM (sent by the process to itself once the first chunk's metrics are written) checkpoints and
    stops with exit 3; `--resume` finishes the run, which then equals one never interrupted."""
    args = ["train", "ppo", "--env", "CartPole-v1", "--seeds", "2", "--steps", str(4 * 16 * 60), "--quiet", "--devices", "1",
            "--set", "num_envs=4", "--set", "num_steps=16", "--set", "eval_episodes=4",
            "--chunk-updates", "20", "--checkpoint-every", "1"]
    cut = tmp_path / "cut"
    with monkeypatch.context() as m:
        interrupt_after_first_chunk(m)
        assert main([*args, "--out", str(cut)]) == 3  # interrupted and resumable: neither success nor bad input
    summary, _ = load(cut)
    assert summary["status"] == "interrupted", "the run finished before the signal; make it longer"
    chunk_files = sorted((cut / "metrics").glob("batch0000_chunk*.npz"))
    assert chunk_files and np.load(chunk_files[0])["loss"].shape == (2, 20)
    assert "--resume" in capsys.readouterr().out

    assert main(["train", "--resume", str(cut), "--set", "lr=0.1"]) == 2
    assert "different config (changed: lr)" in capsys.readouterr().err
    assert main(["train", "--resume", str(cut), "--quiet", "--devices", "1"]) == 0
    full = tmp_path / "full"
    assert main([*args, "--out", str(full)]) == 0
    s_cut, c_cut = load(cut)
    s_full, c_full = load(full)
    assert s_cut["status"] == "finished" and not (cut / "metrics").exists()
    # The resumed call reports the steps it ran itself, so its steps/s is not inflated by the earlier part.
    assert 0 < s_cut["timing"]["env_steps"] < s_full["timing"]["env_steps"] == 2 * 4 * 16 * 60
    for name in ("loss", "episode_return", "approx_kl", "final_return"):
        np.testing.assert_array_equal(c_cut[name], c_full[name], err_msg=name)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "ddpg"], "unknown algorithm 'ddpg'"),
        (["train", "ppo", "--env", "CartPol-v1"], "closest: CartPole-v1"),
        (["train", "ppo", "--objective", "ppo"], "unknown objective 'ppo'"),
        (["train", "ppo", "--set", "lrate=1"], "unknown setting 'lrate'"),
        (["train", "ppo", "--set", "lr=fast"], "hyperparameter lr must be a number"),
        (["train", "ppo", "--set", "lr=-1"], "invalid lr -1.0; choices: a number > 0"),
        (["train", "ppo", "--sweep", "gamma=0.99,1.5"], "invalid gamma 1.5; choices: a number in [0, 1]"),
        (["train", "ppo", "--sweep", "lrr=1e-3,2e-3"], "unknown hyperparameter 'lrr'; closest: lr"),
        (["train", "ppo", "--sweep", "num_envs=4,8"], "cannot sweep 'num_envs': it is a static setting"),
        (["train", "ppo", "--sweep", "objective=ppo_clip,lpo"], "closed-form"),
        (["train", "--resume", "/nonexistent/run"], "cannot resume"),
    ],
)
def test_bad_input_is_one_line_exit_2(argv, message, capsys, tmp_path):
    assert main([*argv, "--out", str(tmp_path / "o")] if "--resume" not in argv else argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "o").exists()


def test_existing_results_are_not_touched(tmp_path, capsys):
    out = tmp_path / "done"
    out.mkdir()
    (out / "summary.json").write_text("{}")
    assert main(["train", "ppo", "--steps", "512", "--out", str(out)]) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert (out / "summary.json").read_text() == "{}"


def test_corrupt_checkpoint_is_a_clear_error(tmp_path, capsys):
    out = tmp_path / "run"
    plan = RunPlan("ppo", SETTINGS, {}, [0])
    (out / "checkpoints" / "carry").mkdir(parents=True)
    (out / "run.json").write_text(json.dumps(plan.to_json()))
    (out / "checkpoints" / "state.json").write_text(json.dumps({"batch": 0, "chunk": 1, "chunk_updates": 4}))
    (out / "checkpoints" / "metrics.npz").write_bytes(b"garbage")
    assert main(["train", "--resume", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "checkpoint" in err


def test_run_yaml_with_an_objective_sweep(tmp_path, capsys):
    config = tmp_path / "sweep.yaml"
    config.write_text(
        "algorithm: ppo\nenv_id: CartPole-v1\nnum_envs: 4\nnum_steps: 16\ntotal_timesteps: 512\neval_episodes: 2\n"
        "lr: 0.05\nseeds: 2\nsweep:\n  objective: [ppo_clip, dpo]\n  objective.ppo_clip.clip_eps: [0.1, 0.3]\n"
    )
    assert main(["run", str(config), "--out", str(tmp_path / "out"), "--quiet", "--devices", "1"]) == 0
    summary, curves = load(tmp_path / "out")
    assert summary["compiles"] == 1 and len(summary["runs"]) == 8
    assert summary["grid"]["labels"][0] == "objective=ppo_clip, objective.ppo_clip.clip_eps=0.1"
    assert curves["loss"].shape == (4, 2, 8)
    # (A large lr so that ratios leave [0.7, 1.3].) ppo_clip with clip 0.1 vs 0.3 differ; dpo ignores the
    # clip width, so its two grid points are equal.
    assert not np.allclose(curves["loss"][0], curves["loss"][1])
    np.testing.assert_array_equal(curves["loss"][2], curves["loss"][3])
    assert main(["plot", str(tmp_path / "out"), str(tmp_path / "out"), "--out", str(tmp_path / "cmp.png")]) == 0
    assert (tmp_path / "cmp.png").stat().st_size > 0


def test_runs_split_into_batches_give_the_same_results(agent, tmp_path):
    plan = RunPlan("ppo", SETTINGS, {"lr": [1e-3, 2.5e-4]}, [0, 1])
    whole = run(agent, plan, {}, tmp_path / "whole", chunk_updates=4, max_devices=1, progress=False)
    split = run(agent, plan, {}, tmp_path / "split", chunk_updates=4, max_batch_runs=2, max_devices=1, progress=False)
    assert whole["batch_runs"] == 4 and split["batch_runs"] == 2 and split["compiles"] == 1
    assert any("2 batches of 2" in note for note in split["notes"])
    _, a = load(tmp_path / "whole")
    _, b = load(tmp_path / "split")
    for name in ("loss", "final_return"):
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_importing_the_cli_and_devices_leaves_jax_backends_unstarted():
    # use_all_cpu_cores() must run before JAX starts its backends; an import that starts them silently makes
    # every command run on one CPU device.
    code = "import jaxrl.cli, jaxrl.devices; from jax._src import xla_bridge; assert not xla_bridge._backends, 'started'"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={k: v for k, v in os.environ.items() if k != "XLA_FLAGS"})
    assert result.returncode == 0, result.stderr[-500:]


def test_run_axis_plans_batches_from_device_memory(agent, monkeypatch):
    """Batches come from the free device memory over a per-run bound read off the traced update; with memory for
    only 3 runs, 8 runs split into equal batches of 2."""
    from jaxrl import run_axis

    hp = agent.default_hparams()
    per_run = run_axis.per_run_bytes(agent, hp)
    rollout = 16 * 4 * 4 * 4  # at least the rollout's observations (T x N x obs_dim float32)
    assert per_run > rollout + run_axis.tree_bytes(jax.eval_shape(agent.init, jax.random.key(0), hp))
    assert run_axis.RunAxis.plan(agent, hp, 8).num_batches == 1
    assert run_axis.available_memory_bytes() > per_run
    monkeypatch.setattr(run_axis, "available_memory_bytes", lambda device=None: 2 * 3 * per_run)
    axis = run_axis.RunAxis.plan(agent, hp, 8)
    assert (axis.fit, axis.batch_runs, axis.num_batches) == (3, 2, 4)
    assert [sl.start for _, sl in axis.batches()] == [0, 2, 4, 6]


def test_yaml_sweep_values_written_like_1e_3_are_numbers(tmp_path):
    """PyYAML reads 1e-3 (no dot) as a string; a sweep written that way in a config file means numbers."""
    import argparse

    from jaxrl.cli import _resolve_plan
    from jaxrl.config import load_yaml

    (tmp_path / "s.yaml").write_text("algorithm: ppo\nsweep:\n  lr: [1e-3, 3e-4]\n")
    args = argparse.Namespace(env=None, steps=None, objective=None, seeds=None, set=[], sweep=[], seed=0)
    plan, _, _ = _resolve_plan(None, load_yaml(tmp_path / "s.yaml"), args)
    assert plan.sweep == {"lr": [0.001, 0.0003]}


def test_resume_of_a_finished_run_says_so(tmp_path, capsys):
    (tmp_path / "run.json").write_text("{}")
    (tmp_path / "summary.json").write_text('{"status": "finished"}')
    assert main(["train", "--resume", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "holds a finished run: nothing to resume" in err, err


def test_steps_flag_error_does_not_offer_all(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "ppo", "--steps", "all"])
    assert exc.value.code == 2
    assert "expected a positive integer, got 'all'" in capsys.readouterr().err


def test_resume_of_a_run_stopped_before_its_first_checkpoint_starts_it(agent, tmp_path):
    """Stopped while compiling: run.json is written, no checkpoint yet. --resume runs it from the start."""
    plan = RunPlan("ppo", SETTINGS, {}, [0])
    (tmp_path / "run.json").write_text(json.dumps(plan.to_json()))
    summary = run(agent, plan, {}, tmp_path, chunk_updates=4, max_devices=1, progress=False, resume=True)
    assert summary["status"] == "finished" and summary["timing"]["env_steps"] == agent.num_updates * agent.steps_per_update
    t = summary["timing"]  # the final evaluation's seconds are part of the run's and left out of the training rate
    assert 0 < t["eval_s"] < t["run_s"] and t["train_steps_per_s"] == pytest.approx(t["env_steps"] / (t["run_s"] - t["eval_s"]))


def test_a_prime_number_of_updates_runs_in_one_program_with_a_masked_last_chunk(agent, tmp_path):
    """13 updates in chunks of up to 4: not 13 chunks of 1, but 7 of 2, the last one discarding its second update,
    all in one compiled chunk program; the same numbers as one jitted train."""
    from jaxrl.runner import chunk_size

    assert chunk_size(13, 4) == 2 and chunk_size(12, 4) == 4 and chunk_size(12, 5) == 4 and chunk_size(14, 50) == 14
    assert chunk_size(97, 50) == 49 and chunk_size(101, 50) == 34
    prime = make_agent(PPOConfig(**{**SETTINGS, "total_timesteps": 4 * 16 * 13}))
    summary = run(prime, RunPlan("ppo", SETTINGS, {}, [2]), {}, tmp_path, chunk_updates=4, max_devices=1, progress=False)
    assert summary["compiles"] == 1 and any("the last one runs 1 and discards 1" in n for n in summary["notes"]), summary["notes"]
    assert summary["timing"]["env_steps"] == 13 * prime.steps_per_update
    _, curves = load(tmp_path)
    _, metrics = jax.jit(prime.train)(jax.random.key(2), prime.default_hparams())
    assert curves["loss"].shape == (1, 1, 13)
    np.testing.assert_allclose(curves["loss"][0, 0], metrics["loss"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(curves["final_return"][0, 0], metrics["final_return"], rtol=1e-4)


def test_trained_policies_are_kept_and_load_back(tmp_path):
    """The final policy of every run is in the results folder; jaxrl.load rebuilds the agent and acts with it, with
    the run's own observation statistics."""
    import jaxrl

    settings = {**SETTINGS, "normalize_obs": True}
    agent = make_agent(PPOConfig(**settings))
    run(agent, RunPlan("ppo", settings, {}, [0, 1]), {}, tmp_path, chunk_updates=4, max_devices=1, progress=False)
    trained = jaxrl.load(tmp_path)
    assert trained.num_runs == 2 and trained.agent.config == agent.config
    carry, _ = jax.jit(agent.train)(jax.random.key(1), agent.default_hparams())
    kept = trained.policy_state(1)
    for a, b in zip(jax.tree.leaves(kept["params"]), jax.tree.leaves(carry.params)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(kept["obs_stats"].mean, carry.env_state.obs_stats.mean, rtol=1e-4, atol=1e-5)
    obs = jnp.ones((5, 4)) * 3.0
    actions = trained.act(obs, jax.random.key(0), run=1, deterministic=True)
    normalized = jnp.clip((obs - carry.env_state.obs_stats.mean) / jnp.sqrt(carry.env_state.obs_stats.var + 1e-8), -10, 10)
    expected = jax.jit(lambda params, obs, key: agent.act(params, obs, key, deterministic=True))(carry.params, normalized, jax.random.key(0))
    np.testing.assert_array_equal(actions, expected)
    np.testing.assert_array_equal(trained.policy(obs, run=1), expected)
    with pytest.raises(jaxrl.envs.errors.InvalidChoiceError, match="invalid run 2"):
        trained.policy_state(2)

    # jaxrl eval: fresh episodes of the kept policies, the same as the agent's own evaluation of that state.
    from jaxrl.trained import evaluate

    report = evaluate(trained, episodes=None, run=1, seed=5)
    direct = jax.jit(agent.episode_returns)(jax.tree.map(jnp.asarray, kept), jax.random.split(jax.random.key(5), 1)[0])
    np.testing.assert_allclose(report["mean_return_per_run"][0], float(direct.mean()), rtol=1e-6)
    assert main(["eval", str(tmp_path), "--episodes", "3"]) == 0
    written = json.loads((tmp_path / "eval-CartPole-v1-3ep-seed0.json").read_text())
    assert written["runs"] == [0, 1] and written["episodes_per_run"] == 3 and written["summary"]["n"] == 2
    assert main(["eval", str(tmp_path), "--env", "Acrobot-v1"]) == 2  # other observation space: one line, exit 2
    assert main(["eval", str(tmp_path), "--run", "7"]) == 2


def test_result_files_are_readable_like_any_other_file(tmp_path):
    """Atomic writes go through a temporary file; the result still gets open()'s permissions (umask), not 0600."""
    import os

    from jaxrl import results

    old = os.umask(0o022)
    try:
        results.atomic_write_bytes(tmp_path / "a.txt", b"x")
        with open(tmp_path / "b.txt", "wb") as f:
            f.write(b"x")
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == (tmp_path / "b.txt").stat().st_mode & 0o777 == 0o644


CACHED_RUNMAP = """
import os, sys
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
import jax, jax.numpy as jnp
jax.config.update("jax_compilation_cache_dir", sys.argv[1])
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
from jaxrl.devices import RunMap
f = lambda x: jnp.sin(x * jnp.arange(x.shape[-1]).astype(jnp.float32)).sum() + jnp.cumsum(x)[-1]
print(RunMap(f, 4, 1)(jnp.ones((4, 1000))).tolist())
"""


def test_a_run_map_loaded_from_the_persistent_cache_runs_on_every_device(tmp_path):
    # The second process loads device 0's program from the cache; a copy of that executable for device 1 failed at
    # its first call ("Function ... not found"), so devices load such programs themselves.
    outs = [subprocess.run([sys.executable, "-c", CACHED_RUNMAP, str(tmp_path)], capture_output=True, text=True, timeout=300)
            for _ in range(2)]
    assert any(tmp_path.iterdir())
    for out in outs:
        assert out.returncode == 0, out.stderr[-2000:]
    assert outs[0].stdout == outs[1].stdout
