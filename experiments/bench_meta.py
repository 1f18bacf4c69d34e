"""Speed of the meta loop: seconds per generation of `lpo` discovery (population x seeds x inner steps on
CartPole-v1) and its inner env steps/s against the same number of plain vmapped `train` runs of the same agent
(one jitted call, sharded the same way). Prints its figures; asserts nothing.

    python experiments/bench_meta.py --population 32 --seeds 2 --inner-steps 100000 --generations 3
"""

import argparse
import tempfile
import time
from pathlib import Path

from jaxrl.devices import use_all_cpu_cores

use_all_cpu_cores()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from jaxrl.devices import run_sharding  # noqa: E402
from jaxrl.meta.discover import discover  # noqa: E402
from jaxrl.meta.tasks import inner  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--population", type=int, default=32)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--inner-steps", type=int, default=100_000)
    parser.add_argument("--generations", type=int, default=3)
    args = parser.parse_args()
    runs = args.population * args.seeds
    item = inner("ppo", {"env_id": "CartPole-v1", "total_timesteps": args.inner_steps, "objective": "lpo", "objective_options": {"ppo_init": True}})
    agent = item.agent
    steps = runs * agent.num_updates * agent.steps_per_update
    print(f"lpo (PPO init) on CartPole-v1: {args.population} members x {args.seeds} seeds x {agent.num_updates * agent.steps_per_update:,} steps, "
          f"{jax.device_count()} {jax.devices()[0].platform} device(s)")

    # Plain: the same number of vmapped train runs, one jitted call, sharded over the same devices.
    sharding = run_sharding(runs)
    keys = jax.device_put(jax.random.split(jax.random.key(0), runs), sharding)
    hparams = jax.device_put(jax.tree.map(lambda x: jnp.broadcast_to(x, (runs, *jnp.shape(x))), item.hparams), sharding)
    plain = jax.jit(lambda k, h: jax.vmap(agent.train)(k, h)[1]["final_return"], in_shardings=sharding, out_shardings=sharding)
    t0 = time.perf_counter()
    compiled = plain.lower(keys, hparams).compile()
    compile_s = time.perf_counter() - t0
    times = []
    for _ in range(2):
        t0 = time.perf_counter()
        compiled(keys, hparams).block_until_ready()
        times.append(time.perf_counter() - t0)
    plain_s = min(times)
    print(f"plain vmapped train: compile {compile_s:.1f} s, {plain_s:.1f} s per call, {steps / plain_s:,.0f} env steps/s")

    with tempfile.TemporaryDirectory() as tmp:
        request = {
            "kind": "discover", "objective": "lpo", "init": "ppo", "envs": ["CartPole-v1"], "generations": args.generations,
            "population": args.population, "seeds": args.seeds, "inner_steps": args.inner_steps, "es": "open_es", "sigma": 0.03,
            "lr": 0.03, "seed": 0, "settings": {}, "baseline_seeds": 8, "checkpoint_every": 10, "devices": None,
        }
        summary = discover(request, Path(tmp), progress=False)
    per_gen = [g["time_s"] for g in summary["generations"]]
    inner_s = [g["inner_s"] for g in summary["generations"]]
    best = min(per_gen)
    print(f"meta generation: {', '.join(f'{t:.2f}' for t in per_gen)} s (compile {summary['timing']['compile_s']:.1f} s, excluded); "
          f"best {best:.2f} s/generation = {steps / best:,.0f} inner env steps/s = {plain_s / best:.1%} of plain")
    print(f"  of which the inner runs (PopulationEvaluator calls): {', '.join(f'{t:.2f}' for t in inner_s)} s; the rest (ES ask/tell, "
          f"fitness, candidate pool, checkpoints, host): {', '.join(f'{a - b:.2f}' for a, b in zip(per_gen, inner_s))} s")

if __name__ == "__main__":
    main()
