"""The `jaxrl` command. Bad input ends in one line on stderr and exit code 2, never a traceback."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _cmd_envs(args: argparse.Namespace) -> int:
    from jaxrl import envs

    ids = envs.registered_ids()
    if args.family:
        families = sorted({envs.family_of(i) for i in ids})
        matching = [f for f in families if f == args.family or f.startswith(args.family + "/") or f.endswith("/" + args.family)]
        if not matching:
            raise envs.InvalidChoiceError(f"unknown family {args.family!r}; choices: {', '.join(families)}")
        ids = [i for i in ids if envs.family_of(i) in matching]
    for env_id in ids:
        print(f"{env_id:<30} {envs.family_of(env_id)}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from jaxrl import envs
    from jaxrl.envbench import DEMO_ENV_IDS, format_row, measure_throughput

    env_ids = args.envs.split(",") if args.envs else list(DEMO_ENV_IDS)
    for env_id in env_ids:  # validate everything before spending minutes compiling
        if env_id not in envs.registered_ids():
            envs.make(env_id)  # raises the one-line error with the closest ids
    print(f"Random-action throughput, jit + vmap + scan, {args.num_envs} envs x {args.steps} steps each:")
    for env_id in env_ids:
        print(format_row(measure_throughput(env_id, num_envs=args.num_envs, num_steps=args.steps)), flush=True)
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    import time

    import jax
    import numpy as np

    from jaxrl.agents import ALGORITHMS
    from jaxrl.config import apply_overrides, build, load_yaml, parse_assignment
    from jaxrl.envs.errors import InvalidChoiceError, invalid_choice

    if args.algo not in ALGORITHMS:
        raise invalid_choice("algorithm", args.algo, ALGORITHMS)
    algo = ALGORITHMS[args.algo]
    settings = load_yaml(args.config) if args.config else {}
    if settings.get("algorithm", args.algo) != args.algo:
        raise InvalidChoiceError(f"config file {args.config!r} is for algorithm {settings['algorithm']!r}, not {args.algo!r}")
    flags = {"env_id": args.env, "total_timesteps": args.steps, "objective": args.objective, "seeds": args.seeds}
    settings.update({k: v for k, v in flags.items() if v is not None})
    settings.update(parse_assignment(text) for text in args.set)
    seeds = settings.get("seeds", 1)
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise InvalidChoiceError(f"seeds must be a positive integer, got {seeds!r}")
    config, overrides = build(algo.Config, algo.Hparams, settings)
    agent = algo.make_agent(config)
    hparams = apply_overrides(agent.default_hparams(), overrides)

    from jaxrl.devices import run_devices, shard_runs

    keys = shard_runs(jax.vmap(jax.random.key)(np.arange(args.seed, args.seed + seeds)), seeds)
    print(
        f"{args.algo} on {config.env_id}: {seeds} seed(s) x {agent.num_updates * config.batch_size:,} steps, "
        f"objective {config.objective}, on {len(run_devices(seeds))} {jax.devices()[0].platform} device(s)",
        flush=True,
    )
    start = time.perf_counter()
    train = jax.jit(jax.vmap(agent.train, in_axes=(0, None))).lower(keys, hparams).compile()
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    _, metrics = train(keys, hparams)
    final = np.asarray(jax.block_until_ready(metrics["final_return"]))
    run_s = time.perf_counter() - start
    steps = seeds * agent.num_updates * config.batch_size
    print(f"compile {compile_s:.1f} s, run {run_s:.1f} s, {steps / run_s:,.0f} env steps/s")
    print(f"final return over {seeds} seed(s) ({config.eval_episodes} episodes each): mean {final.mean():.1f}, "
          f"std {final.std():.1f}, min {final.min():.1f}, max {final.max():.1f}")
    if seeds <= 16:
        print("per seed: " + ", ".join(f"{r:.1f}" for r in final))
    return 0


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jaxrl", description="End-to-end accelerated RL and meta-RL in JAX.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("envs", help="list every registered environment id and its family")
    p.add_argument("--family", help="only this family (e.g. brax, minatar, gymnax/bsuite)")
    p.set_defaults(func=_cmd_envs)

    p = sub.add_parser("demo", help="step every environment family under jit + vmap and print throughput")
    p.add_argument("--envs", help=f"comma-separated ids (default: a sample of every family)")
    p.add_argument("--num-envs", type=_positive_int, default=256)
    p.add_argument("--steps", type=_positive_int, default=1000, help="steps per environment")
    p.set_defaults(func=_cmd_demo)
    p = sub.add_parser("train", help="train an agent over one or more seeds (vmapped, one compile)")
    p.add_argument("algo", help="algorithm (ppo)")
    p.add_argument("--env", help="environment id (see `jaxrl envs`)")
    p.add_argument("--seeds", type=_positive_int, help="number of seeds, vmapped (default 1)")
    p.add_argument("--seed", type=int, default=0, help="first seed; seed i trains with jax.random.key(i)")
    p.add_argument("--steps", type=_positive_int, help="total environment steps per seed")
    p.add_argument("--objective", help="objective name (ppo_clip, a2c, mdpo, dpo, lpo, ta_lpo) or a saved .npz")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any setting or hyperparameter")
    p.add_argument("--config", help="YAML file of settings (flags override it)")
    p.set_defaults(func=_cmd_train)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from jaxrl.devices import use_all_cpu_cores

    use_all_cpu_cores()  # before anything starts JAX
    parser = build_parser()
    args = parser.parse_args(argv)  # argparse itself exits 2 with one line on bad flags
    from jaxrl.envs.errors import InvalidChoiceError

    try:
        return args.func(args)
    except InvalidChoiceError as err:
        print(f"jaxrl: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
