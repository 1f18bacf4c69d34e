"""Raw environment throughput: random actions, jit + vmap + scan, one compile per environment."""

from __future__ import annotations

import time
from dataclasses import dataclass

import jax

from jaxrl import envs

# One representative per family; the demo and the benchmark script both use this list.
DEMO_ENV_IDS = ("CartPole-v1", "Acrobot-v1", "Breakout-MinAtar", "Catch-bsuite", "MetaMaze-misc", "Maze-v0", "brax/hopper")


@dataclass(frozen=True)
class Throughput:
    env_id: str
    num_envs: int
    num_steps: int
    compile_s: float
    steps_per_s: float


def measure_throughput(env_id: str, num_envs: int = 256, num_steps: int = 1000, seed: int = 0, **env_kwargs) -> Throughput:
    """Steps `num_envs` copies of `env_id` for `num_steps` steps with uniformly random actions.

    Returns compile time and environment steps per second (num_envs * num_steps / run time of a second call).
    """
    env, params = envs.make(env_id, **env_kwargs)
    vec = envs.VecEnv(env, num_envs)
    action_space = env.action_space(params)

    def rollout(key):
        key, reset_key = jax.random.split(key)
        obs, state = vec.reset(reset_key, params)

        def body(carry, step_key):
            state, total = carry
            act_key, env_key = jax.random.split(step_key)
            actions = jax.vmap(action_space.sample)(jax.random.split(act_key, num_envs))
            _, state, reward, _, _, _ = vec.step(env_key, state, actions, params)
            return (state, total + reward.sum()), None

        (_, total), _ = jax.lax.scan(body, (state, 0.0), jax.random.split(key, num_steps))
        return total

    start = time.perf_counter()
    compiled = jax.jit(rollout).lower(jax.random.key(seed)).compile()
    compile_s = time.perf_counter() - start
    compiled(jax.random.key(seed)).block_until_ready()  # warm-up: first call also allocates
    start = time.perf_counter()
    compiled(jax.random.key(seed + 1)).block_until_ready()
    run_s = time.perf_counter() - start
    return Throughput(env_id, num_envs, num_steps, compile_s, num_envs * num_steps / run_s)


def format_row(t: Throughput) -> str:
    return f"{t.env_id:<22} {t.num_envs:>6} envs x {t.num_steps:>5} steps  compile {t.compile_s:6.1f} s  {t.steps_per_s:>12,.0f} steps/s"
