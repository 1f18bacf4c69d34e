"""Actor-critic networks: MLP and GRU torsos with categorical or Gaussian heads. The one place that touches
distrax. Initialisation follows the published PPO implementations: orthogonal weights with gain sqrt(2) in the
torso, 0.01 on the policy head and 1.0 on the value head, zero biases."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax.traverse_util import flatten_dict, unflatten_dict

from jaxrl import speedups

ACTIVATIONS = {"tanh": nn.tanh, "relu": nn.relu, "gelu": nn.gelu}
_GAINS = "orthogonal_gain"  # the variable collection where each Dense records its kernel's gain at init
_BATCHED = "batched_orthogonal_init"  # an rng stream whose presence at init means `init_params` draws the kernels


def orthogonal(gain: float):
    """Orthogonal initialiser (a Haar-random matrix times `gain`), the same distribution as flax's.

    flax's version calls LAPACK's QR, whose batched form (what a vmap over seeds makes) can deadlock the CPU
    thread pool (seen with jaxlib 0.10 on 2 cores); Gram-Schmidt in plain jnp gives the same Q (R's diagonal
    positive) with no LAPACK call.
    """

    def init(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
        n_rows, n_cols = int(np.prod(shape[:-1])), shape[-1]
        tall, short = max(n_rows, n_cols), min(n_rows, n_cols)
        q = _gram_schmidt(jax.random.normal(key, (1, tall, short), jnp.float32))[0]
        q = q if n_rows >= n_cols else q.T
        return (gain * q).reshape(shape).astype(dtype)

    return init


def _gram_schmidt(a: jax.Array) -> jax.Array:
    """Q of the thin QR of each (tall, short) matrix in a (batch, tall, short), R's diagonal positive. All-zero
    columns stay zero (`orthogonal_batch` pads with them)."""

    def column(j, q):
        v = jax.lax.dynamic_index_in_dim(a, j, axis=2, keepdims=False)
        for _ in range(2):  # re-orthogonalise once: classical Gram-Schmidt twice is as stable as QR here
            v = v - jnp.einsum("bts,bs->bt", q, jnp.einsum("bts,bt->bs", q, v))
        norm = jnp.linalg.norm(v, axis=1, keepdims=True)
        return jax.lax.dynamic_update_index_in_dim(q, v / jnp.where(norm > 0, norm, 1.0), j, axis=2)

    return jax.lax.fori_loop(0, a.shape[2], column, jnp.zeros_like(a))


def orthogonal_batch(key: jax.Array, shapes: Sequence[tuple[int, ...]], gains: Sequence[jax.Array]) -> list[jax.Array]:
    """One orthogonal matrix per shape (times its gain), each with the distribution of `orthogonal(gain)`, all from
    one Gaussian draw and one Gram-Schmidt loop.

    Why: every separate draw compiles its own threefry loop and every separate Gram-Schmidt its own loop; for
    PPO's six layers that was 2.4 of the 3 CPU-seconds spent compiling `init`. Each matrix is the leading
    (tall, short) block of a zero-padded (max tall, max short) Gaussian; zero rows and later columns do not change
    the Gram-Schmidt of that block, so each block's Q is Haar-distributed as before, and the blocks are independent.
    """
    dims = [(int(np.prod(shape[:-1])), shape[-1]) for shape in shapes]
    blocks = [(max(r, c), min(r, c)) for r, c in dims]
    tall, short = max(b[0] for b in blocks), max(b[1] for b in blocks)
    a = jax.random.normal(speedups.loop_key(key), (len(shapes), tall, short), jnp.float32)
    rows, cols = np.arange(tall)[:, None], np.arange(short)[None, :]
    a = a * np.stack([(rows < t) & (cols < s) for t, s in blocks])
    q = _gram_schmidt(a)
    out = []
    for m, gain, (n_rows, n_cols), (t, s), shape in zip(q, gains, dims, blocks, shapes):
        m = m[:t, :s]
        out.append((gain * (m if n_rows >= n_cols else m.T)).reshape(shape))
    return out


def init_params(network: nn.Module, key: jax.Array, *example_inputs: Any) -> dict:
    """`network.init(key, *example_inputs)` restricted to its "params", with every `Dense` kernel redrawn by
    `orthogonal_batch` (same distribution, one batched draw: much less to compile). Passing the `_BATCHED` rng
    stream tells each `Dense` to skip its own draw."""
    init_key, batch_key = jax.random.split(key)
    variables = network.init({"params": init_key, _BATCHED: init_key}, *example_inputs)
    params, gains = variables["params"], flatten_dict(variables.get(_GAINS, {}))
    if not gains:
        return {"params": params}
    flat = flatten_dict(params)
    paths = sorted(gains)
    kernels = orthogonal_batch(batch_key, [flat[p].shape for p in paths], [gains[p] for p in paths])
    flat.update(zip(paths, kernels))
    return {"params": unflatten_dict(flat)}


# Products with at most this many multiply-adds are written as a broadcast multiply and a sum (see `linear`).
_ELEMENTWISE_MAX_MACS = 4096


@jax.custom_vjp
def linear(x: jax.Array, kernel: jax.Array, bias: jax.Array) -> jax.Array:
    """x (..., n_in) @ kernel (n_in, n_out) + bias (n_out,). Autodiff's own backward pass is the same maths; this
    one only lays out the weight gradient differently (see `_linear_bwd`). Tiny products may be written as a
    multiply and a sum (see speedups.small_products_elementwise)."""
    macs = int(np.prod(x.shape[:-1])) * kernel.shape[0] * kernel.shape[1]
    if macs <= _ELEMENTWISE_MAX_MACS and speedups.small_products_elementwise():
        return (x[..., :, None] * kernel).sum(axis=-2) + bias
    return x @ kernel + bias


def _linear_fwd(x, kernel, bias):
    return linear(x, kernel, bias), (x, kernel)


def _linear_bwd(residuals, grad):
    x, kernel = residuals
    x2, grad2 = x.reshape(-1, x.shape[-1]), grad.reshape(-1, grad.shape[-1])
    # Autodiff contracts x and grad over their leading (batch) axis; a barrier keeps the transpose explicit where
    # that is faster (see speedups.barrier_transposed_weight_grad).
    x2t = jax.lax.optimization_barrier(x2.T) if speedups.barrier_transposed_weight_grad() else x2.T
    kernel_grad = x2t @ grad2
    return grad @ kernel.T, kernel_grad, grad2.sum(axis=0)


linear.defvjp(_linear_fwd, _linear_bwd)


class Dense(nn.Module):
    """`nn.Dense` (same parameter names and shapes) whose backward pass runs faster on CPU; see `linear`."""

    features: int
    gain: float

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        # The orthogonal draw is a Gram-Schmidt loop, slow to trace, and flax traces a parameter's initialiser on every
        # `apply` too (to check the stored shape). Zeros of the same shape stand in for it there and under
        # `init_params`, which draws all kernels itself: tracing PPO's train function got about 0.15 s faster.
        own_draw = self.is_initializing() and not self.has_rng(_BATCHED)
        kernel = self.param("kernel", orthogonal(self.gain) if own_draw else nn.initializers.zeros, (x.shape[-1], self.features))
        if self.is_initializing():  # lets `init_params` redraw all kernels in one batch
            self.variable(_GAINS, "kernel", lambda: jnp.float32(self.gain))
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        return linear(x, kernel, bias)


def dense(features: int, gain: float) -> Dense:
    return Dense(features, gain)


class MLP(nn.Module):
    hidden: Sequence[int]
    activation: str = "tanh"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for width in self.hidden:
            x = ACTIVATIONS[self.activation](dense(width, np.sqrt(2))(x))
        return x


class PolicyHead(nn.Module):
    """Categorical logits for `num_actions` > 0 discrete actions, else a diagonal Gaussian over `action_dim`
    with a state-independent log standard deviation."""

    num_actions: int
    action_dim: int

    @nn.compact
    def __call__(self, x: jax.Array) -> distrax.Distribution:
        if self.num_actions:
            return distrax.Categorical(logits=dense(self.num_actions, 0.01)(x))
        mean = dense(self.action_dim, 0.01)(x)
        log_std = self.param("log_std", nn.initializers.zeros, (self.action_dim,))
        return distrax.MultivariateNormalDiag(mean, jnp.exp(log_std))


class ActorCritic(nn.Module):
    """Separate actor and critic MLPs. obs: (..., obs_dim) -> (policy distribution, value (...,))."""

    num_actions: int  # 0 for continuous actions
    action_dim: int
    actor_hidden: Sequence[int] = (64, 64)
    critic_hidden: Sequence[int] = (64, 64)
    activation: str = "tanh"

    @nn.compact
    def __call__(self, obs: jax.Array) -> tuple[distrax.Distribution, jax.Array]:
        pi = PolicyHead(self.num_actions, self.action_dim)(MLP(self.actor_hidden, self.activation)(obs))
        value = dense(1, 1.0)(MLP(self.critic_hidden, self.activation)(obs))
        return pi, value[..., 0]


class ResetGRU(nn.Module):
    """A GRU over time whose hidden state is zeroed where `reset` is true, before the step that sees it.

    inputs: (T, B, F), resets: (T, B) bool, carry: (B, H) -> (new carry (B, H), outputs (T, B, H)).
    """

    hidden_size: int

    @nn.compact
    def __call__(self, carry: jax.Array, inputs: jax.Array, resets: jax.Array) -> tuple[jax.Array, jax.Array]:
        cell = nn.GRUCell(self.hidden_size)

        def step(cell, h, xs):
            x, reset = xs
            h = jnp.where(reset[:, None], jnp.zeros_like(h), h)
            return cell(h, x)

        scan = nn.scan(step, variable_broadcast="params", split_rngs={"params": False}, in_axes=0, out_axes=0)
        return scan(cell, carry, (inputs, resets))


class MazeTorso(nn.Module):
    """The maze's flat observation (jaxrl.envs.maze, 79 values) -> features: a 3x3 convolution with 16 filters over
    the 5x5x3 egocentric view (ReLU, flattened: 400 values) next to a 5-unit embedding of the direction one-hot,
    as the JaxUED / minimax maze students. obs: (..., 79) -> (..., 405)."""

    filters: int = 16
    direction_features: int = 5

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        from jaxrl.envs.maze import split_observation

        image, direction = split_observation(obs)
        batch = image.shape[:-3]
        conv = nn.Conv(self.filters, (3, 3), padding="SAME", kernel_init=orthogonal(np.sqrt(2)))
        x = nn.relu(conv(image.reshape((-1,) + image.shape[-3:]))).reshape(batch + (-1,))
        return jnp.concatenate([x, dense(self.direction_features, np.sqrt(2))(direction)], axis=-1)


TORSOS = ("dense", "maze_conv")


class RecurrentActorCritic(nn.Module):
    """Embedding -> GRU (reset at episode starts) -> actor and critic MLP heads. The embedding (`torso`) is a
    dense layer ("dense") or the maze's convolution over its egocentric view ("maze_conv", `MazeTorso`).

    obs: (T, B, obs_dim), resets: (T, B) -> (carry (B, H), policy over (T, B), value (T, B)).
    """

    num_actions: int
    action_dim: int
    hidden_size: int = 128
    actor_hidden: Sequence[int] = (64,)
    critic_hidden: Sequence[int] = (64,)
    activation: str = "tanh"
    torso: str = "dense"

    @nn.compact
    def __call__(self, carry: jax.Array, obs: jax.Array, resets: jax.Array):
        if self.torso == "maze_conv":
            x = MazeTorso()(obs)
        else:
            x = ACTIVATIONS[self.activation](dense(self.hidden_size, np.sqrt(2))(obs))
        carry, x = ResetGRU(self.hidden_size)(carry, x, resets)
        pi = PolicyHead(self.num_actions, self.action_dim)(MLP(self.actor_hidden, self.activation)(x))
        value = dense(1, 1.0)(MLP(self.critic_hidden, self.activation)(x))
        return carry, pi, value[..., 0]

    def initial_carry(self, batch_size: int) -> jax.Array:
        return jnp.zeros((batch_size, self.hidden_size), jnp.float32)


def policy_noise(key: jax.Array, batch_shape: tuple[int, ...], num_actions: int, action_dim: int) -> jax.Array:
    """All the randomness a rollout's action sampling needs, drawn in one call (cheaper than a draw per step):
    Gumbel noise (*batch_shape, num_actions) for categorical policies, standard normal (*batch_shape,
    action_dim) for Gaussian ones."""
    if num_actions:
        return jax.random.gumbel(key, batch_shape + (num_actions,))
    return jax.random.normal(key, batch_shape + (action_dim,))


def sample_with_noise(pi: distrax.Distribution, noise: jax.Array) -> jax.Array:
    """A sample of `pi` from noise made by `policy_noise` (Gumbel-max for categorical, location-scale for
    Gaussian): the same distribution as `pi.sample`."""
    if isinstance(pi, distrax.Categorical):
        return jnp.argmax(pi.logits + noise, axis=-1)
    return pi.loc + pi.scale_diag * noise
