"""Held-out evaluation of learned update rules (`jaxrl meta lpg`): fresh agents trained by each rule on LPG's five
tabular grid worlds (and optionally MinAtar games, out of distribution), next to the A2C agent meta-training uses as
antagonist, same lifetime and batch, IQM and 95% bootstrap CI of the final return over seeds.

    python experiments/evaluate_lpg_rules.py untrained=random uniform=RUNS/uniform/rule.npz groove=RUNS/groove/rule.npz \\
        --updates 250 --seeds 16 --out results/groove/heldout

A rule is a file `jaxrl meta lpg` wrote (its architecture, TA-LPG included, comes with it) or `random`: the untrained
rule every meta-training starts from, the floor of the table.

Every (agent, level) pair is one `jaxrl train` run (its folder under --out/runs), so a cut-off evaluation resumes by
running the command again: finished runs are read back, not retrained.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from jaxrl import results
from jaxrl.cli import main as jaxrl_main
from jaxrl.envs import gridworld

MINATAR = {"breakout": "Breakout-MinAtar", "space_invaders": "SpaceInvaders-MinAtar", "asterix": "Asterix-MinAtar", "freeway": "Freeway-MinAtar"}


def a2c_args(num_envs: int, num_steps: int, lr: float, hidden: str) -> list[str]:
    """The antagonist of meta/lpg.py (antagonist_config, antagonist_hparams) as `jaxrl train ppo` flags."""
    return ["ppo", "--set", f"num_envs={num_envs}", "--set", f"num_steps={num_steps}", "--set", "update_epochs=1", "--set", "num_minibatches=1",
            "--objective", "no_trust_region", "--set", f"actor_hidden={hidden}", "--set", f"critic_hidden={hidden}", "--set", "anneal_lr=false",
            "--set", f"lr={lr}", "--set", "gae_lambda=0.95", "--set", "ent_coef=0.01"]


def lpg_args(rule: str, num_envs: int, num_steps: int, hidden: str, extra: list[str]) -> list[str]:
    return ["lpg", "--rule", rule, "--set", f"num_envs={num_envs}", "--set", f"num_steps={num_steps}", "--set", f"actor_hidden={hidden}",
            "--set", f"predictor_hidden={hidden}", *extra]


def final_returns(folder: Path, argv: list[str]) -> np.ndarray:
    if not (folder / "summary.json").exists() or json.loads((folder / "summary.json").read_text())["status"] != "finished":
        code = jaxrl_main(["train", *argv, "--out", str(folder)] if not (folder / "run.json").exists() else ["train", "--resume", str(folder), "--quiet"])
        if code != 0:
            raise SystemExit(f"{folder}: jaxrl train exited {code}")
    with np.load(folder / "curves.npz") as data:
        return data["final_return"].reshape(-1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("rules", nargs="+", metavar="LABEL=FILE", help="learned rules to evaluate (FILE `random`: the untrained rule)")
    p.add_argument("--updates", type=int, default=250, help="lifetime of every agent, in updates")
    p.add_argument("--seeds", type=int, default=16)
    p.add_argument("--num-envs", type=int, default=16)
    p.add_argument("--num-steps", type=int, default=20)
    p.add_argument("--a2c-lr", type=float, default=0.01, help="the antagonist's learning rate (meta lpg's --antagonist-lr)")
    p.add_argument("--random-gru-width", type=int, default=256, help="GRU width of the `random` rule (the meta-training runs')")
    p.add_argument("--levels", default=",".join(gridworld.LPG_LEVELS), help="comma-separated LPG levels (default all five; '' for none)")
    p.add_argument("--minatar", default="", help="comma-separated MinAtar games to add (breakout, space_invaders, asterix, freeway)")
    p.add_argument("--minatar-updates", type=int, default=1000)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    out = Path(args.out)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    rules = dict(r.split("=", 1) for r in args.rules)

    # (name, env id, settings of both agents, settings of the LPG agents, lifetime, hidden layers)
    tasks = [(name, "GridWorld-v0", ["--set", f"env_kwargs={{level: {name}}}"], [], args.updates, "[]") for name in filter(None, args.levels.split(","))]
    for game in filter(None, args.minatar.split(",")):
        # Out of distribution: a 64-unit hidden layer, Adam (GROOVE's setting for non-tabular agents), a longer lifetime.
        adam = ["--set", "optimizer=adam", "--set", "actor_lr=1e-3", "--set", "predictor_lr=1e-3"]
        tasks.append((game, MINATAR[game], [], adam, args.minatar_updates, "[64]"))

    table: dict[str, dict[str, dict]] = {}
    for name, env_id, env_extra, lpg_extra, updates, hidden in tasks:
        steps = updates * args.num_envs * args.num_steps
        common = ["--env", env_id, "--steps", str(steps), "--seeds", str(args.seeds), "--quiet", *env_extra]
        agents = {label: lpg_args(path, args.num_envs, args.num_steps, hidden,
                                     [*lpg_extra, *(["--set", f"gru_width={args.random_gru_width}"] if path == "random" else [])]) for label, path in rules.items()}
        a2c_lr = args.a2c_lr if hidden == "[]" else 1e-3
        agents["A2C"] = a2c_args(args.num_envs, args.num_steps, a2c_lr, hidden)
        for label, argv in agents.items():
            returns = final_returns(out / "runs" / f"{name}-{label}", [*argv, *common])
            table.setdefault(name, {})[label] = {**results.summarize_returns(returns), "returns": returns.tolist()}
            stats = table[name][label]
            print(f"{name:>15} {label:>10}: IQM {stats['iqm']:.3f} [{stats['ci_low']:.3f}, {stats['ci_high']:.3f}] mean {stats['mean']:.3f}", flush=True)

    labels = [*rules, "A2C"]
    lines = ["| level | " + " | ".join(labels) + " |", "|---|" + "---:|" * len(labels)]
    for name, row in table.items():
        lines.append(f"| {name} | " + " | ".join(f"{row[k]['iqm']:.3f} [{row[k]['ci_low']:.3f}, {row[k]['ci_high']:.3f}]" for k in labels) + " |")
    note = (f"Final return of fresh agents after {args.updates} updates of {args.num_envs} x {args.num_steps} steps (MinAtar: "
            f"{args.minatar_updates}), IQM [95% bootstrap CI] over {args.seeds} seeds.")
    (out / "heldout.md").write_text("\n".join([note, "", *lines, ""]))
    results.atomic_write_json(out / "heldout.json", {"settings": vars(args), "table": table})
    print("\n".join(lines))


if __name__ == "__main__":
    main()
