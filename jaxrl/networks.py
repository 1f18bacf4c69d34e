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

ACTIVATIONS = {"tanh": nn.tanh, "relu": nn.relu, "gelu": nn.gelu, "swish": nn.swish}
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


def as_float(x: jax.Array) -> jax.Array:
    """A layer's input in float32: rollouts and replay buffers keep 0/1 observations as bool
    (envs.compact_observations)."""
    return x.astype(jnp.float32) if x.dtype == jnp.bool_ else x


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
        return linear(as_float(x), kernel, bias)


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
    `reverse`: the loop runs from t = T - 1 down to 0 (LPG reads a trajectory backwards: resets[t] = "an episode
    ended at t" then cuts off what came from t + 1).

    The equations are flax's `GRUCell` (Cho et al. 2014, as in PyTorch):
        r = sigmoid(W_ir x + b_ir + W_hr h),   z = sigmoid(W_iz x + b_iz + W_hz h)
        n = tanh(W_in x + b_in + r * (W_hn h + b_hn)),   h' = (1 - z) * n + z * h
    with the three input kernels (and the three recurrent ones) side by side in one matrix. The input projection
    of the whole sequence is one product before the loop, so each step does one (B, H) x (H, 3H) product: the
    loop over time, which cannot be parallelised, holds a third of the work it would with six per-gate products.
    Same initialisers as flax: LeCun normal input kernels, an orthogonal recurrent kernel per gate, zero biases.
    """

    hidden_size: int
    reverse: bool = False

    @nn.compact
    def __call__(self, carry: jax.Array, inputs: jax.Array, resets: jax.Array) -> tuple[jax.Array, jax.Array]:
        h_size = self.hidden_size

        def recurrent_init(key, shape, dtype=jnp.float32):
            return jnp.concatenate([orthogonal(1.0)(k, (h_size, h_size), dtype) for k in jax.random.split(key, 3)], axis=1)

        input_kernel = self.param("input_kernel", nn.initializers.lecun_normal(in_axis=0, out_axis=1), (inputs.shape[-1], 3 * h_size))
        input_bias = self.param("input_bias", nn.initializers.zeros, (3 * h_size,))
        hidden_kernel = self.param("hidden_kernel", recurrent_init, (h_size, 3 * h_size))
        hidden_bias = self.param("hidden_bias", nn.initializers.zeros, (h_size,))  # b_hn: inside r * (...)
        projected = inputs @ input_kernel + input_bias  # (T, B, 3H)

        def step(h, xs):
            x, reset = xs
            h = jnp.where(reset[:, None], jnp.zeros_like(h), h)
            x_r, x_z, x_n = jnp.split(x, 3, axis=-1)
            h_r, h_z, h_n = jnp.split(h @ hidden_kernel, 3, axis=-1)
            r = nn.sigmoid(x_r + h_r)
            z = nn.sigmoid(x_z + h_z)
            n = jnp.tanh(x_n + r * (h_n + hidden_bias))
            h = (1.0 - z) * n + z * h
            return h, h

        return jax.lax.scan(step, carry, (projected, resets), reverse=self.reverse)


def conv3x3(image: jax.Array, kernel: jax.Array, bias: jax.Array, padding: str = "SAME") -> jax.Array:
    """A 3x3 convolution, stride 1, SAME (zero) padding or VALID (none): image (N, H, W, C), kernel (3, 3, C, F),
    bias (F,) -> (N, H, W, F) or (N, H - 2, W - 2, F), as flax's `nn.Conv`. With `speedups.conv_as_patches` it is
    the same sums as a matrix product."""
    image = as_float(image)
    if speedups.conv_as_patches():
        pad = 1 if padding == "SAME" else 0
        padded = jnp.pad(image, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
        height, width = padded.shape[1] - 2, padded.shape[2] - 2
        patches = jnp.concatenate([padded[:, i : i + height, j : j + width] for i in range(3) for j in range(3)], axis=-1)
        return patches @ kernel.reshape(-1, kernel.shape[-1]) + bias
    out = jax.lax.conv_general_dilated(image, kernel, (1, 1), padding, dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return out + bias


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
        kernel = self.param("conv_kernel", orthogonal(np.sqrt(2)), (3, 3, image.shape[-1], self.filters))
        bias = self.param("conv_bias", nn.initializers.zeros, (self.filters,))
        x = nn.relu(conv3x3(image.reshape((-1,) + image.shape[-3:]), kernel, bias)).reshape(batch + (-1,))
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


# ---------------------------------------------------------------------------------- value-based and off-policy


Q_TORSOS = ("dense", "conv")


class QNetwork(nn.Module):
    """Action values of a discrete action space: an MLP (optionally LayerNorm before each activation, as PQN) and
    a linear head, or a dueling head Q = V + A - mean_a A (Wang et al. 2016, eq. 9). obs (..., obs_dim) -> (..., A).

    torso "conv": the flat observation is first seen as an image of `image_shape` (H, W, C) and passed through
    PQN's MinAtar convolution (16 filters 3x3, VALID, LayerNorm as the layers, ReLU), flattened."""

    num_actions: int
    hidden: Sequence[int] = (128, 128)
    activation: str = "relu"
    layer_norm: bool = False
    dueling: bool = False
    torso: str = "dense"
    image_shape: tuple[int, ...] = ()

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        x = obs
        if self.torso == "conv":
            batch = obs.shape[:-1]
            image = obs.reshape((-1, *self.image_shape))
            kernel = self.param("conv_kernel", orthogonal(np.sqrt(2)), (3, 3, self.image_shape[-1], 16))
            x = conv3x3(image, kernel, self.param("conv_bias", nn.initializers.zeros, (16,)), padding="VALID")
            x = ACTIVATIONS[self.activation](nn.LayerNorm()(x) if self.layer_norm else x).reshape(batch + (-1,))
        for width in self.hidden:
            x = dense(width, np.sqrt(2))(x)
            x = ACTIVATIONS[self.activation](nn.LayerNorm()(x) if self.layer_norm else x)
        if not self.dueling:
            return dense(self.num_actions, 1.0)(x)
        advantage = dense(self.num_actions, 1.0)(x)
        return dense(1, 1.0)(x) + advantage - advantage.mean(axis=-1, keepdims=True)


class SquashedGaussianActor(nn.Module):
    """SAC's policy: an MLP giving the mean and log standard deviation of a Gaussian over u, whose sample is squashed
    by tanh into the action bounds (`squashed_sample`). obs (..., obs_dim) -> (mean, log_std), each (..., action_dim);
    log_std is mapped smoothly into [LOG_STD_MIN, LOG_STD_MAX]."""

    action_dim: int
    hidden: Sequence[int] = (256, 256)
    activation: str = "relu"

    LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0

    @nn.compact
    def __call__(self, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
        x = MLP(self.hidden, self.activation)(obs)
        mean = dense(self.action_dim, 0.01)(x)
        log_std = jnp.tanh(dense(self.action_dim, 0.01)(x))
        return mean, self.LOG_STD_MIN + 0.5 * (self.LOG_STD_MAX - self.LOG_STD_MIN) * (log_std + 1.0)


def squashed_sample(mean: jax.Array, log_std: jax.Array, noise: jax.Array, low: jax.Array, high: jax.Array) -> tuple[jax.Array, jax.Array]:
    """A reparameterised sample of the tanh-squashed Gaussian and its log-density (Haarnoja et al. 2018, appendix C,
    eq. 21, with the affine map to the bounds): u = mean + std * noise, a = c + s tanh(u), c = (high + low) / 2,
    s = (high - low) / 2, and

        log pi(a) = log N(u; mean, std) - sum_i [log s_i + log(1 - tanh(u_i)^2)],

    log(1 - tanh(u)^2) written stably as 2 (log 2 - u - softplus(-2u)). noise (..., d) standard normal ->
    (action (..., d), log_prob (...))."""
    std = jnp.exp(log_std)
    u = mean + std * noise
    gaussian = -0.5 * noise**2 - log_std - 0.5 * jnp.log(2.0 * jnp.pi)
    scale = 0.5 * (high - low)
    log_det = jnp.log(scale) + 2.0 * (jnp.log(2.0) - u - jax.nn.softplus(-2.0 * u))
    return 0.5 * (high + low) + scale * jnp.tanh(u), (gaussian - log_det).sum(axis=-1)


class TwinCritic(nn.Module):
    """Two independent Q(s, a) MLPs (clipped double Q, Fujimoto et al. 2018). (obs, action) -> (2, ...)."""

    hidden: Sequence[int] = (256, 256)
    activation: str = "relu"

    @nn.compact
    def __call__(self, obs: jax.Array, action: jax.Array) -> jax.Array:
        x = jnp.concatenate([obs, action], axis=-1)
        return jnp.stack([dense(1, 1.0)(MLP(self.hidden, self.activation)(x))[..., 0] for _ in range(2)])
