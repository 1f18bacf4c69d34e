"""The `jaxrl` command. Bad input ends in one line on stderr and exit code 2, never a traceback."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from typing import Any


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


# Exit status of a command stopped by SIGINT / SIGTERM after checkpointing: not 0, so scripts do not mistake it for
# a finished run, and not 2 (bad input) or 1 (a crash): it can be resumed.
EXIT_INTERRUPTED = 3


def _resolve_plan(algo_name: str | None, settings: dict, args: argparse.Namespace, algorithms: dict | None = None):
    """Settings + flags -> (RunPlan, agent, base hyperparameter overrides); validates everything before any
    file is touched. algorithms: name -> algorithm module (default jaxrl.agents.ALGORITHMS)."""
    from jaxrl import objectives
    from jaxrl.agents import ALGORITHMS
    from jaxrl.config import _yaml_number_fix, build, parse_assignment
    from jaxrl.envs.errors import InvalidChoiceError, invalid_choice
    from jaxrl.runner import OBJECTIVE_KEY, RunPlan

    algorithms = ALGORITHMS if algorithms is None else algorithms
    algo_name = algo_name or settings.get("algorithm")
    if algo_name is None:
        raise InvalidChoiceError("no algorithm given: name one (jaxrl train ppo ...) or set `algorithm:` in the config")
    if algo_name not in algorithms:
        raise invalid_choice("algorithm", algo_name, algorithms)
    if settings.get("algorithm", algo_name) != algo_name:
        raise InvalidChoiceError(f"the config is for algorithm {settings['algorithm']!r}, not {algo_name!r}")
    algo = algorithms[algo_name]
    rule = getattr(args, "rule", None)  # `jaxrl ued` has no --rule
    if rule is not None and args.objective is not None:
        raise InvalidChoiceError("give --rule or --objective, not both (for lpg they name the same thing: its update rule)")
    objective = rule if rule is not None else args.objective
    flags = {"env_id": args.env, "total_timesteps": args.steps, "objective": objective, "seeds": args.seeds}
    settings = {**settings, **{k: v for k, v in flags.items() if v is not None}}
    settings.update(parse_assignment(text) for text in args.set)

    sweep = dict(settings.pop("sweep", None) or {})
    for text in args.sweep:
        key, sep, values = text.partition("=")
        if not sep or not values:
            raise InvalidChoiceError(f"expected --sweep KEY=V1,V2,..., got {text!r}")
        sweep[key.strip()] = [parse_assignment(f"{key}={v}")[1] for v in values.split(",")]
    for key, values in sweep.items():
        values = _yaml_number_fix(values if isinstance(values, list) else [values])
        if not values:
            raise InvalidChoiceError(f"--sweep {key} has no values")
        sweep[key] = values
    static_fields = {f.name for f in dataclasses.fields(algo.Config)}
    for key in sweep:
        if key == OBJECTIVE_KEY:
            settings["objective"] = objectives.sweep_spec(sweep[key])
        elif key in static_fields:
            raise InvalidChoiceError(
                f"cannot sweep {key!r}: it is a static setting (it changes shapes or the program, so each value "
                f"needs its own compile); run one command per value, or sweep a hyperparameter"
            )
    seeds = settings.pop("seeds", 1)
    if isinstance(seeds, bool) or not isinstance(seeds, (int, float)) or seeds < 1 or int(seeds) != seeds:
        raise InvalidChoiceError(f"seeds must be a positive integer, got {seeds!r}")
    settings.pop("out", None)
    config, overrides = build(algo.Config, algo.Hparams, settings)
    agent = algo.make_agent(config)
    first = args.seed
    plan = RunPlan(algo_name, settings, sweep, list(range(first, first + int(seeds))))
    from jaxrl.runner import build_hparams

    build_hparams(agent, plan, overrides)  # validates every sweep key and value now
    return plan, agent, overrides


def _cmd_train(args: argparse.Namespace, algo_name: str | None = None, settings: dict | None = None,
               algorithms: dict | None = None, command: str = "jaxrl train", finish: Any = None) -> int:
    """Train (or resume) a run of `algo_name`. `jaxrl ued` reuses it with its own algorithm table, command name and
    `finish(out, summary)`, called on a finished run before the report is printed."""
    import json
    import time
    from pathlib import Path

    from jaxrl.config import load_yaml
    from jaxrl.envs.errors import InvalidChoiceError
    from jaxrl.runner import run
    from jaxrl.tracking import parse_backends

    parse_backends(args.log)  # a bad backend name fails before anything is written
    if args.resume:
        out = Path(args.resume)
        try:
            finished = json.loads((out / "summary.json").read_text()).get("status") == "finished"
        except (OSError, ValueError):
            finished = False
        if finished:
            raise InvalidChoiceError(f"{str(out)!r} holds a finished run: nothing to resume (its results are in that folder)")
        try:
            saved = json.loads((out / "run.json").read_text())
        except (OSError, ValueError) as err:
            raise InvalidChoiceError(f"cannot resume from {str(out)!r}: no readable run.json ({type(err).__name__})") from None
        # Flags given with --resume are applied on top of the saved settings: any change is refused.
        saved_settings = {**saved["settings"], "sweep": saved["sweep"], "seeds": len(saved["seeds"])}
        if args.config:
            saved_settings = {**saved_settings, **load_yaml(args.config)}
        saved_settings = {**saved_settings, **(settings or {})}
        given_seed = args.seed if args.seed != 0 else saved["seeds"][0]
        plan, agent, overrides = _resolve_plan(algo_name or getattr(args, "algo", None) or saved["algorithm"], saved_settings,
                                               argparse.Namespace(**{**vars(args), "seed": given_seed}), algorithms)
        if plan.to_json() != saved:
            now = plan.to_json()
            changed = sorted(k for k in set(now["settings"]) | set(saved["settings"]) if now["settings"].get(k) != saved["settings"].get(k))
            changed += [k for k in ("algorithm", "sweep", "seeds") if now[k] != saved[k]]
            raise InvalidChoiceError(f"the checkpoint in {str(out)!r} is from a different config (changed: {', '.join(changed)}); resume without changing settings")
    else:
        settings = dict(settings or {})
        if args.config:
            settings = {**load_yaml(args.config), **settings}
        plan, agent, overrides = _resolve_plan(algo_name or args.algo, settings, args, algorithms)
        config = agent.config
        out = Path(args.out or settings.get("out") or f"results/{plan.algorithm}-{config.env_id.replace('/', '_')}-{time.strftime('%Y%m%d-%H%M%S')}")
        if (out / "summary.json").exists() or (out / "run.json").exists():
            raise InvalidChoiceError(f"{str(out)!r} already holds a run; choose another --out, or --resume it")

    from jaxrl import multihost

    multihost.sync("checked-out")  # every process has checked the folder before process 0 writes run.json
    config = agent.config
    num_runs = len(plan.grid()) * len(plan.seeds)
    print(
        f"{plan.algorithm} on {config.env_id}: {len(plan.grid())} grid point(s) x {len(plan.seeds)} seed(s), "
        f"{agent.num_updates * agent.steps_per_update:,} steps each"
        + (f", objective {config.objective}" if hasattr(config, "objective") else "") + f" -> {out}",
        flush=True,
    )
    summary = run(
        agent, plan, overrides, out, chunk_updates=args.chunk_updates, checkpoint_every=args.checkpoint_every,
        max_devices=args.devices, block_runs=args.block_runs, resume=bool(args.resume), progress=not args.quiet,
        log=tuple(parse_backends(args.log)),
    )
    if multihost.index() > 0:  # process 0 writes and reports the combined results
        print(f"process {multihost.index()}: {summary['status']}, its runs are in {out} (written by process 0)")
        return EXIT_INTERRUPTED if summary["status"] == "interrupted" else 0
    if finish is not None and summary["status"] == "finished":
        finish(out, summary)
    timing = summary["timing"]
    print(f"{summary['status']}: {num_runs} runs on {summary['devices']['used']} device(s), compile {timing['compile_s']:.1f} s, "
          f"run {timing['run_s']:.1f} s, {timing['env_steps_per_s'] or 0:,.0f} env steps/s")
    print((out / "report.md").read_text() if (out / "report.md").exists() else "")
    if summary["status"] == "interrupted":
        print(f"interrupted: continue with  {command} --resume {out}")
        return EXIT_INTERRUPTED
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from jaxrl.config import load_yaml

    settings = load_yaml(args.file)
    args.config = None
    return _cmd_train(args, algo_name=settings.get("algorithm"), settings=settings)


def _cmd_eval(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from jaxrl import results
    from jaxrl.trained import evaluate, load

    trained = load(args.dir)
    report = evaluate(trained, args.env, args.episodes, args.run, args.seed)
    st = report["summary"]
    print(f"{report['env_id']}: {len(report['runs'])} run(s) x {report['episodes_per_run']} episodes: mean return IQM "
          f"{st['iqm']:.3f} [{st['ci_low']:.3f}, {st['ci_high']:.3f}], mean {st['mean']:.3f}")
    name = f"eval-{report['env_id'].replace('/', '_')}-{report['episodes_per_run']}ep-seed{args.seed}.json"
    results.atomic_write_bytes(Path(args.dir) / name, json.dumps(report, indent=1).encode())
    print(f"wrote {Path(args.dir) / name}")
    return 0


def _cmd_render(args: argparse.Namespace) -> int:
    from jaxrl import render  # first: it picks MuJoCo's headless OpenGL platform before Brax imports MuJoCo
    from jaxrl.trained import load

    trained = load(args.dir)
    env_kwargs = None
    if args.level is not None:  # a named level of the maze or the grid world, on top of the run's own settings
        config = trained.agent.config
        own = dict(config.env_kwargs) if (args.env or config.env_id) == config.env_id else {}
        env_kwargs = {**own, "level": args.level}
    info = render.render(trained, args.out, args.run, args.seed, args.env, env_kwargs, args.max_steps, args.fps, args.deterministic)
    ended = "episode ended" if info["finished"] else "cut at --max-steps"
    chosen = f" (median final return of {trained.num_runs} runs)" if args.run is None else ""
    print(f"wrote {info['path']}: {info['env_id']}, run {info['run']}{chosen}, return {info['episode_return']:.3f} over "
          f"{info['length']} steps ({ended}), {info['frames']} frames")
    return 0


def _cmd_plot(args: argparse.Namespace) -> int:
    from pathlib import Path

    from jaxrl import results

    panels = plot_panels_of(args.dirs)
    # A run's own curves.png is only replaced when --out names it.
    out = Path(args.out) if args.out else Path("curves_compare.png")
    results.plot_panels(out, list(panels.items()))
    print(f"wrote {out} ({len(panels)} panel(s): {', '.join(panels)})")
    return 0


def plot_panels_of(dirs: Sequence[str]) -> dict[str, list[tuple]]:
    """Results folders -> {panel title: [(label with its seed count n, env_steps, returns (S, U), valid)]}: one
    panel per algorithm and environment, so curves of different tasks never share an axis; every folder keeps
    all of its seeds, and its own x values."""
    import json
    from pathlib import Path

    import numpy as np

    from jaxrl.envs.errors import InvalidChoiceError

    panels: dict[str, list[tuple]] = {}
    for d in map(Path, dirs):
        try:
            summary = json.loads((d / "summary.json").read_text())
            data = np.load(d / "curves.npz")
        except (OSError, ValueError) as err:
            raise InvalidChoiceError(f"{str(d)!r} is not a finished results folder ({type(err).__name__})") from None
        env_id = summary["config"].get("env_id", "?")
        prefix = f"{d.name}: " if len(dirs) > 1 else ""
        for g, label in enumerate(summary["grid"]["labels"]):
            returns = data["episode_return"][g]  # (S, U): every seed of this folder, however many
            line = (f"{prefix}{label} (n={returns.shape[0]})", data["env_steps"], returns, data["episode_return_valid"][g])
            panels.setdefault(f"{summary['algorithm']} on {env_id}", []).append(line)
    return panels


def _devices(text: str) -> int | None:
    if text == "all":
        return None
    try:
        return _positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected a positive integer or all, got {text!r}") from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def settings_help(algorithms: dict) -> str:
    """Every setting of each algorithm with its default: static ones (a change recompiles) and hyperparameters
    (traced: --sweep them)."""
    lines = []
    for name, module in algorithms.items():
        hparams = module.Hparams()
        lines.append(f"settings of {name} (--set KEY=VALUE or YAML; static: each value compiles its own program):")
        lines += [f"  {f.name} = {f.default!r}" for f in dataclasses.fields(module.Config)]
        lines.append(f"hyperparameters of {name} (traced: --sweep KEY=V1,V2 compiles once):")
        lines += [f"  {f.name} = {float(getattr(hparams, f.name)):g}" for f in dataclasses.fields(module.Hparams) if f.name != "objective"]
        lines.append("  objective.<param> = the objective's parameters (e.g. objective.clip_eps)")
    return "\n".join(lines)


def with_settings_help(parser: argparse.ArgumentParser, algorithms: Any) -> None:
    """Append `settings_help` to the parser's --help. algorithms: a function returning the table, called only when
    help is shown (it imports the agents, which plain commands should not pay for at start-up)."""
    plain = parser.format_help
    parser.format_help = lambda: plain() + "\n" + settings_help(algorithms()) + "\n"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jaxrl", description="End-to-end accelerated RL and meta-RL in JAX.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("envs", help="list every registered environment id and its family")
    p.add_argument("--family", help="only this family (e.g. brax, minatar, gymnax/bsuite)")
    p.set_defaults(func=_cmd_envs)

    p = sub.add_parser("demo", help="step every environment family under jit + vmap and print throughput")
    p.add_argument("--envs", help="comma-separated ids (default: a sample of every family)")
    p.add_argument("--num-envs", type=_positive_int, default=256)
    p.add_argument("--steps", type=_positive_int, default=1000, help="steps per environment")
    p.set_defaults(func=_cmd_demo)
    def run_flags(p: argparse.ArgumentParser) -> None:
        p.add_argument("--out", help="results folder (default results/ALGO-ENV-TIME)")
        p.add_argument("--resume", metavar="DIR", help="continue an interrupted run from its results folder")
        p.add_argument("--chunk-updates", type=_positive_int, default=50, help="updates per compiled chunk (default %(default)s)")
        p.add_argument("--checkpoint-every", type=_positive_int, default=10, help="checkpoint every N chunks (default 10)")
        p.add_argument("--devices", type=_devices, default=None, help="all (default) or N: devices to shard runs over")
        p.add_argument("--block-runs", type=_positive_int, default=None,
                       help="runs vmapped together on a device (default: about runs/8; on a CPU at most 4 runs and 32 MB of their memory); results depend on this, not on --devices")
        p.add_argument("--quiet", action="store_true", help="no progress bar")
        p.add_argument("--distributed", action="store_true",
                       help="one of several processes (hosts) sharing the runs, on jax.distributed: set JAX_COORDINATOR_ADDRESS, "
                            "JAX_NUM_PROCESSES, JAX_PROCESS_ID (or run under a cluster manager JAX detects); same --out on a shared filesystem")
        p.add_argument("--log", default="", metavar="tb,wandb",
                       help="experiment tracking after every chunk: TensorBoard event files in OUT/tb, Weights & Biases "
                            "(offline in OUT/wandb unless an account is configured or WANDB_MODE says otherwise)")

    p = sub.add_parser("train", help="train a grid of hyperparameters x seeds as one compiled program")
    with_settings_help(p, lambda: __import__("jaxrl.agents", fromlist=["ALGORITHMS"]).ALGORITHMS)
    p.add_argument("algo", nargs="?", help="algorithm (ppo)")
    p.add_argument("--env", help="environment id (see `jaxrl envs`)")
    p.add_argument("--seeds", type=_positive_int, help="number of seeds, vmapped (default 1)")
    p.add_argument("--seed", type=int, default=0, help="first seed; seed i trains with jax.random.key(i)")
    p.add_argument("--steps", type=_positive_int, help="total environment steps per run")
    p.add_argument("--objective", help="objective name (ppo_clip, no_trust_region, mdpo, dpo, lpo, ta_lpo) or a saved .npz")
    p.add_argument("--rule", metavar="FILE", help="lpg's update rule: a file `jaxrl meta lpg` wrote (default: the untrained rule)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any setting or hyperparameter")
    p.add_argument("--sweep", action="append", default=[], metavar="KEY=V1,V2,...", help="a grid axis (repeatable)")
    p.add_argument("--config", help="YAML file of settings (flags override it)")
    run_flags(p)
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("run", help="run a YAML file that names its algorithm (and may hold `sweep:` and `seeds:`)")
    p.add_argument("file")
    p.add_argument("--seed", type=int, default=0)
    for name in ("env", "steps", "objective", "rule", "seeds"):
        p.set_defaults(**{name: None})
    p.set_defaults(set=[], sweep=[])
    run_flags(p)
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("eval", help="re-evaluate the kept policies of a finished run (also on another environment)")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--env", help="environment id with the same spaces (default the run's own)")
    p.add_argument("--episodes", type=_positive_int, help="episodes per run (default the run's eval_episodes)")
    p.add_argument("--run", type=int, help="only this run (index as in summary.json's runs; default every run)")
    p.add_argument("--seed", type=int, default=0, help="evaluation seed")
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser("render", help="play one episode of a kept policy and write it as an animation (GIF; Brax also HTML)")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--out", required=True, help="NAME.gif, or NAME.html for Brax's own viewer")
    p.add_argument("--run", type=int, help="run index as in summary.json's runs (default: the median final return)")
    p.add_argument("--seed", type=int, default=0, help="seed of the episode (reset, actions, environment)")
    p.add_argument("--max-steps", type=_positive_int, help="stop after N steps (default: the episode's end)")
    p.add_argument("--fps", type=_positive_int, help="frames per second (default 25; 10 for MinAtar and the grids)")
    p.add_argument("--deterministic", action="store_true", help="the policy's most likely action instead of a sample")
    p.add_argument("--env", help="environment id with the same spaces (default the run's own)")
    p.add_argument("--level", help="a named level of Maze-v0 (held-out maze) or GridWorld-v0 (LPG level)")
    p.set_defaults(func=_cmd_render)

    p = sub.add_parser("plot", help="redraw or compare the learning curves of finished runs")
    p.add_argument("dirs", nargs="+", metavar="DIR")
    p.add_argument("--out", help="image file (default curves_compare.png here; a run's own curves.png only when named)")
    p.set_defaults(func=_cmd_plot)

    # Commands of layers above the core (the meta layer) plug in through an entry point, so the core CLI
    # never imports them.
    import importlib.metadata
    import types

    helpers = types.SimpleNamespace(positive_int=_positive_int, devices=_devices, run_flags=run_flags)
    for entry in importlib.metadata.entry_points(group="jaxrl.commands"):
        entry.load()(sub, helpers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from jaxrl import compile_cache
    from jaxrl.devices import use_all_cpu_cores

    use_all_cpu_cores()  # before anything starts JAX
    compile_cache.enable()
    parser = build_parser()
    args = parser.parse_args(argv)  # argparse itself exits 2 with one line on bad flags
    from jaxrl.envs.errors import InvalidChoiceError

    try:
        if getattr(args, "distributed", False):
            from jaxrl import multihost

            multihost.initialize()
        return args.func(args)
    except InvalidChoiceError as err:
        print(f"jaxrl: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # a second SIGINT / SIGTERM while the first was being honoured
        print("\njaxrl: stopped at once by a second signal; the last checkpoint (if any) is kept, --resume continues from it",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
