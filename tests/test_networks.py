import jax
import jax.numpy as jnp
import numpy as np

from jaxrl.networks import linear, orthogonal


def test_linear_gradient_equals_autodiff():
    rng = np.random.default_rng(0)  # NumPy's draws: each eager jax.random call of a new shape compiles (~0.7 s)
    normal = lambda shape: rng.standard_normal(shape).astype(np.float32)
    kernel, bias = normal((5, 3)), normal((3,))
    # A batch and a (time, batch) sequence, small enough for the elementwise product; then one big enough for a dot.
    for shape in [(8, 5), (4, 6, 5), (300, 5)]:
        x = normal(shape)
        weights = normal(shape[:-1] + (3,))

        def loss(f, x, kernel, bias):
            return jnp.sum(jnp.tanh(f(x, kernel, bias)) * weights)

        got = jax.jit(jax.grad(lambda *a: loss(linear, *a), argnums=(0, 1, 2)))(x, kernel, bias)
        expected = jax.jit(jax.grad(lambda *a: loss(lambda x, k, b: x @ k + b, *a), argnums=(0, 1, 2)))(x, kernel, bias)
        assert got[0].shape == x.shape and got[1].shape == kernel.shape and got[2].shape == bias.shape
        for g, e in zip(got, expected):
            np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(linear(x, kernel, bias), x @ kernel + bias, rtol=1e-5, atol=1e-6)


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


def test_init_params_draws_orthogonal_kernels_with_each_layers_gain():
    from jaxrl.networks import ActorCritic, init_params

    net = ActorCritic(num_actions=2, action_dim=1, actor_hidden=(64, 32), critic_hidden=(64, 64))
    obs = jnp.zeros((1, 5))
    params = jax.jit(lambda k: init_params(net, k, obs))(jax.random.key(0))
    reference = jax.jit(net.init)(jax.random.key(0), obs)
    assert jax.tree.structure(params) == jax.tree.structure({"params": reference["params"]})
    gains = {"MLP": np.sqrt(2), "PolicyHead_0": 0.01, "Dense_0": 1.0}  # torso, policy head, value head
    # Both the batched draw and a plain `net.init` (where each Dense draws its own kernel) give these kernels.
    for tree in (params, {"params": reference["params"]}):
        for path, x in jax.tree_util.tree_leaves_with_path(tree):
            name = jax.tree_util.keystr(path)
            if "bias" in name:
                assert (np.asarray(x) == 0).all()
                continue
            gain = next(g for k, g in gains.items() if k in name.split("]")[1])
            m = np.asarray(x if x.shape[0] >= x.shape[1] else x.T)
            np.testing.assert_allclose(m.T @ m, gain**2 * np.eye(m.shape[1]), atol=1e-5 * gain**2, err_msg=name)
    # Haar-distributed entries: E[q_ij^2] = 1 / rows for a tall (rows, cols) block, whatever the padding.
    kernels = jax.jit(jax.vmap(lambda k: init_params(net, k, obs)["params"]["MLP_0"]["Dense_1"]["kernel"]))(
        jax.random.split(jax.random.key(1), 200)
    )
    assert kernels.shape == (200, 64, 32)
    np.testing.assert_allclose(np.mean(np.asarray(kernels) ** 2) / 2, 1 / 64, rtol=0.02)


def test_networks_take_bool_observations_as_their_float_values():
    # Rollouts and replay buffers keep 0/1 observations as bool (envs.compact_observations); every torso must see
    # them as the float32 0/1 they stand for, gradients included.
    from jaxrl.networks import ActorCritic, QNetwork, init_params

    obs = jnp.asarray(np.random.default_rng(1).random((6, 10 * 10 * 4)) < 0.1)
    for net in (ActorCritic(4, 1, activation="relu"), QNetwork(4, hidden=(32,), torso="conv", image_shape=(10, 10, 4))):
        params = jax.jit(lambda key: init_params(net, key, obs[:1].astype(jnp.float32)))(jax.random.key(0))

        def loss(params, x):
            out = net.apply(params, x)
            return jnp.sum(out[0].logits if isinstance(out, tuple) else out)

        for f in (jax.jit(loss), jax.jit(jax.grad(loss))):
            for a, b in zip(jax.tree.leaves(f(params, obs)), jax.tree.leaves(f(params, obs.astype(jnp.float32)))):
                np.testing.assert_array_equal(a, b)
