"""Where the compile time of a run goes: the environment's own pieces (reset, one step without and with the
auto-reset, vmapped over the run's environments) and each program the runner compiles (init, a chunk of updates,
the evaluation), lowered and compiled one by one, then all of them as `jaxrl train` compiles them. Prints seconds
and the size of each program (HLO instructions); asserts nothing.

    python experiments/bench_compile.py --config experiments/configs/brax_hopper.yaml --steps 50000 --seeds 2
"""

from __future__ import annotations

import argparse
import functools
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxrl import runner
from jaxrl.agents import ALGORITHMS
from jaxrl.config import apply_overrides, build, load_yaml
from jaxrl.run_axis import RunAxis


def timed_compile(fn, *args) -> tuple[float, float, int]:
    """(lowering seconds, compiling seconds, HLO instructions) of jax.jit(fn) at args."""
    t0 = time.perf_counter()
    lowered = jax.jit(fn).lower(*args)
    t1 = time.perf_counter()
    compiled = lowered.compile()
    t2 = time.perf_counter()
    text = compiled.as_text() or ""
    return t1 - t0, t2 - t1, sum(1 for line in text.splitlines() if " = " in line)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="experiments/configs/brax_hopper.yaml")
    p.add_argument("--steps", type=int, default=50_000)
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--chunk-updates", type=int, default=50)
    args = p.parse_args()
    raw = load_yaml(args.config)
    algorithm = raw.pop("algorithm", "ppo")
    module = ALGORITHMS[algorithm]
    config, overrides = build(module.Config, module.Hparams, {**raw, "total_timesteps": args.steps})
    agent = module.make_agent(config)
    hparams = apply_overrides(agent.default_hparams(), overrides)
    print(f"{algorithm} on {config.env_id}: {args.seeds} runs, {agent.num_updates} updates of {agent.steps_per_update} steps, "
          f"jax {jax.__version__}, {jax.devices()[0].platform}")

    env, env_params = agent.env, agent.default_env_params
    n = config.num_envs
    keys = jax.random.split(jax.random.key(0), n)
    _, state = jax.vmap(env.reset, in_axes=(0, None))(keys, env_params)
    action = jnp.zeros((n, *env.action_space(env_params).shape))
    rows = [
        ("env reset (vmapped)", lambda k: jax.vmap(env.reset, in_axes=(0, None))(k, env_params), (keys,)),
        ("env step_env (vmapped)", lambda k, s, a: jax.vmap(env.step_env, in_axes=(0, 0, 0, None))(k, s, a, env_params), (keys, state, action)),
        ("env step + auto-reset (vmapped)", lambda k, s, a: jax.vmap(env.step, in_axes=(0, 0, 0, None))(k, s, a, env_params), (keys, state, action)),
    ]
    print(f"{'program':<40} {'lower s':>8} {'compile s':>10} {'HLO instr':>10}")
    for name, fn, fargs in rows:
        lower_s, compile_s, size = timed_compile(fn, *fargs)
        print(f"{name:<40} {lower_s:>8.1f} {compile_s:>10.1f} {size:>10,}", flush=True)

    # The runner's programs, each over one block of runs (vmapped), as runner.run builds them.
    axis = RunAxis.plan(agent, hparams, args.seeds, max_devices=1)
    run_keys = jax.vmap(jax.random.key)(np.arange(args.seeds))
    run_hparams = jax.tree.map(lambda x: jnp.broadcast_to(x, (args.seeds, *jnp.shape(x))), hparams)
    k = runner.chunk_size(agent.num_updates, args.chunk_updates)
    carry = jax.eval_shape(jax.vmap(agent.init), run_keys, run_hparams)
    first = jnp.zeros(args.seeds, jnp.int32)  # each run's index of the chunk's first update
    programs = [
        ("init", jax.vmap(agent.init), (run_keys, run_hparams)),
        (f"chunk of {k} updates", jax.vmap(functools.partial(runner.chunk_program(agent), length=k)), (carry, run_hparams, first)),
        ("one update", jax.vmap(agent.update), (carry, run_hparams)),
        ("evaluate", jax.vmap(agent.evaluate), (carry, run_keys)),
    ]
    total = 0.0
    for name, fn, fargs in programs:
        lower_s, compile_s, size = timed_compile(fn, *fargs)
        total += (lower_s + compile_s) if name != "one update" else 0.0
        print(f"{name:<40} {lower_s:>8.1f} {compile_s:>10.1f} {size:>10,}", flush=True)
    print(f"{'init + chunk + evaluate, one by one':<40} {total:>19.1f}")
    print(f"(block of {axis.block_runs} runs; `jaxrl train` compiles these programs through RunAxis: see its 'compiled in' line)")


if __name__ == "__main__":
    main()
