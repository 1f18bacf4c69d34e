"""Speed of `jaxrl meta lpg`: seconds per generation and the LPG agents' env steps/s inside the meta loop, against
the same P agents trained plainly (the same vmapped program on the same tasks, called on its own), so the figure is
what the loop adds: ES ask/tell, the curriculum, host transfers, the antagonist on new levels (groove, plr).

    python experiments/bench_meta_lpg.py --curriculum uniform --population 16 --lifetime 50 --generations 5
"""

from __future__ import annotations

import argparse
import time

import jax

from jaxrl.meta.lpg import MetaLPG, MetaLPGConfig


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--curriculum", default="uniform")
    p.add_argument("--population", type=int, default=16)
    p.add_argument("--lifetime", type=int, default=50)
    p.add_argument("--generations", type=int, default=5)
    p.add_argument("--num-envs", type=int, default=16)
    p.add_argument("--gru-width", type=int, default=64)
    p.add_argument("--eval-episodes", type=int, default=16)
    args = p.parse_args()
    config = MetaLPGConfig(curriculum=args.curriculum, population=args.population, lifetime=args.lifetime, eval_episodes=args.eval_episodes,
                           agent=(("num_envs", args.num_envs), ("gru_width", args.gru_width)))
    meta = MetaLPG(config)
    steps = args.population * meta.agent.num_updates * meta.agent.steps_per_update
    state = meta._init_state(jax.random.key(0))
    state, _ = meta.generation(state, jax.random.key(1), 0)  # compiles everything
    times = []
    for g in range(1, args.generations + 1):
        t0 = time.perf_counter()
        state, entry = meta.generation(state, jax.random.key(1), g)
        times.append(time.perf_counter() - t0)
    loop = min(times)

    rules, _ = meta._ask(jax.random.key(2), state["es"])
    tasks = meta._propose(state["curriculum"], jax.random.key(3)).levels
    keys = jax.random.split(jax.random.key(4), config.num_pairs)
    meta.protagonist_returns(rules, tasks, keys)
    plain = []
    for _ in range(args.generations):
        t0 = time.perf_counter()
        meta.protagonist_returns(rules, tasks, keys)
        plain.append(time.perf_counter() - t0)
    alone = min(plain)
    print(f"{args.curriculum}, population {args.population}, lifetime {args.lifetime} x {meta.agent.steps_per_update} steps "
          f"({steps:,} agent env steps a generation, evaluation episodes not counted)")
    print(f"meta loop:   {loop:.2f} s/generation (best of {args.generations}; all: {', '.join(f'{t:.2f}' for t in times)}), {steps / loop:,.0f} agent env steps/s")
    print(f"plain train: {alone:.2f} s for the same agents, {steps / alone:,.0f} agent env steps/s; the loop runs at {alone / loop:.1%} of it")


if __name__ == "__main__":
    main()
