"""PPO speed on CartPole-v1 (the shipped configuration): compile time, run time, env steps/s and final returns
for several numbers of vmapped seeds. Prints its figures; asserts nothing.

    python experiments/bench_ppo.py --seeds 1,32,128
"""

import argparse
import time

from jaxrl.devices import use_all_cpu_cores

use_all_cpu_cores()  # before JAX starts: one device per core, seeds sharded across them

import jax  # noqa: E402
import numpy as np  # noqa: E402

from jaxrl.agents.ppo import PPOConfig, PPOHparams, make_agent  # noqa: E402
from jaxrl.config import apply_overrides, build, load_yaml  # noqa: E402
from jaxrl.devices import run_devices, shard_runs  # noqa: E402
from machine_speed import product_gflops  # noqa: E402  (experiments/machine_speed.py)


def machine_speed() -> float:
    """GFLOP/s of (128, 64) @ (64, 64) products, the shape of the learning step's main product, printed after each row
    (never before the first compile, whose tracing it would warm up)."""
    return product_gflops(128, 64, 64, repeats=20_000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="1,32,128")
    parser.add_argument("--config", default="experiments/configs/ppo_cartpole.yaml")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of the 1-seed case (median reported); more seeds run once")
    args = parser.parse_args()
    config, overrides = build(PPOConfig, PPOHparams, load_yaml(args.config))
    agent = make_agent(config)
    hparams = apply_overrides(agent.default_hparams(), overrides)
    steps_per_seed = agent.num_updates * agent.steps_per_update
    print(f"{config.env_id}, {steps_per_seed:,} steps per seed, {jax.device_count()} {jax.devices()[0].platform} device(s)")
    for n in map(int, args.seeds.split(",")):
        keys = shard_runs(jax.vmap(jax.random.key)(np.arange(n)), n)
        fn = jax.jit(agent.train) if n == 1 else jax.jit(jax.vmap(agent.train, in_axes=(0, None)))
        call_keys = keys[0] if n == 1 else keys
        start = time.perf_counter()
        lowered = fn.lower(call_keys, hparams)
        lower_s = time.perf_counter() - start
        compiled = lowered.compile()
        compile_s = time.perf_counter() - start
        run_times = []
        for _ in range(args.repeats if n == 1 else 1):
            start = time.perf_counter()
            _, metrics = compiled(call_keys, hparams)
            final = np.atleast_1d(np.asarray(jax.block_until_ready(metrics["final_return"])))
            run_times.append(time.perf_counter() - start)
        run_s = float(np.median(run_times))
        print(
            f"seeds {n:>4} on {len(run_devices(n))} device(s): compile {compile_s:5.1f} s (trace+lower {lower_s:.1f})  "
            f"run {run_s:6.2f} s (median of {len(run_times)}, min {min(run_times):.2f})  {n * steps_per_seed / run_s:>10,.0f} steps/s  "
            f"final return mean {final.mean():6.1f}  min {final.min():6.1f}  >=475: {np.mean(final >= 475):.0%}  "
            f"machine speed after: {machine_speed():.0f} GFLOP/s",
            flush=True,
        )


if __name__ == "__main__":
    main()
