"""Where one PPO update's time goes, against what the machine's matrix products allow. Prints its figures; asserts
nothing. One device, one run (pin it to a core with `taskset -c 0` for steady numbers).

    taskset -c 0 python experiments/bench_ppo_breakdown.py --env Breakout-MinAtar --set num_envs=64 \\
        --set num_steps=128 --set num_minibatches=8 --set activation=relu

Rows, each in ms per update (num_envs x num_steps environment steps):
  update          the whole update as training runs it (collect + learn)
  collect         the rollout, the critic's pass over it and GAE
  env only        the environment stack alone, random actions
  learn           epochs x minibatches of gradient steps, with the minibatch gathers and the optimizer
  gradients only  the same number of gradients of one fixed minibatch, plain SGD: the products alone
and the floating-point work of one update (XLA's cost analysis of one rollout step, one critic pass and one
minibatch gradient, times their counts), the GFLOP/s of a plain product of the first layer's shape on this machine
(`peak`), and the time the update would take at that rate: the floor for this network with the same arithmetic.
"""

import argparse
import dataclasses
import os
import time

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=1")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from jaxrl.agents.ppo import PPOConfig, PPOHparams, RolloutState, make_agent  # noqa: E402
from jaxrl.config import apply_overrides, build, parse_assignment  # noqa: E402
from machine_speed import product_gflops  # noqa: E402  (experiments/machine_speed.py)

UPDATES = 10  # per timed call, so one call is long enough to time


def best_ms(fn, *args, repeats: int = 5) -> float:
    """Best of `repeats` calls of compiled `fn`, in ms per update (the VM's speed drifts: the best is the steadiest)."""
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return min(times) / UPDATES * 1e3


def flops(fn, *args) -> float:
    return float(jax.jit(fn).lower(*args).compile().cost_analysis().get("flops", 0.0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a PPO setting")
    args = parser.parse_args()
    settings = dict(parse_assignment(text) for text in args.set)
    config, overrides = build(PPOConfig, PPOHparams, {**settings, "env_id": args.env})
    config = dataclasses.replace(config, total_timesteps=config.batch_size * UPDATES)
    if config.recurrent:
        raise SystemExit("bench_ppo_breakdown: recurrent=true is not supported (its minibatches split environments)")
    agent = make_agent(config)
    c = agent.config
    hp = apply_overrides(agent.default_hparams(), overrides)
    carry = jax.jit(agent.init)(jax.random.key(0), hp)
    _, batch = jax.jit(agent.collect)(carry, hp)
    print(f"{c.env_id}: {c.num_envs} envs x {c.num_steps} steps, {c.update_epochs} epochs x {c.num_minibatches} minibatches, "
          f"hidden {c.actor_hidden}/{c.critic_hidden} {c.activation}, obs {agent.spaces.obs_dim}; {jax.devices()[0].platform}")

    def repeat(step):  # everything the step reads is an argument: a captured array would be compiled in as a constant
        return jax.jit(lambda carry, *rest: jax.lax.scan(lambda x, _: (step(x, *rest), None), carry, None, UPDATES)[0])

    env = agent.env_stack(hp.gamma)

    def env_steps(start, env_params, key):
        def one(state_and_total, step_key):  # the total keeps the observations from being optimised away
            state, total = state_and_total
            action_key, env_key = jax.random.split(step_key)
            action = jax.random.randint(action_key, (c.num_envs,), 0, max(agent.spaces.num_actions, 1))
            obs, state, reward, *_ = env.step(env_key, state, action, env_params)
            return (state, total + obs.sum() + reward.sum()), None
        return jax.lax.scan(one, start, jax.random.split(key, c.num_steps))[0]

    def collect(carry, hp):  # the batch feeds the next carry, as the learning step would, so none of it is optimised away
        carry, batch = agent.collect(carry, hp)
        total = sum(x.sum() for x in jax.tree.leaves((batch.traj, batch.advantages, batch.targets)))
        return carry.replace(obs=carry.obs + 0.0 * total)

    flat = jax.tree.map(lambda x: x.reshape((1, c.batch_size) + x.shape[2:]), (batch.traj, batch.advantages, batch.targets))
    size = c.batch_size // c.num_minibatches
    minibatch = (jnp.zeros((size, 0)), *jax.tree.map(lambda x: x[:, :size], flat))
    gradient = jax.grad(lambda params, minibatch, hp: agent.loss(params, hp, minibatch, jnp.float32(0.5))[0])
    steps = c.update_epochs * c.num_minibatches

    def sgd_steps(params, minibatch, hp):
        return jax.lax.fori_loop(0, steps, lambda i, p: jax.tree.map(lambda a, g: a - 1e-6 * g, p, gradient(p, minibatch, hp)), params)

    rows = {
        "update": best_ms(repeat(lambda x, hp: agent.update(x, hp)[0]), carry, hp),
        "collect": best_ms(repeat(collect), carry, hp),
        "env only": best_ms(repeat(env_steps), (carry.env_state, jnp.float32(0)), carry.env_params, carry.key),
        "learn": best_ms(repeat(lambda x, batch, hp: agent.learn(x, batch, hp)[0]), carry, batch, hp),
        "gradients only": best_ms(repeat(sgd_steps), carry.params, minibatch, hp),
    }
    for name, ms in rows.items():
        print(f"  {name:<15} {ms:7.1f} ms/update  ({c.batch_size / ms:7.1f}k env steps/s)")

    def actor(params, obs):  # the rollout's forward pass: in training its per-step critic is dropped (critic pass)
        pi = agent.policy.apply(params, carry.hidden, obs[None], carry.episode_start[None])[1]
        return pi.log_prob(pi.mode())

    def critic(params, traj):
        last = RolloutState(carry.env_state, batch.traj.obs[0], carry.hidden, carry.episode_start)
        traj, next_values = agent.critic_values(params, traj, last)
        return traj.value, next_values

    work = {
        "rollout forward": c.num_steps * flops(actor, carry.params, carry.obs),
        "critic pass": flops(critic, carry.params, batch.traj),
        "gradients": steps * flops(gradient, carry.params, minibatch, hp),
    }
    total = sum(work.values())
    peak = max(product_gflops(size, agent.spaces.obs_dim, c.actor_hidden[0]) for _ in range(3))
    print("  work per update: " + ", ".join(f"{k} {v / 1e9:.2f}" for k, v in work.items()) + f" GFLOP; total {total / 1e9:.2f}")
    print(f"  peak: ({size} x {agent.spaces.obs_dim}) @ ({agent.spaces.obs_dim} x {c.actor_hidden[0]}) products run at {peak:.1f} GFLOP/s")
    floor = total / peak / 1e6
    print(f"  floor at peak: {floor:.1f} ms/update ({c.batch_size / floor:.1f}k env steps/s); the update runs at "
          f"{total / rows['update'] / 1e6:.1f} GFLOP/s, {100 * floor / rows['update']:.0f}% of peak")


if __name__ == "__main__":
    main()
