"""How well the A2C antagonist of `jaxrl meta lpg` learns random grid-world levels in a lifetime, per learning rate:
prints the mean final return (and the untrained policy's) over the same random tasks, so the antagonist's default
learning rate is a measured choice. Algorithmic regret is only as informative as the antagonist is good.

    python experiments/tune_lpg_antagonist.py --lifetime 100 --tasks 16 --lrs 0.003,0.01,0.03,0.1
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np

from jaxrl.meta.lpg import MetaLPG, MetaLPGConfig


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--lifetime", type=int, default=100)
    p.add_argument("--tasks", type=int, default=16)
    p.add_argument("--lrs", default="0.003,0.01,0.03,0.1")
    p.add_argument("--num-envs", type=int, default=16)
    args = p.parse_args()
    for lr in [0.0] + [float(x) for x in args.lrs.split(",")]:
        config = MetaLPGConfig(population=2 * args.tasks, lifetime=args.lifetime, antagonist_lr=lr or 1e-12, eval_episodes=32,
                               agent=(("num_envs", args.num_envs),))
        meta = MetaLPG(config)
        tasks = jax.vmap(meta.new_task)(jax.random.split(jax.random.key(0), args.tasks))
        t0 = time.perf_counter()
        returns, pvl = meta.antagonist_stats(tasks, jax.random.split(jax.random.key(1), args.tasks))
        label = "untrained (lr ~0)" if lr == 0.0 else f"lr {lr:g}"
        print(f"{label:>18}: mean return {np.mean(returns):.3f} (median {np.median(returns):.3f}), mean PVL {np.mean(pvl):.4f}, "
              f"{time.perf_counter() - t0:.1f} s with compile", flush=True)


if __name__ == "__main__":
    main()
