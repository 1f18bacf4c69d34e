import jax
import jax.numpy as jnp
import numpy as np

from jaxrl.networks import linear, orthogonal


def test_linear_gradient_equals_autodiff():
    keys = jax.random.split(jax.random.key(0), 4)
    kernel, bias = jax.random.normal(keys[0], (5, 3)), jax.random.normal(keys[1], (3,))
    for shape in [(8, 5), (4, 6, 5)]:  # a batch and a (time, batch) sequence
        x = jax.random.normal(keys[2], shape)
        weights = jax.random.normal(keys[3], shape[:-1] + (3,))

        def loss(f, x, kernel, bias):
            return jnp.sum(jnp.tanh(f(x, kernel, bias)) * weights)

        got = jax.jit(jax.grad(lambda *a: loss(linear, *a), argnums=(0, 1, 2)))(x, kernel, bias)
        expected = jax.grad(lambda *a: loss(lambda x, k, b: x @ k + b, *a), argnums=(0, 1, 2))(x, kernel, bias)
        assert got[0].shape == x.shape and got[1].shape == kernel.shape and got[2].shape == bias.shape
        for g, e in zip(got, expected):
            np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(linear(x, kernel, bias), x @ kernel + bias, rtol=1e-6)


def test_orthogonal_init_matches_qr():
    for shape in [(4, 64), (64, 64), (64, 2), (400, 64)]:
        w = np.asarray(orthogonal(2.0)(jax.random.key(0), shape), np.float64)
        small = min(shape)
        gram = w.T @ w if shape[0] >= shape[1] else w @ w.T
        np.testing.assert_allclose(gram, 4.0 * np.eye(small), atol=1e-4)
        # Same matrix as a sign-corrected QR of the same Gaussian draw.
        a = np.asarray(jax.random.normal(jax.random.key(0), (max(shape), small)), np.float64)
        q, r = np.linalg.qr(a)
        q = q * np.sign(np.diag(r))
        np.testing.assert_allclose(w, 2.0 * (q if shape[0] >= shape[1] else q.T), atol=1e-4)
