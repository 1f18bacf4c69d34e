"""jaxrl.speedups: every helper on both branches. Random draws are bit-identical; the network tricks change float
rounding only; a whole PPO update agrees to rounding."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl import speedups
from jaxrl.networks import linear


def test_random_helpers_are_bit_identical_on_both_branches():
    key = jax.random.key(3)
    out = {}
    for flag in (True, False):
        with speedups.using(flag):
            assert speedups.enabled() is flag
            out[flag] = jax.jit(lambda k: (
                jax.random.key_data(speedups.split_for_loop(k, 5)),
                jax.random.normal(speedups.loop_key(k), (4, 3)),
                speedups.permutations(k, 96, (3,)),
            ))(key)
    for a, b in zip(out[True], out[False]):
        np.testing.assert_array_equal(a, b)


def test_linear_and_its_gradient_agree_on_both_branches():
    x = jax.random.normal(jax.random.key(0), (4, 4))  # small: the elementwise path when enabled
    big = jax.random.normal(jax.random.key(1), (256, 4))
    kernel, bias = jax.random.normal(jax.random.key(2), (4, 8)), jnp.arange(8.0)
    results = {}
    for flag in (True, False):
        with speedups.using(flag):
            loss = lambda x, k, b: jnp.sum(jnp.tanh(linear(x, k, b)) ** 2)
            results[flag] = jax.jit(lambda x, big: (linear(x, kernel, bias), jax.grad(loss, argnums=(0, 1, 2))(big, kernel, bias)))(x, big)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5), results[True], results[False])
    np.testing.assert_allclose(results[False][0], x @ kernel + bias, rtol=1e-6, atol=1e-6)


def test_ppo_update_agrees_on_both_branches():
    from jaxrl.agents.ppo import PPOConfig, make_agent

    agent = make_agent(PPOConfig(num_envs=4, num_steps=16, total_timesteps=4 * 16 * 2, eval_episodes=2))
    hp = agent.default_hparams()
    out = {}
    for flag in (True, False):
        with speedups.using(flag):
            carry = agent.init(jax.random.key(0), hp)
            carry, batch = jax.jit(agent.collect)(carry, hp)
            new, metrics = jax.jit(agent.learn)(carry, batch, hp)
            out[flag] = (batch.traj.value, batch.advantages, new.params, metrics["loss"])
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5), out[True], out[False])


@pytest.mark.parametrize("padding", ["SAME", "VALID"])
def test_conv3x3_and_its_gradient_agree_on_both_branches_and_with_flax(padding):
    import flax.linen as nn

    from jaxrl.networks import conv3x3

    image = jax.random.normal(jax.random.key(0), (6, 5, 5, 3))
    conv = nn.Conv(4, (3, 3), padding=padding)
    params = conv.init(jax.random.key(1), image)["params"]
    params = {**params, "bias": jnp.arange(4.0)}
    reference = conv.apply({"params": params}, image)
    for flag in (True, False):
        with speedups.using(flag):
            out = jax.jit(conv3x3, static_argnums=3)(image, params["kernel"], params["bias"], padding)
            grads = jax.jit(jax.grad(lambda k, x: jnp.sum(jnp.sin(conv3x3(x, k, params["bias"], padding))), argnums=(0, 1)))(params["kernel"], image)
        ref_grads = jax.grad(lambda k, x: jnp.sum(jnp.sin(conv.apply({"params": {**params, "kernel": k}}, x))), argnums=(0, 1))(params["kernel"], image)
        assert out.shape == reference.shape == ((6, 5, 5, 4) if padding == "SAME" else (6, 3, 3, 4))
        np.testing.assert_allclose(out, reference, atol=1e-5)
        for g, r in zip(grads, ref_grads):
            np.testing.assert_allclose(g, r, atol=1e-4)
