"""Off-policy and value-based agents next to PPO on the same environment: compile time, env steps/s and final
return (mean over seeds) of each shipped config, at the config's budget or --steps. Prints its figures; asserts
nothing.

    python experiments/bench_offpolicy.py                          # CartPole: ppo, pqn, dqn; Pendulum: ppo, sac
    python experiments/bench_offpolicy.py --seeds 1 --steps 100000
    python experiments/bench_offpolicy.py --only pqn_cartpole,ppo_cartpole

PQN has no buffer: per environment step it does what PPO does (a forward pass acting, then epochs of minibatch
gradient steps over the rollout), so its steps/s should be of the order of PPO's on the same batch. PQN's config
batches 32 envs x 64 steps with 256-unit layers, PPO's 4 x 128 with 64-unit ones; the row pqn_cartpole_ppo_batch runs PQN
on PPO's batch, epochs and layer widths.
"""

import argparse
import time

from jaxrl.devices import use_all_cpu_cores

use_all_cpu_cores()  # before JAX starts

import jax  # noqa: E402
import numpy as np  # noqa: E402

from jaxrl.agents import ALGORITHMS  # noqa: E402
from jaxrl.config import apply_overrides, build, load_yaml  # noqa: E402
from jaxrl.devices import run_devices, shard_runs  # noqa: E402

RUNS = {  # name -> (config file, extra settings)
    "ppo_cartpole": ("experiments/configs/ppo_cartpole.yaml", {}),
    "pqn_cartpole": ("experiments/configs/pqn_cartpole.yaml", {}),
    "pqn_cartpole_ppo_batch": ("experiments/configs/pqn_cartpole.yaml", {"num_envs": 4, "num_steps": 128, "num_minibatches": 4, "hidden": (64, 64)}),
    "dqn_cartpole": ("experiments/configs/dqn_cartpole.yaml", {}),
    "ppo_pendulum": ("experiments/configs/pendulum.yaml", {}),
    "sac_pendulum": ("experiments/configs/sac_pendulum.yaml", {}),
}


def measure(name: str, seeds: int, steps: int | None) -> None:
    path, extra = RUNS[name]
    settings = {**load_yaml(path), **extra}
    algorithm = ALGORITHMS[settings.pop("algorithm")]
    for key in ("seeds", "sweep", "out"):
        settings.pop(key, None)
    if steps:
        settings["total_timesteps"] = steps
    config, overrides = build(algorithm.Config, algorithm.Hparams, settings)
    agent = algorithm.make_agent(config)
    hparams = apply_overrides(agent.default_hparams(), overrides)
    keys = shard_runs(jax.vmap(jax.random.key)(np.arange(seeds)), seeds)
    fn = jax.jit(jax.vmap(agent.train, in_axes=(0, None)))
    start = time.perf_counter()
    compiled = fn.lower(keys, hparams).compile()
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    _, metrics = compiled(keys, hparams)
    final = np.asarray(jax.block_until_ready(metrics["final_return"]))
    run_s = time.perf_counter() - start
    total = seeds * agent.num_updates * agent.steps_per_update
    print(f"{name:<24} {config.env_id:<12} {agent.num_updates * agent.steps_per_update:>9,} steps x {seeds} seed(s) on "
          f"{len(run_devices(seeds))} device(s): compile {compile_s:5.1f} s, run {run_s:7.1f} s, {total / run_s:>9,.0f} env steps/s, "
          f"final return mean {final.mean():8.1f} (min {final.min():8.1f})", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=None, help="environment steps per seed (default: each config's)")
    parser.add_argument("--only", default=",".join(RUNS), help=f"comma-separated, from {', '.join(RUNS)}")
    args = parser.parse_args()
    print(f"{jax.device_count()} {jax.devices()[0].platform} device(s)")
    for name in args.only.split(","):
        measure(name, args.seeds, args.steps)


if __name__ == "__main__":
    main()
