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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
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
