"""Final-return mean and spread of several objectives on several environments (each objective x environment is
one vmapped program over all seeds). Prints a table; budgets are command-line choices, reported with it.

    python experiments/compare_objectives.py --envs CartPole-v1,Acrobot-v1 --seeds 16
"""

import argparse
import time
from pathlib import Path

from jaxrl.devices import use_all_cpu_cores

use_all_cpu_cores()  # before JAX starts: one device per core, seeds sharded across them

import jax  # noqa: E402
import numpy as np  # noqa: E402

from jaxrl.agents.ppo import PPOConfig, PPOHparams, make_agent  # noqa: E402
from jaxrl.config import apply_overrides, build, load_yaml  # noqa: E402
from jaxrl.devices import shard_runs  # noqa: E402

# Per-environment settings that fit a 2-core CPU. A2C always runs as one epoch over one minibatch.
SETTINGS = {
    "CartPole-v1": dict(total_timesteps=500_000),
    "Acrobot-v1": dict(total_timesteps=500_000),
    "Breakout-MinAtar": dict(total_timesteps=1_000_000, num_envs=64, num_steps=32, num_minibatches=8, activation="relu"),
    "SpaceInvaders-MinAtar": dict(total_timesteps=1_000_000, num_envs=64, num_steps=32, num_minibatches=8, activation="relu"),
    "Pendulum-v1": dict(total_timesteps=500_000, num_envs=16, num_steps=128, normalize_obs=True, normalize_reward=True, anneal_lr=False, eval_episodes=32),
    "brax/hopper": dict(total_timesteps=1_000_000, num_envs=64, num_steps=64, num_minibatches=8, normalize_obs=True, normalize_reward=True, eval_episodes=16),
}
LR = {"Breakout-MinAtar": 5e-4, "SpaceInvaders-MinAtar": 5e-4, "Pendulum-v1": 3e-4, "brax/hopper": 3e-4}
# "a2c" in --objectives: A2C itself, i.e. experiments/configs/a2c.yaml's algorithm settings (zero drift, one epoch
# over one minibatch, raw advantages, RMSprop, n-step returns, no entropy) on the environment's rollout shape.
A2C_FILE = Path(__file__).parent / "configs" / "a2c.yaml"
ROLLOUT_SHAPE = ("algorithm", "env_id", "num_envs", "num_steps", "total_timesteps", "seeds")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", default="CartPole-v1,Acrobot-v1")
    parser.add_argument("--objectives", default="ppo_clip,a2c,no_trust_region,mdpo,dpo")
    parser.add_argument("--seeds", type=int, default=16)
    parser.add_argument("--total-timesteps", type=int, help="override every environment's budget")
    args = parser.parse_args()
    keys = shard_runs(jax.vmap(jax.random.key)(np.arange(args.seeds)), args.seeds)
    print(f"{'environment':<22} {'objective':<15} {'steps':>10} {'mean':>8} {'std':>7} {'median':>8} {'min':>8} {'max':>8}  time")
    for env_id in args.envs.split(","):
        for name in args.objectives.split(","):
            settings = dict(SETTINGS.get(env_id, {}), env_id=env_id, objective=name)
            if args.total_timesteps:
                settings["total_timesteps"] = args.total_timesteps
            overrides = {"lr": LR[env_id]} if env_id in LR else {}
            if name == "a2c":
                a2c = {k: v for k, v in load_yaml(A2C_FILE).items() if k not in ROLLOUT_SHAPE}
                settings = {**settings, **a2c}
            config, more = build(PPOConfig, PPOHparams, settings)
            agent = make_agent(config)
            hp = apply_overrides(agent.default_hparams(), {**overrides, **more})
            start = time.perf_counter()
            _, metrics = jax.jit(jax.vmap(agent.train, in_axes=(0, None)))(keys, hp)
            final = np.asarray(jax.block_until_ready(metrics["final_return"]))
            steps = agent.num_updates * agent.steps_per_update
            print(
                f"{env_id:<22} {name:<15} {steps:>10,} {final.mean():8.1f} {final.std():7.1f} {np.median(final):8.1f} "
                f"{final.min():8.1f} {final.max():8.1f}  {time.perf_counter() - start:5.0f} s",
                flush=True,
            )


if __name__ == "__main__":
    main()
