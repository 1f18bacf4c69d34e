"""Shared helpers. Compiled functions are cached per (environment, length) so tests share compiles."""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import tempfile

# Four CPU devices for every test, so sharding over the run axis is exercised on a CPU-only machine.
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4").strip()

# One persistent compilation cache for the session, inherited by the CLI subprocesses the tests start: an
# interrupted run, its resumption and its uninterrupted twin compile the same programs, and XLA then builds each
# once. It starts empty, so no test sees a program compiled by an older version of the code.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="jaxrl-tests-xla-")
    atexit.register(shutil.rmtree, os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)
    # Tests compile many small programs more than once (the same tiny config in several tests); keep those too.
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")

import jax
import jax.numpy as jnp
import pytest

from jaxrl import envs


def pytest_xdist_auto_num_workers(config) -> int:
    """`-n auto` (pyproject's addopts): one worker per core this process may use, by affinity and by a cgroup CPU
    quota (a container often sees the host's cores), and at most one per 4 GB of memory (a worker's peak is ~2 GB)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        quota, period = open("/sys/fs/cgroup/cpu.max").read().split()
        if quota != "max":
            cores = min(cores, max(1, int(quota) // int(period)))
    except (OSError, ValueError):
        pass
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        limit = open("/sys/fs/cgroup/memory.max").read().strip() if os.path.exists("/sys/fs/cgroup/memory.max") else "max"
        memory = memory if limit == "max" else min(memory, int(limit))
        cores = min(cores, max(1, memory // (4 * 2**30)))
    except (ValueError, OSError, AttributeError):
        pass
    return max(1, cores)


def random_rollout(env, num_steps: int):
    """A pure function (key, params) -> per-step record of a random-action rollout of one environment."""

    def rollout(key, params):
        reset_key, key = jax.random.split(key)
        obs, state = env.reset(reset_key, params)

        def body(carry, step_key):
            obs, state = carry
            act_key, env_key = jax.random.split(step_key)
            action = env.action_space(params).sample(act_key)
            next_obs, state, reward, terminated, truncated, info = env.step(env_key, state, action, params)
            record = {
                "obs": obs,
                "action": action,
                "reward": reward,
                "terminated": terminated,
                "truncated": truncated,
                "next_obs": next_obs,
                "final_obs": info["final_observation"],
            }
            return (next_obs, state), record

        _, records = jax.lax.scan(body, (obs, state), jax.random.split(key, num_steps))
        return records

    return rollout


def scripted_rollout(env, params, actions: jax.Array, keys: jax.Array, state_fields: dict[str, str]) -> dict:
    """`env` from a reset (key 0) through `actions` (T, ...) with step keys `keys` (T,): per-step records of obs,
    next_obs, reward, terminated, truncated, final_obs, and the state's fields named by `state_fields` (record name
    -> attribute). Under a VecEnv every record has the batch axis after the time axis."""
    obs, state = env.reset(jax.random.key(0), params)

    def body(carry, xs):
        obs, state = carry
        key, action = xs
        next_obs, state, reward, terminated, truncated, info = env.step(key, state, action, params)
        record = dict(obs=obs, next_obs=next_obs, reward=reward, terminated=terminated, truncated=truncated,
                      final_obs=info["final_observation"], **{name: getattr(state, attr) for name, attr in state_fields.items()})
        return (next_obs, state), record

    return jax.lax.scan(body, (obs, state), (keys, actions))[1]


@functools.lru_cache(maxsize=None)
def compiled_rollouts(env_id: str, num_steps: int):
    """(env, default params, jitted single rollout, jitted rollout vmapped over keys) for `env_id`."""
    env, params = envs.make(env_id)
    rollout = random_rollout(env, num_steps)
    return env, params, jax.jit(rollout), jax.jit(jax.vmap(rollout, in_axes=(0, None)))


def with_time_limit(params, limit: int):
    return params.replace(max_steps_in_episode=jnp.asarray(limit, jnp.int32))


@pytest.fixture
def rollouts():
    return compiled_rollouts


def interrupt_after_first_chunk(monkeypatch) -> None:
    """SIGTERM the process when the runner writes its first chunk's metrics: it checkpoints and stops (an
    interrupted run without a subprocess)."""
    import os
    import signal

    from jaxrl import results

    original = results.atomic_write_npz
    sent = {"done": False}

    def write(path, arrays):
        original(path, arrays)
        if "chunk" in str(path) and not sent["done"]:
            sent["done"] = True
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(results, "atomic_write_npz", write)
