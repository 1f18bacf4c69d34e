"""Throughput of the UED loop: environment steps/s of DR, PLR and ACCEL training at 32 envs x 256 steps per update
(the JaxUED maze setting: conv + recurrent 256 student, 5 epochs, 1 minibatch), and of the bare maze with random
actions.

    python experiments/bench_ued.py                      # 1 seed, 10 updates per timed chunk
    python experiments/bench_ued.py --seeds 4 --methods plr

Prints, per method: compile seconds, then the steps/s of each timed chunk (compiled once, reused) and their best.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp

from jaxrl.devices import default_block_runs, map_in_blocks
from jaxrl.envbench import format_row, measure_throughput
from jaxrl.meta.ued import UEDConfig, make_agent


def bench_method(method: str, seeds: int, updates: int, repeats: int, **settings) -> None:
    agent = make_agent(UEDConfig(method=method, total_timesteps=32 * 256 * updates, **settings))
    hparams = jax.tree.map(lambda x: jnp.broadcast_to(x, (seeds, *jnp.shape(x))), agent.default_hparams())

    def chunk(carry, hp):
        return jax.lax.scan(lambda c, _: agent.update(c, hp), carry, None, updates)

    # As the runner runs them: vmapped in blocks of default_block_runs(seeds) runs (1 below 16 seeds).
    block = default_block_runs(seeds)
    init = jax.jit(map_in_blocks(agent.init, block))
    run = jax.jit(map_in_blocks(chunk, block), donate_argnums=(0,))
    keys = jax.vmap(jax.random.key)(jnp.arange(seeds))
    t0 = time.perf_counter()
    carry = init(keys, hparams)
    compiled = run.lower(carry, hparams).compile()
    compile_s = time.perf_counter() - t0
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        carry, metrics = compiled(carry, hparams)
        jax.block_until_ready(metrics)
        rates.append(seeds * updates * agent.steps_per_update / (time.perf_counter() - t0))
    replay = float(metrics["replay"].mean())
    print(f"{method:6s} seeds={seeds} (blocks of {block}): compile {compile_s:5.1f} s; env steps/s per chunk "
          + ", ".join(f"{r:,.0f}" for r in rates) + f"; best {max(rates):,.0f} (replay fraction in the last chunk {replay:.2f})", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="dr,plr,accel")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--updates", type=int, default=10, help="updates per timed chunk")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--capacity", type=int, default=4000)
    parser.add_argument("--gru-size", type=int, default=256, help="the student's recurrent width (JaxUED: an LSTM of 256)")
    args = parser.parse_args()
    print(f"devices: {jax.devices()}")
    row = measure_throughput("Maze-v0", num_envs=32, num_steps=2048)
    print("raw maze, random actions: " + format_row(row))
    for method in args.methods.split(","):
        # min_fill low enough that PLR and ACCEL replay inside the benchmark (the replay branch includes learning).
        bench_method(method, args.seeds, args.updates, args.repeats, capacity=args.capacity, min_fill=0.0, gru_size=args.gru_size)


if __name__ == "__main__":
    main()
