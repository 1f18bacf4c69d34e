"""Run a grid of hyperparameters x seeds of any agent as one compiled, vmapped, sharded program, chunk by
chunk from a short host loop: progress, metrics, checkpoints, NaN checks and clean interruption happen between
chunks, never inside the compiled program.

Run r = (grid point g, seed s), r = g * num_seeds + s, trains exactly as `agent.train(jax.random.key(seed),
hparams_g)` would: same key splits, same updates, same final evaluation.

An agent may also define `snapshot(carry, key) -> dict of arrays`, recorded after every chunk (e.g. an evaluation
on held-out levels); it reaches curves.npz as `snapshot_NAME` (grid point, seed, chunk, ...), with
`snapshot_env_steps`. It only reads the carry, so it never changes a run's results.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxrl import multihost, objectives, results
from jaxrl.agents.base import params_of, update_while
from jaxrl.checkpoints import StopFlag, restore_tree, save_tree
from jaxrl.config import apply_overrides, check_range
from jaxrl.devices import compile_together, largest_divisor_at_most
from jaxrl.envs.errors import InvalidChoiceError
from jaxrl.run_axis import RunAxis
from jaxrl.tracking import Tracking

# A sweep value for `objective` selects a member of an objective switch (see objectives.make_switch).
OBJECTIVE_KEY = "objective"
POLICY_DIR = "policy"  # final policies of a run: POLICY_DIR/batchNNNN, runs stacked (see jaxrl.trained)


def policy_state(agent: Any, carry: Any) -> Any:
    """What acting needs after training: `agent.policy_state(carry)` when the agent defines it, else the params."""
    return agent.policy_state(carry) if hasattr(agent, "policy_state") else params_of(carry)


@dataclasses.dataclass(frozen=True)
class RunPlan:
    """Everything that defines a run; saved as run.json so `--resume` can check and rebuild it."""

    algorithm: str
    settings: dict[str, Any]  # static settings and base hyperparameters, flat (see jaxrl.config)
    sweep: dict[str, list[Any]]  # key -> values; the grid is their product
    seeds: list[int]

    def grid(self) -> list[dict[str, Any]]:
        keys = list(self.sweep)
        return [dict(zip(keys, values)) for values in itertools.product(*(self.sweep[k] for k in keys))] or [{}]

    def labels(self) -> list[str]:
        return [", ".join(f"{k}={v}" for k, v in point.items()) or "default" for point in self.grid()]

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class _CompileCounter:
    """XLA backend compilations from its creation until `stop()`."""

    def __init__(self) -> None:
        self.n = 0
        jax.monitoring.register_event_duration_secs_listener(self._listen)

    def _listen(self, event: str, duration: float, **kwargs: Any) -> None:
        if event == "/jax/core/compile/backend_compile_duration":
            self.n += 1

    def stop(self) -> int:
        jax.monitoring.unregister_event_duration_listener(self._listen)
        return self.n


def build_hparams(agent: Any, plan: RunPlan, base_overrides: dict[str, float]) -> list[Any]:
    """One Hparams pytree per grid point."""
    ranges = getattr(agent, "hparam_ranges", {})
    for key, value in base_overrides.items():
        check_range(key, value, ranges)
    base = apply_overrides(agent.default_hparams(), base_overrides)
    out = []
    for point in plan.grid():
        overrides = {}
        for key, value in point.items():
            if key == OBJECTIVE_KEY:
                overrides["objective.index"] = float(objectives.sweep_index(str(plan.settings.get("objective", "")), value))
            elif isinstance(value, bool) or not isinstance(value, (int, float)):
                raise InvalidChoiceError(f"sweep values of {key} must be numbers, got {value!r}")
            else:
                overrides[key] = float(value)
        for key, value in overrides.items():
            check_range(key, value, ranges)
        out.append(apply_overrides(base, overrides))
    return out


def chunk_program(agent: Any, num_updates: int | None = None) -> Callable[..., tuple[Any, dict]]:
    """`chunk(carry, hparams, first, length)`: `length` updates in a scan, each update's metrics with a flag saying
    whether the loss and the parameters are finite after it (the host reports the seed and update of a NaN).
    first: () int32, the index of the chunk's first update. With `num_updates`, the updates from index num_updates
    on are computed and discarded (`update_done` False), so one program of `length` also runs a shorter last chunk."""

    def chunk(carry: Any, hparams: Any, first: jax.Array, length: int) -> tuple[Any, dict]:
        def body(c, i):
            if num_updates is None:
                done = jnp.bool_(True)
                new, metrics = agent.update(c, hparams)
            else:
                done = first + i < num_updates
                new, metrics = update_while(agent, c, hparams, done)
            finite = jnp.isfinite(metrics["loss"]) & jnp.all(
                jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(params_of(new))])
            )
            return new, {**metrics, "finite": finite, "update_done": done}

        return jax.lax.scan(body, carry, jnp.arange(length))

    return chunk


@functools.lru_cache(maxsize=8)
def _chunk_of(agent: Any, num_updates: int | None, length: int) -> Callable[..., tuple[Any, dict]]:
    """`chunk_program(agent, num_updates)` of `length` updates as one function object per (agent, settings), so a
    later run of the same agent finds its compiled chunk again (see devices.RunMap's program cache)."""
    return functools.partial(chunk_program(agent, num_updates), length=length)


def run(
    agent: Any,
    plan: RunPlan,
    base_overrides: dict[str, float],
    out_dir: str | os.PathLike,
    *,
    chunk_updates: int = 50,
    checkpoint_every: int = 10,
    max_devices: int | None = None,
    block_runs: int | None = None,
    resume: bool = False,
    max_batch_runs: int | None = None,
    progress: bool = True,
    log: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Train every (grid point, seed) of `plan`; write results to `out_dir`; return the summary dict.
    log: experiment-tracking backends ("tb", "wandb"), written after every chunk (see jaxrl.tracking).
    Under several processes (jaxrl.multihost) each trains its share of the runs and process 0 writes the results."""
    out = Path(out_dir)
    compiles = _CompileCounter()
    grid_hparams = build_hparams(agent, plan, base_overrides)
    num_seeds, num_points = len(plan.seeds), len(grid_hparams)
    num_runs = num_seeds * num_points
    mine = multihost.share(num_runs)  # this process's runs (all of them with one process)
    local_runs = mine.stop - mine.start
    primary = multihost.index() == 0
    progress = progress and primary
    num_updates = agent.num_updates
    # Resuming a run stopped before its first checkpoint (e.g. while compiling) starts it from the beginning.
    state_file = out / "checkpoints" / "state.json"
    state = _read_state(state_file) if resume and state_file.parent.exists() else None
    # A resumed run keeps the chunk size it was checkpointed with: chunk indices are in its units.
    k = state["chunk_updates"] if state else chunk_size(num_updates, chunk_updates)
    num_chunks = -(-num_updates // k)
    last_k = num_updates - (num_chunks - 1) * k  # the last chunk is shorter when k does not divide the updates
    masked = last_k != k  # then the one chunk program discards the updates past the end (see chunk_program)
    steps_per_update = agent.steps_per_update

    run_hparams = jax.tree.map(lambda *xs: jnp.stack([x for x in xs for _ in range(num_seeds)])[mine], *grid_hparams)
    run_seeds = np.tile(np.asarray(plan.seeds), num_points)[mine]

    # A resumed run keeps its block size: results depend on it. Shared by several processes, the default block is
    # still the one of all the runs, so the numbers do not depend on the process count.
    axis = RunAxis.plan(agent, grid_hparams[0], local_runs, max_batch_runs=max_batch_runs,
                        block_runs=(state or {}).get("block_runs") or block_runs, max_devices=max_devices,
                        block_of_runs=num_runs if multihost.count() > 1 else None)
    batch_runs, fit, block, num_batches = axis.batch_runs, axis.fit, axis.block_runs, axis.num_batches

    # One single-device program per device, runs in fixed-size blocks: a run's numbers do not depend on the
    # number of devices (see devices.RunMap), and every chunk, the shorter last one too, reuses one compiled chunk program.
    init_fn = axis.map(agent.init)
    chunk_fn = axis.map(_chunk_of(agent, num_updates if masked else None, k), donate_argnums=(0,))
    eval_fn = axis.map(agent.evaluate)
    snapshot_fn = axis.map(agent.snapshot) if hasattr(agent, "snapshot") else None
    sharding, devices = init_fn.sharding, len(init_fn.devices)

    def first_update(index: int) -> jax.Array:
        """The index of a chunk's first update, for every run of a batch."""
        return jax.device_put(jnp.full(batch_runs, index, jnp.int32), sharding)

    def compile_all(init_keys, hparams) -> float:
        """Compile init, chunk and evaluation once (all batches share shapes); returns seconds spent."""
        abstract_carry = init_fn.eval_shape(init_keys, hparams)
        jobs = [(init_fn, (init_keys, hparams)), (eval_fn, (abstract_carry, init_keys))]
        jobs += [(chunk_fn, (abstract_carry, hparams, first_update(0)))]
        jobs += [(snapshot_fn, (abstract_carry, init_keys))] if snapshot_fn else []
        return compile_together(jobs)

    ckpt_dir = out / "checkpoints"
    host: dict[str, np.ndarray] = {}  # this process's runs only
    final_return = np.full(local_runs, np.nan)
    start_batch, start_chunk = 0, 0
    if state:
        start_batch, start_chunk = state["batch"], state["chunk"]
        try:
            with np.load(ckpt_dir / _metrics_file()) as data:
                host = {name: data[name] for name in data.files if name != "final_return"}
                final_return = data["final_return"]
        except Exception as err:  # a damaged file can fail in zipfile, numpy or pickle checks
            raise InvalidChoiceError(f"checkpoint {str(ckpt_dir)!r} is corrupt: metrics.npz: {type(err).__name__}") from None
    out.mkdir(parents=True, exist_ok=True)
    if primary:
        results.atomic_write_json(out / "run.json", plan.to_json())

    notes = []
    if num_batches > 1:
        why = "do not fit in memory at once" if fit < local_runs else f"were limited to {max_batch_runs} per batch"
        notes.append(f"{num_runs} runs {why}: ran them in {num_batches} batches of {batch_runs}")
        print(notes[-1], file=sys.stderr)
    if multihost.count() > 1:
        notes.append(f"{multihost.count()} processes, {local_runs} runs each")
    if k != chunk_updates and not masked:
        notes.append(f"chunks of {k} updates (the largest divisor of {num_updates} updates <= {chunk_updates})")
    if masked:
        notes.append(f"chunks of {k} updates; the last one runs {last_k} and discards {k - last_k}")

    tracking = Tracking(log, out, plan.labels(), plan.seeds, steps_per_update,
                        {**plan.settings, "algorithm": plan.algorithm, "sweep": plan.sweep}, out.name, first_run=mine.start)
    stop = StopFlag("chunk")
    compile_s = run_s = eval_s = 0.0  # run_s includes eval_s, the final evaluations
    steps_run = 0  # environment steps run by this call (a resumed run counts only its own)
    status = "finished"
    bar = _progress(progress, total=num_updates * num_batches, initial=(start_batch * num_chunks + start_chunk) * k)
    with stop.installed():
        for b, sl in axis.batches(start_batch):
            keys = jax.vmap(jax.random.key)(run_seeds[sl])
            split = jax.vmap(jax.random.split)(keys)
            init_keys, eval_keys = jax.device_put((split[:, 0], split[:, 1]), sharding)
            hparams = jax.device_put(jax.tree.map(lambda x: x[sl], run_hparams), sharding)
            if progress and b == start_batch:
                print("compiling (init, chunk of updates, evaluation)...", file=sys.stderr, flush=True)
            compile_s += compile_all(init_keys, hparams)
            if progress and b == start_batch:
                print(f"compiled in {compile_s:.1f} s", file=sys.stderr, flush=True)
            if b == start_batch and start_chunk > 0:
                carry = restore_tree(ckpt_dir / "carry", init_fn.eval_shape(init_keys, hparams), sharding)
            else:
                carry = init_fn(init_keys, hparams)
            for c in range(start_chunk if b == start_batch else 0, num_chunks):
                length = last_k if c == num_chunks - 1 else k
                t0 = time.perf_counter()
                carry, metrics = chunk_fn(carry, hparams, first_update(c * k))
                metrics = jax.tree.map(lambda x: np.asarray(x)[:, :length], metrics)  # waits for the chunk: (batch_runs, length) each
                run_s += time.perf_counter() - t0
                steps_run += batch_runs * length * steps_per_update
                for name, value in metrics.items():
                    if name not in host:
                        host[name] = np.zeros((local_runs, num_updates), value.dtype)
                    host[name][sl, c * k : c * k + length] = value
                tracking.chunk(host, sl, range(c * k, c * k + length))
                if snapshot_fn:
                    snapshot = {f"snapshot_{name}": np.asarray(v) for name, v in snapshot_fn(carry, eval_keys).items()}
                    for name, value in snapshot.items():
                        if name not in host:
                            host[name] = np.zeros((local_runs, num_chunks, *value.shape[1:]), value.dtype)
                        host[name][sl, c] = value
                    metrics = {**metrics, **snapshot}
                # Every chunk's metrics reach the disk at once (curves.npz gathers them at the end).
                results.atomic_write_npz(out / "metrics" / f"{_process_prefix()}batch{b:04d}_chunk{c:05d}.npz",
                                         {**metrics, "runs": np.arange(num_runs)[mine][sl]})
                bar.update(length)
                bar.set_postfix_str(_postfix(metrics, batch_runs * length * steps_per_update / max(time.perf_counter() - t0, 1e-9)))
                last = c == num_chunks - 1
                stopping = multihost.any_process(stop.signal is not None)  # every process stops after the same chunk
                if stopping or (not last and (c + 1) % checkpoint_every == 0):
                    if not last:
                        _checkpoint(ckpt_dir, carry, host, final_return, batch=b, chunk=c + 1, chunk_updates=k, block_runs=block)
                    if stopping and not last:
                        status = "interrupted"
                        break
            if status == "interrupted":
                break
            t0 = time.perf_counter()
            final_return[sl] = np.asarray(eval_fn(carry, eval_keys))
            seconds = time.perf_counter() - t0
            eval_s += seconds
            run_s += seconds
            # The trained policies stay in the results folder (jaxrl.load reads them back).
            save_tree(out / POLICY_DIR / f"batch{b:04d}", policy_state(agent, carry))
            if b + 1 < num_batches:
                _checkpoint(ckpt_dir, None, host, final_return, batch=b + 1, chunk=0, chunk_updates=k, block_runs=block)
            if multihost.any_process(stop.signal is not None) and b + 1 < num_batches:
                status = "interrupted"
                break
    bar.close()
    tracking.close()

    train_s = run_s - eval_s
    if multihost.count() > 1:  # every run's numbers, in run order (shares are contiguous); the slowest process's time
        host = {name: multihost.gather_rows(v) for name, v in sorted(host.items())}
        final_return = multihost.gather_rows(final_return)
        # Each of the seconds is the slowest process's, training seconds included (not max run_s - max eval_s).
        compile_s, run_s, eval_s, train_s, steps_run = multihost.gather_rows(np.asarray([[compile_s, run_s, eval_s, train_s, steps_run]])).T
        compile_s, run_s, eval_s, train_s, steps_run = float(compile_s.max()), float(run_s.max()), float(eval_s.max()), float(train_s.max()), int(steps_run.sum())
    summary = _summarize(agent, plan, host, final_return, status, compiles.stop(), compile_s, run_s, eval_s, train_s, steps_run, notes, devices, batch_runs, block)
    if not primary:
        return summary
    _write_results(out, plan, host, final_return, summary, steps_per_update, status, k)
    if status == "finished":
        shutil.rmtree(ckpt_dir / "carry", ignore_errors=True)
        shutil.rmtree(out / "metrics", ignore_errors=True)
    return summary


def chunk_size(num_updates: int, chunk_updates: int) -> int:
    """Updates per compiled chunk: the largest divisor of num_updates up to chunk_updates; but when that divisor is
    under half of chunk_updates (a prime count of updates would give chunks of 1, each paying the host loop's
    overhead), the size in [chunk_updates / 2, chunk_updates] whose last chunk discards the fewest updates (the
    larger on a tie; see chunk_program)."""
    k = largest_divisor_at_most(num_updates, chunk_updates)
    if 2 * k >= min(chunk_updates, num_updates):
        return k
    return min(range(-(-chunk_updates // 2), chunk_updates + 1), key=lambda k: (-(-num_updates // k) * k - num_updates, -k))


def _as_dict(config: Any) -> dict[str, Any]:
    """An agent's static config as a JSON-able dict (a dataclass, a mapping, or anything with attributes)."""
    if dataclasses.is_dataclass(config):
        return dataclasses.asdict(config)
    return dict(config) if isinstance(config, dict) else dict(vars(config))


def _progress(enabled: bool, total: int, initial: int):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, disable=not enabled, unit="upd", dynamic_ncols=True, file=sys.stderr)


def _postfix(metrics: dict[str, np.ndarray], steps_per_s: float) -> str:
    valid = metrics["episode_return_valid"][:, -1]
    latest = metrics["episode_return"][:, -1][valid]
    ret = f"{latest.mean():.1f}" if latest.size else "n/a"
    return f"{steps_per_s:,.0f} steps/s, return {ret}"


def _checkpoint(ckpt_dir: Path, carry: Any, host: dict, final_return: np.ndarray, *, batch: int, chunk: int, chunk_updates: int, block_runs: int) -> None:
    """Carry (orbax), host-side metrics and the position, written so that state.json is the last to change."""
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    if carry is not None:
        save_tree(ckpt_dir / "carry", carry)
    results.atomic_write_npz(ckpt_dir / _metrics_file(), {**host, "final_return": final_return})
    multihost.sync(f"checkpoint:{batch}:{chunk}")  # every process's part is written before the position moves
    if multihost.index() == 0:
        results.atomic_write_json(ckpt_dir / "state.json", {"batch": batch, "chunk": chunk, "chunk_updates": chunk_updates, "block_runs": block_runs})


def _process_prefix() -> str:
    """Per-process file names when several processes share the results folder."""
    return f"process{multihost.index()}_" if multihost.count() > 1 else ""


def _metrics_file() -> str:
    return f"{_process_prefix()}metrics.npz"


def _read_state(path: Path) -> dict[str, int]:
    try:
        state = json.loads(path.read_text())
        return {"batch": int(state["batch"]), "chunk": int(state["chunk"]), "chunk_updates": int(state["chunk_updates"]),
                "block_runs": int(state.get("block_runs") or 0)}
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise InvalidChoiceError(f"no usable checkpoint at {str(path.parent)!r}: {type(err).__name__}: {err}") from None


def _summarize(agent, plan, host, final_return, status, compiles_total, compile_s, run_s, eval_s, train_s, steps_run, notes, devices, batch_runs, block_runs):
    num_seeds = len(plan.seeds)
    finite = host.get("finite")
    runs = []
    for r, (point, seed) in enumerate(itertools.product(plan.grid(), plan.seeds)):
        entry = {"grid_index": r // num_seeds, "hparams": point, "seed": int(seed), "final_return": float(final_return[r])}
        ran = host["update_done"][r] if "update_done" in host else np.ones_like(finite[r])
        bad = np.flatnonzero(~finite[r] & ran) if finite is not None else []
        entry["nan"] = bool(len(bad))
        if len(bad):
            entry["first_nan_update"] = int(bad[0])
        runs.append(entry)
    return {
        "status": status,
        "algorithm": plan.algorithm,
        "config": {**_as_dict(agent.config), "num_updates": agent.num_updates},
        "settings": plan.settings,
        "grid": {"sweep": plan.sweep, "points": plan.grid(), "labels": plan.labels()},
        "seeds": plan.seeds,
        "versions": results.package_versions(),
        "devices": results.device_info(devices),
        "batch_runs": batch_runs,
        "block_runs": block_runs,
        "algorithm_module": type(agent).__module__,  # what jaxrl.load imports to rebuild the agent
        # Each policy/batchNNNN holds batch b of every process's share, process after process (see jaxrl.trained).
        "policy": {"dir": POLICY_DIR, "batches": -(-len(runs) // (batch_runs * multihost.count())),
                   "batch_runs": batch_runs * multihost.count(), "processes": multihost.count()},
        "compiles": 1,  # distinct chunk programs: always one, a shorter last chunk included (init and eval never change)
        "compiles_total": compiles_total,
        # Steps and seconds of this call: an interrupted or resumed run reports the rate of what it ran. run_s includes
        # eval_s, the final evaluations; train_steps_per_s leaves them out (what a training-throughput comparison needs).
        "timing": {"compile_s": compile_s, "run_s": run_s, "eval_s": eval_s, "env_steps": steps_run,
                   "env_steps_per_s": steps_run / run_s if run_s else None,
                   "train_steps_per_s": steps_run / train_s if train_s > 0 else None},
        "notes": notes,
        "runs": runs,
    }


def _write_results(out: Path, plan: RunPlan, host, final_return, summary, steps_per_update, status, chunk_updates) -> None:
    num_points, num_seeds = len(plan.grid()), len(plan.seeds)
    curves = {name: v.reshape(num_points, num_seeds, *v.shape[1:]) for name, v in host.items()}
    num_updates = curves["loss"].shape[2] if curves else 0
    env_steps = (np.arange(num_updates) + 1) * steps_per_update
    extra = {"env_steps": env_steps, "final_return": final_return.reshape(num_points, num_seeds)}
    snapshots = [v for name, v in curves.items() if name.startswith("snapshot_")]
    if snapshots:
        extra["snapshot_env_steps"] = np.minimum((np.arange(snapshots[0].shape[2]) + 1) * chunk_updates, num_updates) * steps_per_update
    results.atomic_write_npz(out / "curves.npz", {**curves, **extra})
    results.atomic_write_json(out / "summary.json", summary)
    if not curves:
        return
    labels = plan.labels()
    title = f"{summary['algorithm']} on {summary['config'].get('env_id', '?')}"
    results.plot_curves(out / "curves.png", env_steps, curves["episode_return"], curves["episode_return_valid"], labels, title)
    finals = final_return.reshape(num_points, num_seeds)
    rows = [(label, results.summarize_returns(finals[g])) for g, label in enumerate(labels) if np.isfinite(finals[g]).all()]
    notes = [f"status: {status}; {summary['timing']['env_steps_per_s'] or 0:,.0f} env steps/s; compiles: {summary['compiles']}"]
    notes += [f"note: {n}" for n in summary["notes"]]
    nan_runs = [r for r in summary["runs"] if r["nan"]]
    notes += [f"NaN: grid point {r['grid_index']} ({labels[r['grid_index']]}), seed {r['seed']}, first at update {r['first_nan_update']}" for r in nan_runs]
    results.atomic_write_bytes(out / "report.md", results.report_markdown(title, rows, notes).encode())
