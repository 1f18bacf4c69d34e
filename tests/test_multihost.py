"""Two processes on jax.distributed (CPU, coordinator on localhost) share one sweep's runs: the combined results
folder equals one process's, run for run, also after an interruption that reached only one of them."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np

import jaxrl
from jaxrl.cli import main

# A small DQN: its carry (parameters, optimiser, a replay buffer with its integer position and fill flag) goes
# through the collective checkpoints; its programs compile faster than PPO's.
TRAIN = ["train", "dqn", "--env", "CartPole-v1", "--steps", "2048", "--seeds", "2", "--sweep", "lr=0.001,0.003",
         "--set", "num_envs=4", "--set", "buffer_size=256", "--set", "learning_starts=64", "--set", "batch_size=16",
         "--set", "hidden=[16]", "--set", "eval_episodes=4", "--chunk-updates", "32", "--checkpoint-every", "1",
         "--block-runs", "1", "--quiet"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def start_processes(args: list[str], port: int) -> list[subprocess.Popen]:
    procs = []
    for p in range(2):
        env = {**os.environ, "JAX_COORDINATOR_ADDRESS": f"localhost:{port}", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": str(p),
               "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
        code = f"import sys; from jaxrl.cli import main; sys.exit(main({args!r}))"
        procs.append(subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    return procs


def finish(procs: list[subprocess.Popen]) -> list[int]:
    codes = []
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        codes.append(proc.returncode)
        assert proc.returncode in (0, 3), err[-3000:]
    return codes


def assert_same_results(a: Path, b: Path) -> None:
    ca, cb = np.load(a / "curves.npz"), np.load(b / "curves.npz")
    assert set(ca.files) == set(cb.files)
    for name in ca.files:
        np.testing.assert_array_equal(ca[name], cb[name], err_msg=name)
    sa, sb = json.loads((a / "summary.json").read_text()), json.loads((b / "summary.json").read_text())
    assert [r["final_return"] for r in sa["runs"]] == [r["final_return"] for r in sb["runs"]]
    pa, pb = jaxrl.load(a).policies, jaxrl.load(b).policies
    for x, y in zip(jax.tree.leaves(pa), jax.tree.leaves(pb), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_two_processes_equal_one_also_when_interrupted_and_resumed(tmp_path):
    single = tmp_path / "single"
    assert main([*TRAIN, "--out", str(single), "--devices", "1"]) == 0  # one compile; results do not depend on devices

    # Two processes, and SIGTERM to process 1 alone: both stop after the same chunk (exit 3); resumed by both, the
    # combined folder equals the single process's.
    stopped = tmp_path / "stopped"
    procs = start_processes([*TRAIN, "--out", str(stopped), "--distributed"], free_port())
    deadline = time.time() + 300
    while not (stopped / "checkpoints" / "state.json").exists() and time.time() < deadline:
        time.sleep(0.2)
    procs[1].send_signal(signal.SIGTERM)
    assert finish(procs) == [3, 3]
    assert json.loads((stopped / "summary.json").read_text())["status"] == "interrupted"
    resume = ["train", "--resume", str(stopped), "--distributed", "--quiet"]
    assert finish(start_processes(resume, free_port())) == [0, 0]
    summary = json.loads((stopped / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["policy"]["processes"] == 2
    assert any("2 processes, 2 runs each" in n for n in summary["notes"])
    assert_same_results(single, stopped)
