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
        expected, got = jax.jit(_draws)(key), jax.jit(lambda k: _draws(prng.unrolled(k)))(key)
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


def test_permutation_is_a_uniform_permutation():
    permutation = jax.jit(prng.permutation, static_argnums=(1, 2))  # one compile per shape, not one per operation
    for n, shape in ((1, ()), (2, (3,)), (7, (2, 2)), (512, (4,)), (1000, ()), (1500, (2,))):  # 1500: the fallback
        perms = np.asarray(permutation(jax.random.key(n), n, shape))
        assert perms.shape == shape + (n,) and perms.dtype == np.int32
        assert (np.sort(perms.reshape(-1, n), axis=1) == np.arange(n)).all()
    # Every one of the 6 orders of 3 elements equally often: chi-square with 5 dof, 99.99% quantile 25.7.
    perms = np.asarray(permutation(jax.random.key(0), 3, (12000,)))
    counts = np.unique(perms @ np.array([9, 3, 1]), return_counts=True)[1]
    assert len(counts) == 6 and ((counts - 2000) ** 2 / 2000).sum() < 25.7
    # The first position is uniform for a large n too (the single-sort path): chi-square, 15 dof, 99.99% 44.3.
    first = np.asarray(permutation(jax.random.key(1), 512, (8000,)))[:, 0] // 32
    counts = np.bincount(first, minlength=16)
    assert ((counts - 500) ** 2 / 500).sum() < 44.3


def test_permutation_breaks_ties_by_a_random_mask_not_by_index():
    # All random parts equal: the order is index XOR the mask word, so a tie goes either way.
    for mask, expected in ((0, [0, 1, 2, 3]), (1, [1, 0, 3, 2]), (3, [3, 2, 1, 0])):
        bits = jnp.array([0, 0, 0, 0, mask], jnp.uint32)
        assert prng._permutation_from_bits(bits).tolist() == expected
