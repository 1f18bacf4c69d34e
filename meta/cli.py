"""`jaxrl meta discover | tune | evaluate | lpg`: registered on the `jaxrl` command through the `jaxrl.commands`
entry point (pyproject.toml), so the core CLI never imports the meta layer."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from jaxrl.cli import EXIT_INTERRUPTED
from jaxrl.envs.errors import InvalidChoiceError

# Defaults of the search flags; None on the parser so `--resume` can tell a given flag from a default.
SEARCH_DEFAULTS = {
    "generations": 100, "population": 32, "seeds": 2, "inner_steps": None, "es": "open_es", "seed": 0,
    "baseline_seeds": 8, "checkpoint_every": 10, "devices": None, "block_runs": None, "shaping": "centered_rank", "antithetic": True,
    "candidates": 2, "candidate_pool": 16, "validation_seeds": 8,
}
LPG_LEVEL_NAMES = ("dense", "sparse", "long", "longer", "long_dense")  # jaxrl.envs.gridworld.LPG_LEVELS, without importing JAX here
LPG_FLAGS = ("curriculum", "generations", "population", "lifetime", "min_lifetime", "lifetime_conditioning", "level", "sigma", "lr", "shaping",
             "eval_episodes", "buffer_capacity", "replay_prob", "antagonist_lr", "heldout_every", "checkpoint_every", "seed")
DISCOVER_DEFAULTS = {"objective": "lpo", "init": "ppo", "envs": "CartPole-v1", "sigma": 0.03, "lr": 0.03}
TUNE_DEFAULTS = {"sigma": 0.1, "lr": 0.05}


def register(sub: argparse._SubParsersAction, common: Any) -> None:
    """Add `meta` to the `jaxrl` parser. common: jaxrl.cli's helpers (positive_int, devices)."""
    meta = sub.add_parser("meta", help="meta-learning: discover objectives, tune hyperparameters, evaluate objectives")
    msub = meta.add_subparsers(dest="meta_command", metavar="META_COMMAND")
    msub.required = True

    def search_flags(p: argparse.ArgumentParser) -> None:
        p.add_argument("--generations", type=common.positive_int, help="ES generations (default 100)")
        p.add_argument("--population", type=common.positive_int, help="ES population size (default 32)")
        p.add_argument("--seeds", type=common.positive_int, help="inner seeds per member, shared by all members (default 2)")
        p.add_argument("--inner-steps", type=common.positive_int, help="environment steps of each inner run (default: the algorithm's)")
        p.add_argument("--es", help="evolution strategy, an evosax name (default open_es)")
        p.add_argument("--sigma", type=float, help="ES noise scale")
        p.add_argument("--lr", type=float, help="ES learning rate (OpenES: Adam on the mean)")
        p.add_argument("--shaping", help="OpenES fitness shaping: centered_rank (default) or z_score")
        p.add_argument("--no-antithetic", dest="antithetic", action="store_const", const=False, help="plain instead of mirrored sampling (OpenES)")
        p.add_argument("--seed", type=int, help="meta seed (default 0)")
        p.add_argument("--set", action="append", default=None, metavar="KEY=VALUE", help="a setting of the inner runs (repeatable)")
        p.add_argument("--config", help="YAML file of inner-run settings")
        p.add_argument("--baseline-seeds", type=common.positive_int,
                       help="seeds of the cached baseline, PPO-clip under the same inner settings, that puts returns on one scale (default 8)")
        p.add_argument("--candidates", type=common.positive_int,
                       help="best members of each generation kept as candidates for the result (default 2)")
        p.add_argument("--candidate-pool", type=common.positive_int,
                       help="candidates kept over the whole search, the best by training fitness (default 16)")
        p.add_argument("--validation-seeds", type=common.positive_int,
                       help="new seeds (2000000, 2000001, ...; no generation uses them) on which, at the end, every candidate "
                            "and the final search mean are re-scored; the best validation score is the result (default 8)")
        p.add_argument("--checkpoint-every", type=common.positive_int, help="checkpoint every N generations (default 10)")
        p.add_argument("--devices", type=common.devices, help="all (default) or N")
        p.add_argument("--block-runs", type=common.positive_int, help="inner runs vmapped together on a device (default: about runs/8; on a CPU at most 4 runs and 32 MB of their memory)")
        p.add_argument("--out", help="results folder (default results/meta-KIND-TIME)")
        p.add_argument("--resume", metavar="DIR", help="continue a search from its folder (--generations may be raised)")
        p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = msub.add_parser("discover", help="meta-learn an objective (lpo / ta_lpo weights) with an ES",
                        description="Meta-learn an objective with an ES. Fitness: mean final return normalised per environment "
                                    "(0 = untrained policy, 1 = PPO-clip under the same inner settings), averaged over environments. "
                                    "The result, best_objective.npz, is the candidate (top members of each generation, and the final "
                                    "search mean) with the highest score on --validation-seeds new seeds; mean_objective.npz is the search mean.")
    p.add_argument("--objective", help="lpo or ta_lpo (default lpo)")
    p.add_argument("--init", help="ppo (start from PPO's clip, default) or zero (start from no trust region)")
    p.add_argument("--envs", help="comma-separated meta-training environments (default CartPole-v1)")
    search_flags(p)
    p.set_defaults(func=_cmd_discover)

    p = msub.add_parser("tune", help="search hyperparameters of an algorithm with an ES",
                        description="Search hyperparameters with an ES. Fitness: mean final return normalised per environment "
                                    "(0 = untrained policy, 1 = PPO-clip under the same inner settings). The result, best_config.yaml, "
                                    "is the candidate (top members of each generation, and the final search mean) with the highest "
                                    "score on --validation-seeds new seeds; mean_config.yaml is the search mean.")
    p.add_argument("algo", help="algorithm: ppo, pqn, dqn or sac (score 1 = PPO-clip for ppo, the algorithm's defaults for the others)")
    p.add_argument("--env", help="environment id (required unless --resume)")
    p.add_argument("--search", action="append", default=None, metavar="KEY=LOW:HIGH[:log]", help="a hyperparameter and its range (repeatable)")
    search_flags(p)
    p.set_defaults(func=_cmd_tune)

    p = msub.add_parser("evaluate", help="train objectives on environments over seeds; IQM, CIs, normalised scores",
                        description="Train objectives on environments over seeds: IQM and 95% bootstrap intervals of the final "
                                    "return, and the normalised score (0 = untrained policy, 1 = PPO-clip under the same settings "
                                    "on the same seeds; ppo_clip itself, when evaluated, scores exactly 1 in the mean).")
    p.add_argument("--objective", nargs="+", required=True, metavar="FILE|NAME", help="objective names or saved .npz files")
    p.add_argument("--envs", required=True, help="comma-separated environment ids")
    p.add_argument("--seeds", type=common.positive_int, default=16, help="seeds per (objective, environment) (default 16)")
    p.add_argument("--seed", type=int, default=0, help="first seed")
    p.add_argument("--steps", type=common.positive_int, help="environment steps per run (default: the algorithm's)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a setting of every run (repeatable)")
    p.add_argument("--config", help="YAML file of settings for every run")
    p.add_argument("--baseline-seeds", type=common.positive_int, default=None, help=argparse.SUPPRESS)  # refused: see _cmd_evaluate
    p.add_argument("--devices", type=common.devices, default=None)
    p.add_argument("--block-runs", type=common.positive_int, default=None)
    p.add_argument("--out", help="results folder (default results/meta-evaluate-TIME)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_evaluate)

    p = msub.add_parser("lpg", help="meta-learn an update rule (LPG, TA-LPG) by ES on grid-world levels: uniform, PLR or GROOVE",
                        description="Meta-learn an LPG update rule with OpenES. Each generation, antithetic pairs of rules train fresh "
                                    "agents on shared levels for a lifetime; fitness: win/lose within the pair. Levels: uniform random "
                                    "(LPG), PLR by the A2C antagonist's positive value loss, or GROOVE (PLR by algorithmic regret, "
                                    "A2C's return minus the LPG agent's). Writes rule.npz (load with `jaxrl train lpg --rule FILE`), "
                                    "meta_summary.json and figures.")
    p.add_argument("--curriculum", help="uniform, plr or groove (default groove)")
    p.add_argument("--generations", type=common.positive_int, help="ES generations (default 100)")
    p.add_argument("--population", type=common.positive_int, help="rules per generation, an even number: pairs share a level (default 16)")
    p.add_argument("--lifetime", type=common.positive_int, help="agent updates per lifetime (default 250)")
    p.add_argument("--min-lifetime", type=int, help="> 0: lifetimes log-uniform in [this, --lifetime] (default 0: all --lifetime)")
    p.add_argument("--ta", dest="lifetime_conditioning", action="store_const", const=True, help="TA-LPG: the rule sees n/N and log N")
    p.add_argument("--level", help="random (GROOVE's level distribution, default) or one LPG level: " + ", ".join(LPG_LEVEL_NAMES))
    p.add_argument("--sigma", type=float, help="ES noise scale (default 0.1)")
    p.add_argument("--lr", type=float, help="ES learning rate, Adam on the mean (default 0.01)")
    p.add_argument("--shaping", help="win_lose (default) or centered_rank")
    p.add_argument("--eval-episodes", type=common.positive_int, help="episodes that score each trained agent on its level (default 64)")
    p.add_argument("--buffer-capacity", type=common.positive_int, help="PLR level buffer size (default 1000)")
    p.add_argument("--replay-prob", type=float, help="probability of replaying buffer levels (default 0.5)")
    p.add_argument("--antagonist-lr", type=float, help="learning rate of the A2C antagonist (default 0.01)")
    p.add_argument("--heldout-every", type=int, help="every N generations, train agents with the ES mean on LPG's five levels "
                                                      "and plot their returns, heldout.png (default 10; 0: never)")
    p.add_argument("--checkpoint-every", type=common.positive_int, help="checkpoint every N generations (default 10)")
    p.add_argument("--seed", type=int, help="meta seed (default 0)")
    p.add_argument("--set", action="append", default=None, metavar="KEY=VALUE", help="an LPG agent setting (e.g. num_envs=32, gru_width=64)")
    p.add_argument("--devices", type=common.devices, help="all (default) or N")
    p.add_argument("--out", help="results folder (default results/meta-lpg-TIME)")
    p.add_argument("--resume", metavar="DIR", help="continue from its folder (--generations may be raised)")
    p.add_argument("--quiet", action="store_true", help="no per-generation lines")
    p.set_defaults(func=_cmd_lpg)


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    from jaxrl.config import load_yaml, parse_assignment

    settings = load_yaml(args.config) if args.config else {}
    settings.update(parse_assignment(text) for text in (args.set or []))
    for key in ("env_id", "objective", "total_timesteps", "algorithm", "seeds", "sweep", "out"):
        if key in settings:
            raise InvalidChoiceError(f"setting {key!r} is given by the meta command's own flags, not --set/--config")
    return settings


def _env_list(text: str) -> list[str]:
    from jaxrl import envs

    ids = [e.strip() for e in text.split(",") if e.strip()]
    if not ids:
        raise InvalidChoiceError(f"no environment ids in {text!r}")
    for env_id in ids:
        if env_id not in envs.registered_ids():
            envs.make(env_id)  # the one-line error with the closest ids
    return ids


def _saved_request(folder: str, kind: str) -> tuple[Path, dict[str, Any]]:
    """(folder, its meta.json) of a `meta KIND` run to resume; one-line errors otherwise."""
    out = Path(folder)
    try:
        saved = json.loads((out / "meta.json").read_text())
    except (OSError, ValueError) as err:
        raise InvalidChoiceError(f"cannot resume from {str(out)!r}: no readable meta.json ({type(err).__name__})") from None
    if saved.get("kind") != kind:
        raise InvalidChoiceError(f"{str(out)!r} holds a `meta {saved.get('kind')}` run, not `meta {kind}`")
    return out, saved


def _request(kind: str, args: argparse.Namespace, specific: dict[str, Any], defaults: dict[str, Any]) -> tuple[dict[str, Any], Path, bool]:
    """The full request (saved as meta.json), the output folder and whether this resumes."""
    flags = {k: getattr(args, k) for k in SEARCH_DEFAULTS}
    flags.update(sigma=args.sigma, lr=args.lr)
    if args.resume:
        out, saved = _saved_request(args.resume, kind)
        given = {**{k: v for k, v in flags.items() if v is not None}, **{k: v for k, v in specific.items() if v is not None}}
        if args.set is not None or args.config:
            given["settings"] = _settings(args)
        changed = sorted(k for k, v in given.items() if k != "generations" and saved.get(k) != v)
        if changed:
            raise InvalidChoiceError(f"{str(out)!r} was started with other {', '.join(changed)}; resume without changing them (only --generations may change)")
        if "validation_seeds" not in saved:
            raise InvalidChoiceError(f"{str(out)!r} was started by a jaxrl without candidate validation; its checkpoint cannot be resumed")
        request = {**saved, "generations": given.get("generations", saved["generations"])}
        return request, out, True
    request = {"kind": kind, **SEARCH_DEFAULTS, **defaults}
    request.update({k: v for k, v in flags.items() if v is not None})
    request.update({k: v for k, v in specific.items() if v is not None})
    request["settings"] = _settings(args)
    out = Path(args.out or f"results/meta-{kind}-{time.strftime('%Y%m%d-%H%M%S')}")
    if (out / "meta.json").exists() or (out / "meta_summary.json").exists():
        raise InvalidChoiceError(f"{str(out)!r} already holds a search; choose another --out, or --resume it")
    return request, out, False


def _start(request: dict[str, Any], out: Path, resume: bool) -> None:
    from jaxrl import results
    from jaxrl.envs.errors import invalid_choice
    from jaxrl.meta.es import ALGORITHMS, SHAPINGS

    # Checked before any file is written.
    if request["es"].lower() not in ALGORITHMS:
        raise invalid_choice("evolution strategy", request["es"], ALGORITHMS)
    if request["shaping"] not in SHAPINGS:
        raise invalid_choice("fitness shaping", request["shaping"], SHAPINGS)
    if request["antithetic"] and request["population"] % 2:
        raise InvalidChoiceError(f"--population {request['population']} is odd: mirrored sampling needs pairs (or pass --no-antithetic)")
    if request["candidates"] > request["population"]:
        raise InvalidChoiceError(f"--candidates {request['candidates']} is more than the --population {request['population']} of a generation")
    if request["baseline_seeds"] > 1_000_000:  # baselines.BASELINE_SEED_OFFSET + n would reach the validation seeds
        raise InvalidChoiceError(f"--baseline-seeds {request['baseline_seeds']} is more than 1000000")
    if request["candidate_pool"] < request["candidates"]:
        raise InvalidChoiceError(f"--candidate-pool {request['candidate_pool']} cannot hold the --candidates {request['candidates']} of one generation")
    if not resume:
        out.mkdir(parents=True, exist_ok=True)
        results.atomic_write_json(out / "meta.json", request)
    print(f"meta {request['kind']} on {', '.join(request['envs'])}: population {request['population']} x {request['seeds']} seeds, "
          f"{request['generations']} generations ({request['es']}) -> {out}", flush=True)


def _finish(summary: dict[str, Any], out: Path) -> int:
    from jaxrl.meta.tasks import unit

    timing = summary["timing"]
    print(f"{summary['status']}: {len(summary['generations'])} generations, {timing['seconds_per_generation']:.1f} s/generation, "
          f"{timing['env_steps_per_s'] or 0:,.0f} inner env steps/s; files: {', '.join(summary['files'].values())} in {out}")
    if summary["selected"] is not None:
        print(f"selected {_describe_candidate(summary['selected'])} (1 = {unit(summary.get('request', {}))})")
        if summary["best_training"] is not None and summary["selected"]["index"] != 0:
            print(f"  the highest training fitness, {_describe_candidate(summary['best_training'])}")
    if summary["status"] == "interrupted":
        print(f"not validated yet; continue with  jaxrl meta {summary['kind']} --resume {out}")
        return EXIT_INTERRUPTED
    return 0


def _describe_candidate(row: dict[str, Any]) -> str:
    """'generation 7 member 3: training fitness 1.490, validation 1.020 [0.950, 1.090]' (None shown as n/a)."""
    fmt = lambda x: "n/a" if x is None else f"{x:.3f}"
    who = f"the search mean after generation {row['generation']}" if row["candidate"] == "mean" else f"generation {row['generation']} member {row['member']}"
    return (f"{who}: training fitness {fmt(row['training_fitness'])}, validation {fmt(row.get('validation_score'))} "
            f"[{fmt(row.get('validation_ci_low'))}, {fmt(row.get('validation_ci_high'))}]")


def _cmd_discover(args: argparse.Namespace) -> int:
    from jaxrl.meta.discover import discover, learned_objective

    specific = {"objective": args.objective, "init": args.init, "envs": _env_list(args.envs) if args.envs else None}
    defaults = {**DISCOVER_DEFAULTS, "envs": _env_list(DISCOVER_DEFAULTS["envs"])}
    request, out, resume = _request("discover", args, specific, defaults)
    learned_objective(request)  # validate before any file is written
    _start(request, out, resume)
    return _finish(discover(request, out, resume=resume, progress=not args.quiet), out)


def _cmd_tune(args: argparse.Namespace) -> int:
    from jaxrl.meta.tasks import inner, inner_settings
    from jaxrl.meta.tune import dimensions, tune

    specific = {"algorithm": args.algo, "envs": _env_list(args.env) if args.env else None, "search": args.search}
    request, out, resume = _request("tune", args, specific, TUNE_DEFAULTS)
    if not request.get("envs"):
        raise InvalidChoiceError("name the environment to tune on: --env ID")
    if not request.get("search"):
        raise InvalidChoiceError("name at least one hyperparameter to search: --search KEY=LOW:HIGH[:log]")
    first = inner(request["algorithm"], inner_settings(request, request["envs"][0]))
    dimensions(request, first.algorithm, first.hparams)  # validate before any file is written
    _start(request, out, resume)
    return _finish(tune(request, out, resume=resume, progress=not args.quiet), out)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from jaxrl.meta.evaluate import evaluate

    if args.baseline_seeds is not None:
        raise InvalidChoiceError("meta evaluate scores against PPO-clip on its own seeds (--seed, --seeds); --baseline-seeds is for discover and tune")
    request = {
        "kind": "evaluate", "objectives": args.objective, "envs": _env_list(args.envs), "seeds": args.seeds, "seed": args.seed,
        "inner_steps": args.steps, "settings": _settings(args), "devices": args.devices,
        "block_runs": args.block_runs,
    }
    out = Path(args.out or f"results/meta-evaluate-{time.strftime('%Y%m%d-%H%M%S')}")
    summary = evaluate(request, out, progress=not args.quiet)
    if summary["status"] == "finished":
        print((out / "report.md").read_text())
        print(f"wrote {out / 'summary.json'}, {out / 'report.md'}, {out / 'scores.png'}")
    return 0


def _cmd_lpg(args: argparse.Namespace) -> int:
    import dataclasses

    from jaxrl import results
    from jaxrl.config import parse_assignment
    from jaxrl.meta.lpg import MetaLPG, MetaLPGConfig

    given = {k: getattr(args, k) for k in LPG_FLAGS if getattr(args, k) is not None}
    if args.resume:
        out, saved = _saved_request(args.resume, "lpg")
        fields = {**saved["config"], "agent": tuple(tuple(kv) for kv in saved["config"]["agent"])}
        changed = sorted(k for k, v in given.items() if k != "generations" and fields.get(k) != v)
        if changed or args.set is not None:
            raise InvalidChoiceError(f"{str(out)!r} was started with other {', '.join(changed) or 'agent settings'}; resume without changing them "
                                     "(only --generations may change)")
        config = MetaLPGConfig(**{**fields, "generations": given.get("generations", fields["generations"]), "max_devices": args.devices})
    else:
        agent = tuple(parse_assignment(text) for text in (args.set or []))
        config = MetaLPGConfig(**given, agent=agent, max_devices=args.devices)
        out = Path(args.out or f"results/meta-lpg-{time.strftime('%Y%m%d-%H%M%S')}")
        if (out / "meta.json").exists() or (out / "meta_summary.json").exists():
            raise InvalidChoiceError(f"{str(out)!r} already holds a run; choose another --out, or --resume it")
    meta = MetaLPG(config)  # validates everything before a file is written
    if not args.resume:
        out.mkdir(parents=True, exist_ok=True)
        saved_config = {k: v for k, v in dataclasses.asdict(config).items() if k != "max_devices"}
        results.atomic_write_json(out / "meta.json", {"kind": "lpg", "config": saved_config})
    print(f"meta lpg ({config.curriculum} curriculum, {'TA-LPG' if config.lifetime_conditioning else 'LPG'}): population {config.population}, "
          f"{config.generations} generations, lifetime {config.lifetime} updates of {meta.agent.steps_per_update} steps -> {out}", flush=True)
    summary = meta.run(out, resume=bool(args.resume), progress=not args.quiet)
    timing = summary["timing"]
    print(f"{summary['status']}: {summary['generations_done']} generations, {timing['seconds_per_generation']:.1f} s/generation, "
          f"{timing['agent_env_steps_per_s'] or 0:,.0f} agent env steps/s; files: {', '.join(summary['files'].values())} in {out}")
    if summary["status"] == "interrupted":
        print(f"continue with  jaxrl meta lpg --resume {out}")
        return EXIT_INTERRUPTED
    return 0
