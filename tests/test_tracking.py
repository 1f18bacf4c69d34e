"""Experiment tracking: what the runner's host loop writes to TensorBoard and W&B, read back from the files."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

from jaxrl.cli import main
from jaxrl.tracking import Tracking, parse_backends


def read_tensorboard(folder: Path) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """Every scalar in the event files under `folder`: {run folder relative to it: {tag: [(step, value)]}}. Parses
    the TFRecord framing itself (length, crc, payload, crc) so the test does not trust the writer's reader."""
    from tensorboardX.proto.event_pb2 import Event

    runs: dict[str, dict[str, list]] = {}
    for path in sorted(folder.rglob("events.out.tfevents.*")):
        data, pos = path.read_bytes(), 0
        tags = runs.setdefault(str(path.parent.relative_to(folder)), {})
        while pos < len(data):
            (length,) = struct.unpack("<Q", data[pos : pos + 8])
            event = Event.FromString(data[pos + 12 : pos + 12 + length])
            pos += 12 + length + 4
            for value in event.summary.value:
                tags.setdefault(value.tag, []).append((event.step, value.simple_value))
    return runs


def read_wandb_history(run_file: Path) -> list[dict[str, float]]:
    """The history rows of an offline W&B run file: a 7-byte header, then LevelDB-log records in 32 KiB blocks
    (7-byte record headers: crc, length, type 1 full / 2 first / 3 middle / 4 last), each a protobuf Record."""
    from wandb.proto import wandb_internal_pb2

    data, block = run_file.read_bytes(), 32768
    assert data[:4] == b":W&B"
    rows, pos, pending = [], 7, b""
    while pos + 7 <= len(data):
        room = block - pos % block
        if room < 7:  # the rest of a block too short for a header is padding
            pos += room
            continue
        length, kind = struct.unpack("<HB", data[pos + 4 : pos + 7])
        if length == 0 and kind == 0:
            break
        pending += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record.FromString(pending)
            pending = b""
            if record.WhichOneof("record_type") == "history":
                rows.append({item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item})
    return rows


class Recorder:
    def __init__(self):
        self.rows = []

    def write(self, step, rows):
        self.rows.append((step, rows))

    def close(self):
        pass


def test_series_per_seed_and_per_grid_point_also_when_a_grid_point_is_split_across_batches(tmp_path):
    # 2 grid points x 3 seeds, runs in batches of 2: grid point 0 spans batches 0-1, grid point 1 batches 1-2.
    rng = np.random.default_rng(0)
    host = {"episode_return": rng.normal(size=(6, 4)), "episode_return_valid": np.ones((6, 4), bool),
            "loss": rng.normal(size=(6, 4)), "finite": np.ones((6, 4), bool)}
    host["episode_return_valid"][5, 0] = False  # grid point 1, seed 12 has no finished episode at update 0
    tracking = Tracking([], tmp_path, ["lr=0.1", "lr=0.2"], [10, 11, 12], steps_per_update=100, config={}, name="t")
    tracking.sinks = [recorder := Recorder()]
    for b in range(3):
        tracking.chunk(host, slice(2 * b, 2 * b + 2), range(0, 4))
    written: dict[tuple[int, str], dict[str, float]] = {}
    for step, rows in recorder.rows:
        for group, values in rows.items():
            assert not written.keys() & {(step, group)} or not (written[(step, group)].keys() & values.keys())
            written.setdefault((step, group), {}).update(values)
    for u in range(4):
        step = (u + 1) * 100
        for r in range(6):
            g, s = divmod(r, 3)
            series = written.get((step, f"lr=0.{g + 1}/seed{10 + s}"), {})
            assert series.get("episode_return") == (None if (r, u) == (5, 0) else host["episode_return"][r, u])
        for g in range(2):
            rows, ok = host["episode_return"][3 * g : 3 * g + 3, u], host["episode_return_valid"][3 * g : 3 * g + 3, u]
            agg = written[(step, f"lr=0.{g + 1}")]
            assert agg["mean/loss"] == pytest.approx(host["loss"][3 * g : 3 * g + 3, u].mean())
            assert agg["mean/episode_return"] == pytest.approx(rows[ok].mean())
            # IQM of 3 (or 2) values: nothing is cut from fewer than 4, so it is their mean.
            assert agg["iqm/episode_return"] == pytest.approx(rows[ok].mean())
            assert "mean/finite" not in agg


def test_iqm_cuts_the_outer_quarters():
    from jaxrl.tracking import _iqm

    assert _iqm(np.array([100.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, -100.0])) == pytest.approx(3.5)


def test_bad_backend_is_one_line(capsys):
    assert parse_backends("tb, wandb,tb") == ["tb", "wandb"]
    assert main(["train", "ppo", "--steps", "2048", "--log", "tensorboard"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "'tensorboard'" in err and "tb, wandb" in err


def test_train_writes_tensorboard_and_offline_wandb_that_match_the_curves(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    out = tmp_path / "run"
    code = main(["train", "ppo", "--env", "CartPole-v1", "--steps", "2048", "--seeds", "2", "--sweep", "lr=0.001,0.003",
                 "--set", "num_envs=4", "--set", "num_steps=64", "--chunk-updates", "3", "--out", str(out), "--quiet",
                 "--log", "tb,wandb", "--devices", "1"])  # tiny runs: one compile beats one per device
    assert code == 0
    curves = np.load(out / "curves.npz")
    ret, valid, steps = curves["episode_return"], curves["episode_return_valid"], curves["env_steps"]  # (G, S, U)
    assert ret.shape == (2, 2, 8)

    tb = read_tensorboard(out / "tb")
    assert set(tb) == {"lr=0.001", "lr=0.003", "lr=0.001/seed0", "lr=0.001/seed1", "lr=0.003/seed0", "lr=0.003/seed1"}
    for g, label in enumerate(["lr=0.001", "lr=0.003"]):
        for s in range(2):
            logged = tb[f"{label}/seed{s}"]["episode_return"]
            expected = [(int(steps[u]), ret[g, s, u]) for u in range(8) if valid[g, s, u]]
            assert [st for st, _ in logged] == [st for st, _ in expected]
            np.testing.assert_allclose([v for _, v in logged], [v for _, v in expected], rtol=1e-6)
        mean_loss = dict(tb[label]["mean/loss"])
        np.testing.assert_allclose([mean_loss[int(st)] for st in steps], curves["loss"][g].mean(axis=0), rtol=1e-5)

    (run_file,) = (out / "wandb").glob("offline-run-*/run-*.wandb")
    history = read_wandb_history(run_file)
    assert [row["env_steps"] for row in history] == list(steps)
    last = history[-1]
    np.testing.assert_allclose(last["lr=0.003/mean/loss"], curves["loss"][1, :, -1].mean(), rtol=1e-5)
    if valid[0, 1, -1]:
        np.testing.assert_allclose(last["lr=0.001/seed1/episode_return"], ret[0, 1, -1], rtol=1e-6)
