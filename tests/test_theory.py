"""The closed form on its own terms (stationarity, balance, optimality) and theory.compare."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import random_targets, regime_examples, regression_problems
from hypothesis import given
from hypothesis import strategies as st

import theory
import ufm


def problems():
    return regression_problems(ratios=(0.1, 1.0, 3.0))


@pytest.mark.slow
@given(problems())
@regime_examples()
def test_closed_form_is_a_stationary_point_with_the_stated_loss(p):
    opt = theory.regression.optimum_of(p)
    params = ufm.Params(opt.H, opt.W, opt.bias)
    f = float(p.objective(params))
    assert f == pytest.approx(float(opt.loss), rel=1e-12, abs=1e-15)
    g = jax.grad(p.objective)(params)
    scale = 1 + float(jnp.linalg.norm(opt.W)) + float(jnp.linalg.norm(opt.H))
    for gi in (g.H, g.W) + ((g.b,) if p.bias else ()):
        assert float(jnp.linalg.norm(gi)) <= 1e-10 * scale
    np.testing.assert_allclose(opt.W @ opt.W.T, opt.WWT, atol=1e-12 * (1 + np.abs(opt.WWT).max()))
    pred = opt.H @ opt.W.T + (opt.bias if p.bias else 0)
    np.testing.assert_allclose(pred, opt.predictions, atol=1e-10)
    # Balance (Lemma C.1): lambda_H ||H||^2 = M lambda_W ||W||^2.
    M = p.num_samples
    lhs, rhs = p.lambda_H * jnp.sum(opt.H**2), M * p.lambda_W * jnp.sum(opt.W**2)
    assert float(lhs) == pytest.approx(float(rhs), rel=1e-10, abs=1e-14)
    # H H^T through the compact core.
    np.testing.assert_allclose(opt.H @ opt.H.T, opt.feature_gram(), atol=1e-10)
    # rank = #{eigenvalues > c}, capped at d.
    lam = np.asarray(opt.eigenvalues)
    assert int(opt.rank) == min(p.feature_dim, int(np.sum(lam > float(opt.c))))


@given(problems(), st.integers(0, 1000))
@regime_examples(0)
def test_no_random_point_beats_the_closed_form(p, seed):
    opt = theory.regression.optimum_of(p)
    rng = np.random.default_rng(seed)
    M, n, d = p.num_samples, p.target_dim, p.feature_dim
    for scale in (1e-3, 1e-1, 1.0):
        params = ufm.Params(
            opt.H + scale * rng.normal(size=(M, d)),
            opt.W + scale * rng.normal(size=(n, d)),
            opt.bias + scale * rng.normal(size=n),
        )
        assert float(p.objective(params)) >= float(opt.loss) - 1e-12


def test_paper_special_cases():
    rng = np.random.default_rng(0)
    Y = random_targets(rng, 40, 3)
    p = ufm.RegressionUFM(Y, 0.02, 0.05, 6)
    opt = theory.regression.optimum_of(p)
    lam = np.asarray(opt.eigenvalues)
    c = 0.02 * 0.05
    assert lam[-1] > c
    # Cor. 4.2 / Thm 4.1 when c < lambda_min: L* = sqrt(c) tr Sigma^{1/2} - n c / 2.
    assert float(opt.loss) == pytest.approx(np.sqrt(c) * np.sum(np.sqrt(lam)) - 3 * c / 2, 1e-12)
    # Residual is white: E E^T / M = c I.
    E = np.asarray(opt.predictions - Y)
    np.testing.assert_allclose(E.T @ E / 40, c * np.eye(3), atol=1e-12)
    # n = 1 (Sec. 4.2): ||w||^2 = lambda_H (sigma / sqrt(c) - 1), sigma = std of y.
    p1 = ufm.RegressionUFM(Y[:, :1], 0.02, 0.05, 4)
    o1 = theory.regression.optimum_of(p1)
    sigma = np.std(Y[:, 0])
    assert float(jnp.sum(o1.W**2)) == pytest.approx(0.02 * (sigma / np.sqrt(c) - 1), rel=1e-12)
    # Above the largest eigenvalue: the zero solution with loss tr(Sigma)/2.
    big = ufm.RegressionUFM(Y, 10.0, 10.0, 6)
    ob = theory.regression.optimum_of(big)
    assert int(ob.rank) == 0 and float(jnp.abs(ob.W).max()) == 0.0
    assert float(ob.loss) == pytest.approx(np.trace(np.cov(Y.T, bias=True)) / 2, 1e-12)


def test_optimum_rejects_zero_lambda():
    with pytest.raises(ValueError, match="lambda_W must be > 0 for a closed-form optimum"):
        theory.regression.optimum(random_targets(np.random.default_rng(0), 10, 2), 0.1, 0.0, 3)


def test_optimum_vmaps_over_problems():
    Y = random_targets(np.random.default_rng(0), 20, 3)
    batch = ufm.stack([ufm.RegressionUFM(Y, lam, lam, 4) for lam in (0.01, 0.3, 3.0)])
    opts = jax.vmap(theory.regression.optimum_of)(batch)
    assert opts.WWT.shape == (3, 3, 3)
    for i, lam in enumerate((0.01, 0.3, 3.0)):
        one = theory.regression.optimum(Y, lam, lam, 4)
        np.testing.assert_allclose(opts.WWT[i], one.WWT, atol=1e-14)


@pytest.mark.slow
def test_zero_regularisation_does_not_collapse():
    Y = random_targets(np.random.default_rng(2), 60, 3)
    r = theory.regression.zero_regularisation_check(Y, 10, num_inits=3)
    assert np.all(r.loss_zero < 1e-12), r
    assert np.all(r.nrc1_zero > 0.1), r
    assert np.all(r.nrc1_positive < 1e-10), r
    assert r.passed()


@pytest.mark.slow
def test_compare_detects_a_wrong_solution():
    p = ufm.RegressionUFM(random_targets(np.random.default_rng(0), 30, 3), 0.05, 0.05, 5)
    sol = ufm.solve(p)
    good = theory.compare(sol, p)
    assert good.passed(1e-8)
    H, W, b = sol.params
    bad = sol._replace(params=ufm.Params(H, 1.01 * W, b))
    cmp = theory.compare(bad, p)
    assert not cmp.passed(1e-6) and cmp.errors["WWT"] == pytest.approx(0.0201, rel=1e-6)
    assert "NO" in cmp.table(1e-6)
    early = ufm.solve(p, "lbfgs", max_steps=2)
    assert not theory.compare(early, p).passed(1e-2)


@pytest.mark.slow
def test_precompile_compiles_what_compare_runs():
    compiles = []

    def listen(event, duration, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":
            compiles.append(duration)

    jax.monitoring.register_event_duration_secs_listener(listen)
    rng = np.random.default_rng(1)
    reg = ufm.RegressionUFM(random_targets(rng, 23, 2), 0.05, 0.05, 4)
    clf = ufm.ClassificationUFM(np.repeat(np.arange(3), 3), 3, 5e-3, 5e-3, 5)
    for p in (reg, clf):
        sol = ufm.solve(p)
        before = len(compiles)
        theory.precompile(p)
        assert len(compiles) > before  # this test would pass vacuously without a listener
        before = len(compiles)
        assert theory.compare(sol, p).passed(1e-8)
        assert len(compiles) == before  # compare ran the precompiled program
    deep = ufm.DeepUFM.from_labels(np.repeat(np.arange(3), 2), 3, 5e-3, 5e-3, widths=(4, 4))
    assert theory.precompile(deep) is None  # several programs: nothing to compile ahead


@pytest.mark.slow
@pytest.mark.parametrize("scale", [1.0, 1e6])
def test_a_null_direction_of_sigma_is_not_a_kept_one(scale):
    """M = 2 samples with a bias: the centred targets have rank 1, so Sigma has an exact null
    direction, which rounding turns into ~eps ||Sigma||. With c = 1e-20 it was counted as a
    kept direction (theory rank 2, the solver's 1) and the solver's loss came out below the
    "closed form"; the closed form itself (a stationary point with the stated loss) must be
    rank 1 and agree with the exact solver."""
    Y = scale * (np.random.default_rng(0).normal(size=(2, 2)) + 0.5)
    p = ufm.RegressionUFM(Y, 1e-10, 1e-10, 2)
    opt = theory.regression.optimum_of(p)
    assert int(opt.rank) == 1 and float(opt.eigenvalues[1]) == 0.0
    sol = ufm.solve(p)
    cmp = theory.compare(sol, p)
    assert cmp.rank_theory == cmp.rank_solution == 1
    assert cmp.passed(1e-8)
