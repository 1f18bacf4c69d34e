"""Runner overhead and scale of PPO (CartPole-v1 by default): env steps/s through the chunked runner for several
numbers of seeds, the same work as one fully jitted call, and the peak memory of this process so far (seed counts
run in increasing order, so each row's peak is its own or an earlier one's). Prints its figures; asserts nothing.

    python experiments/bench_runner.py --seeds 1,32,256,1024 --steps 500000 --compare-seeds 32
    python experiments/bench_runner.py --env Breakout-MinAtar --set num_envs=64 --set num_steps=128 \\
        --set num_minibatches=8 --set activation=relu --steps 1000000 --seeds 1,32,256
"""

import argparse
import resource
import tempfile
import time

from jaxrl.devices import use_all_cpu_cores

use_all_cpu_cores()

import jax  # noqa: E402
import numpy as np  # noqa: E402

from jaxrl.agents.ppo import PPOConfig, PPOHparams, make_agent  # noqa: E402
from jaxrl.config import build, parse_assignment  # noqa: E402
from jaxrl.devices import shard_runs  # noqa: E402
from jaxrl.runner import RunPlan, run  # noqa: E402


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="1,32,256,1024")
    parser.add_argument("--steps", type=int, default=500_000, help="env steps per seed")
    parser.add_argument("--chunk-updates", type=int, default=50)
    parser.add_argument("--compare-seeds", type=int, default=32, help="seeds for the runner-vs-one-call comparison (0: skip)")
    parser.add_argument("--block-runs", type=int, default=None, help="runs vmapped together (default: the runner's)")
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a PPO setting")
    args = parser.parse_args()
    settings = dict(parse_assignment(text) for text in args.set)
    config, overrides = build(PPOConfig, PPOHparams, {**settings, "env_id": args.env, "total_timesteps": args.steps})
    agent = make_agent(config)
    steps = agent.num_updates * agent.steps_per_update
    print(f"{args.env} PPO, {steps:,} steps per seed, {jax.device_count()} {jax.devices()[0].platform} device(s)")

    if args.compare_seeds:
        n = args.compare_seeds
        keys = shard_runs(jax.vmap(jax.random.key)(np.arange(n)), n)
        fn = jax.jit(jax.vmap(agent.train, in_axes=(0, None))).lower(keys, agent.default_hparams()).compile()
        start = time.perf_counter()
        jax.block_until_ready(fn(keys, agent.default_hparams()))
        one_call = time.perf_counter() - start
        with tempfile.TemporaryDirectory() as out:
            summary = run(agent, RunPlan("ppo", {}, {}, list(range(n))), overrides, out, chunk_updates=args.chunk_updates, progress=False)
        chunked = summary["timing"]["run_s"]
        print(f"{n} seeds: one jitted call {one_call:.1f} s, runner ({summary['notes'] or 'chunks of ' + str(args.chunk_updates)}) "
              f"{chunked:.1f} s: overhead {100 * (chunked / one_call - 1):+.1f}%", flush=True)

    for n in map(int, args.seeds.split(",")):
        with tempfile.TemporaryDirectory() as out:
            summary = run(agent, RunPlan("ppo", {}, {}, list(range(n))), overrides, out, chunk_updates=args.chunk_updates,
                          block_runs=args.block_runs, progress=False)
        t = summary["timing"]
        finals = np.array([r["final_return"] for r in summary["runs"]])
        print(f"seeds {n:>5}: {t['env_steps_per_s']:>10,.0f} env steps/s ({t['train_steps_per_s']:,.0f} in training, without the "
              f"final evaluation's {t['eval_s']:.1f} s)  compile {t['compile_s']:5.1f} s  run {t['run_s']:7.1f} s  "
              f"batches of {summary['batch_runs']}, blocks of {summary['block_runs']}  final return mean {finals.mean():6.1f}  peak RSS {peak_rss_gb():.2f} GB", flush=True)


if __name__ == "__main__":
    main()
