"""Drift functions: the standard PPO surrogate, hand-computed DPO values, the drift axioms, LPO's PPO init."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl import objectives
from jaxrl.envs import InvalidChoiceError

PROGRESS = jnp.float32(0.3)


def grid():
    log_ratio = jnp.log(jnp.linspace(0.3, 2.5, 41))
    adv = jnp.linspace(-3.0, 3.0, 25)
    l, a = jnp.meshgrid(log_ratio, adv, indexing="ij")
    return l.ravel(), a.ravel()


def actor_loss(obj, params, log_ratio, adv):
    return -jnp.mean(jnp.exp(log_ratio) * adv - obj.drift(params, log_ratio, adv, PROGRESS))


def test_ppo_clip_is_the_standard_clipped_surrogate():
    obj = objectives.make("ppo_clip", clip_eps=0.2)
    params = obj.init(jax.random.key(0))
    l, a = grid()
    r = np.exp(np.asarray(l, np.float64))
    a64 = np.asarray(a, np.float64)
    standard = -np.mean(np.minimum(r * a64, np.clip(r, 0.8, 1.2) * a64))
    assert float(actor_loss(obj, params, l, a)) == pytest.approx(standard, rel=1e-5, abs=1e-6)
    # ... and its gradient too
    g = jax.grad(lambda l: actor_loss(obj, params, l, a))(l)
    g_ref = jax.grad(lambda l: -jnp.mean(jnp.minimum(jnp.exp(l) * a, jnp.clip(jnp.exp(l), 0.8, 1.2) * a)))(l)
    np.testing.assert_allclose(g, g_ref, atol=1e-7)


def test_dpo_matches_hand_computed_values():
    obj = objectives.make("dpo")
    params = obj.init(jax.random.key(0))
    # A >= 0 uses (r-1)A with alpha = 2: r = 1.5, A = 2 -> x = 1, D = relu(1 - 2 tanh(0.5))
    # A < 0 uses log(r)A with beta = 0.6: r = 0.5, A = -1 -> x = ln 2, D = relu(ln 2 - 0.6 tanh(ln 2 / 0.6))
    # A < 0 with r = 2, A = -1 -> x = -ln 2 < 0 -> relu(-ln2 + 0.6 tanh(ln2/0.6)) = 0 since tanh(u) < u
    cases = [(1.5, 2.0, max(1 - 2 * np.tanh(0.5), 0.0)),
             (0.5, -1.0, max(np.log(2) - 0.6 * np.tanh(np.log(2) / 0.6), 0.0)),
             (2.0, -1.0, 0.0),
             (4.0, 3.0, max(9 - 2 * np.tanh(4.5), 0.0))]
    for r, a, expected in cases:
        got = float(obj.drift(params, jnp.log(jnp.float32(r)), jnp.float32(a), PROGRESS))
        assert got == pytest.approx(expected, rel=1e-5, abs=1e-6), (r, a)
    assert float(obj.drift(params, jnp.log(jnp.float32(0.5)), jnp.float32(-1.0), PROGRESS)) > 0.1


def all_objectives():
    out = []
    for name in objectives.NAMES:
        for opts in ([{}, {"ppo_init": True}] if name in objectives.LEARNED else [{}]):
            obj = objectives.make(name, **opts, **({"init_scale": 1.0} if name in objectives.LEARNED else {}))
            out.append(pytest.param(obj, id=f"{name}{'-ppo_init' if opts else ''}"))
    return out


@pytest.mark.parametrize("obj", all_objectives())
def test_drift_axioms(obj):
    params = obj.init(jax.random.key(1))  # random weights for the learned ones: the axioms must hold anyway
    l, a = grid()
    d = obj.drift(params, l, a, PROGRESS)
    assert bool(jnp.all(d >= 0)), obj.name
    at_one = jnp.zeros_like(a)
    np.testing.assert_allclose(obj.drift(params, at_one, a, PROGRESS), 0.0, atol=1e-7)
    grad_at_one = jax.vmap(jax.grad(lambda l, a: obj.drift(params, l, a, PROGRESS)))(at_one, a)
    np.testing.assert_allclose(grad_at_one, 0.0, atol=1e-6)


def test_lpo_zero_weights_with_ppo_init_is_ppo_clip_minus_offset():
    ppo = objectives.make("ppo_clip")
    l, a = grid()
    d_ppo = ppo.drift(ppo.init(None), l, a, PROGRESS)
    for name in objectives.LEARNED:
        lpo = objectives.make(name, ppo_init=True)
        d_lpo = lpo.drift(lpo.init(jax.random.key(0)), l, a, PROGRESS)
        np.testing.assert_allclose(d_lpo, jnp.maximum(d_ppo - objectives.LPO_OFFSET, 0.0), atol=1e-7)
        assert float(jnp.abs(d_lpo - d_ppo).max()) <= objectives.LPO_OFFSET + 1e-7


def test_ta_lpo_depends_on_progress_and_lpo_does_not():
    l, a = grid()
    for name, depends in (("lpo", False), ("ta_lpo", True)):
        obj = objectives.make(name, init_scale=1.0)
        p = obj.init(jax.random.key(2))
        diff = jnp.abs(obj.drift(p, l, a, 0.0) - obj.drift(p, l, a, 0.9)).max()
        assert (float(diff) > 1e-4) == depends, name


def test_save_and_load_roundtrip(tmp_path):
    obj = objectives.make("ta_lpo", ppo_init=True, init_scale=0.5)
    params = obj.init(jax.random.key(3))
    path = tmp_path / "found.npz"
    objectives.save(path, obj, params)
    loaded, loaded_params = objectives.load(path)
    assert loaded.name == "ta_lpo" and loaded.options["ppo_init"] is True
    l, a = grid()
    np.testing.assert_array_equal(obj.drift(params, l, a, PROGRESS), loaded.drift(loaded_params, l, a, PROGRESS))
    assert objectives.resolve(str(path))[0].name == "ta_lpo"


def test_bad_names_and_files(tmp_path):
    with pytest.raises(InvalidChoiceError, match="unknown objective 'ppo_clipp'.*ppo_clip"):
        objectives.make("ppo_clipp")
    with pytest.raises(InvalidChoiceError, match="unknown option"):
        objectives.make("dpo", gamma=3.0)
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(InvalidChoiceError, match="cannot read objective file"):
        objectives.load(bad)


def test_mdpo_drift_estimates_kl_new_to_old_not_old_to_new():
    """Under samples of pi_old, the mean MDPO drift (step size 1, no annealing) equals KL(pi_new || pi_old) of
    two known categorical policies, computed in closed form; the TRPO direction KL(pi_old || pi_new) differs."""
    obj = objectives.make("mdpo", step_size=1.0)
    params = obj.init(None)
    p_old = np.array([0.8, 0.15, 0.05])
    p_new = np.array([0.2, 0.3, 0.5])
    kl_new_old = float(np.sum(p_new * np.log(p_new / p_old)))
    kl_old_new = float(np.sum(p_old * np.log(p_old / p_new)))
    assert abs(kl_new_old - kl_old_new) > 0.1  # the two directions are told apart
    log_ratio = jnp.log(jnp.asarray(p_new / p_old, jnp.float32))
    # The expectation over a ~ pi_old, exactly (a weighted sum instead of samples).
    expected_drift = float(jnp.sum(jnp.asarray(p_old, jnp.float32) * obj.drift(params, log_ratio, jnp.zeros(3), jnp.float32(0.0))))
    assert expected_drift == pytest.approx(kl_new_old, rel=1e-5)
    # ... and by Monte Carlo over sampled actions, as training sees it.
    actions = jax.random.choice(jax.random.key(0), 3, (200_000,), p=jnp.asarray(p_old))
    sampled = float(jnp.mean(obj.drift(params, log_ratio[actions], jnp.zeros(actions.shape), jnp.float32(0.0))))
    assert sampled == pytest.approx(kl_new_old, rel=0.02)
    assert abs(sampled - kl_old_new) > 0.05


def test_renamed_a2c_objective_says_what_to_use():
    with pytest.raises(InvalidChoiceError, match="no_trust_region.*a2c.yaml"):
        objectives.make("a2c")


def test_plotted_drift_grid_is_ppo_clips_drift_with_advantages_down_the_rows():
    """meta's heat map of D(r, A): for PPO-clip, D = rA - min(rA, clip(r, 0.8, 1.2) A) = max(0, (r - clip(r)) A)
    (Schulman et al. 2017, eq. 7, written as a drift as in Kuba et al. 2022 and objectives.ppo_clip_drift), row i at
    advantage i, column j at ratio j."""
    from jaxrl.meta.plots import drift_grid

    obj = objectives.make("ppo_clip", clip_eps=0.2)
    ratios, advantages, d = drift_grid(obj, obj.init(None), 0.0, n=11)
    r, a = np.meshgrid(ratios, advantages)
    np.testing.assert_allclose(d, np.maximum(0.0, (r - np.clip(r, 0.8, 1.2)) * a), rtol=1e-5, atol=1e-6)
    assert d.shape == (11, 11) and d[0, 0] > 0 and d[-1, 0] == 0  # r = 0.5: drift for A < 0 only
