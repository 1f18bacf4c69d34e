"""The unrolled threefry keys must give exactly the numbers of JAX's default keys: they only change speed."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxrl import prng


def _draws(key):
    sub = jax.random.split(key, 3)
    return {
        "split": jax.random.key_data(sub),
        "nested_split": jax.random.key_data(jax.vmap(jax.random.split)(sub)),
        "fold_in": jax.random.key_data(jax.random.fold_in(key, 12345)),
        "uniform": jax.random.uniform(sub[0], (5, 3)),
        "normal": jax.random.normal(sub[1], (7,)),
        "gumbel": jax.random.gumbel(sub[2], (4, 2)),
        "bits8": jax.random.bits(key, (9,), jnp.uint8),
        "bits16": jax.random.bits(key, (2, 3), jnp.uint16),
        "bits32": jax.random.bits(key, (), jnp.uint32),
        "permutation": jax.random.permutation(key, 513),
        "categorical": jax.random.categorical(key, jnp.log(jnp.array([0.2, 0.3, 0.5])), shape=(50,)),
        "bernoulli": jax.random.bernoulli(key, 0.3, (16,)),
    }


def test_unrolled_keys_draw_the_same_bits():
    for seed in (0, 1, 2**31 - 1):
        key = jax.random.key(seed)
        expected, got = _draws(key), jax.jit(lambda k: _draws(prng.unrolled(k)))(key)
        for name in expected:
            np.testing.assert_array_equal(np.asarray(got[name]), np.asarray(expected[name]), err_msg=name)


def test_unrolled_keys_under_vmap_and_scan():
    keys = jax.random.split(jax.random.key(7), 6)

    def scan_draws(keys):
        return jax.lax.scan(lambda c, k: (c, jax.random.uniform(k, (3,))), 0, keys)[1]

    np.testing.assert_array_equal(jax.jit(scan_draws)(prng.unrolled(keys)), jax.jit(scan_draws)(keys))
    np.testing.assert_array_equal(
        jax.vmap(lambda k: jax.random.normal(k, (2,)))(prng.unrolled(keys)), jax.vmap(lambda k: jax.random.normal(k, (2,)))(keys)
    )
    assert jax.random.key_impl(prng.unrolled(keys)) != jax.random.key_impl(keys)  # the conversion did happen


def test_unrolled_accepts_raw_keys_and_leaves_other_impls_alone():
    raw = jax.random.PRNGKey(3)
    np.testing.assert_array_equal(jax.random.uniform(prng.unrolled(raw), (4,)), jax.random.uniform(raw, (4,)))
    rbg = jax.random.key(0, impl="rbg")
    assert prng.unrolled(rbg) is rbg
    once = prng.unrolled(jax.random.key(0))
    assert prng.unrolled(once) is once
