"""`jaxrl ued --method dr|plr|accel --env maze --updates N --seeds K --out DIR`: registered on the `jaxrl` command
through the `jaxrl.commands` entry point. The run itself is `jaxrl train`'s (the runner: progress, checkpoints,
resume, sharding) with the UED agent (jaxrl.meta.ued); the held-out statistics and figures are added after it
(jaxrl.meta.ued_report)."""

from __future__ import annotations

import argparse
from typing import Any

ENV_ALIASES = {"maze": "Maze-v0"}


def register(sub: argparse._SubParsersAction, common: Any) -> None:
    p = sub.add_parser(
        "ued", help="unsupervised environment design: a maze student on DR / PLR / ACCEL levels",
        description="Train a PPO student (conv + GRU) on levels chosen by domain randomisation (dr), Prioritized Level "
                    "Replay (plr, robust: gradients on replayed levels only) or ACCEL (accel), seeds vmapped; evaluate "
                    "it on the held-out mazes. Any setting of jaxrl.meta.ued.UEDConfig / UEDHparams can be given with --set.",
    )
    from jaxrl.cli import with_settings_help

    with_settings_help(p, lambda: {"ued": __import__("jaxrl.meta.ued", fromlist=["ued"])})
    p.add_argument("--method", help="dr, plr or accel (default plr)")
    p.add_argument("--env", help="maze (Maze-v0, the default)")
    p.add_argument("--score", help="level score: maxmc (default), pvl or learnability")
    p.add_argument("--updates", type=common.positive_int, help="student updates per run (each num_envs x num_steps steps; default 250)")
    p.add_argument("--seeds", type=common.positive_int, help="number of seeds, vmapped (default 1)")
    p.add_argument("--seed", type=int, default=0, help="first seed")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any setting or hyperparameter")
    p.add_argument("--sweep", action="append", default=[], metavar="KEY=V1,V2,...", help="a grid axis over hyperparameters")
    p.add_argument("--config", help="YAML file of settings (flags override it)")
    common.run_flags(p)
    p.set_defaults(func=_cmd_ued, chunk_updates=10, steps=None, objective=None)


def _cmd_ued(args: argparse.Namespace) -> int:
    from jaxrl.cli import _cmd_train
    from jaxrl.config import load_yaml, parse_assignment
    from jaxrl.envs.errors import InvalidChoiceError
    from jaxrl.meta import ued, ued_report

    settings: dict[str, Any] = load_yaml(args.config) if args.config else {}
    if settings.get("algorithm", "ued") != "ued":
        raise InvalidChoiceError(f"the config is for algorithm {settings['algorithm']!r}, not 'ued'")
    settings.pop("algorithm", None)
    for key in ("method", "score"):
        if getattr(args, key):
            settings[key] = getattr(args, key)
    if args.env:
        settings["env_id"] = ENV_ALIASES.get(args.env, args.env)
        args.env = None  # consumed: jaxrl train would read it as an environment id
    if args.updates and args.resume:
        raise InvalidChoiceError("--updates cannot change when resuming: the run keeps the length it started with")
    if args.updates:
        given = {**settings, **dict(parse_assignment(text) for text in args.set)}
        num_envs = given.get("num_envs", ued.UEDConfig.num_envs)
        num_steps = given.get("num_steps", ued.UEDConfig.num_steps)
        settings["total_timesteps"] = args.updates * int(num_envs) * int(num_steps)
    args.config = None
    return _cmd_train(args, algo_name="ued", settings=settings, algorithms={"ued": ued}, command="jaxrl ued",
                      finish=ued_report.write)
