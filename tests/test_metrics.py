"""NRC metrics: definitions, bounds, zero at the optimum, safety at zero, fit of gamma."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import random_targets
from hypothesis import given
from hypothesis import strategies as st

import theory
import ufm
from ufm import metrics


def _reference_nrc1(H, n):
    """Straight from the paper's definition with numpy SVD (independent implementation)."""
    Hc = H - H.mean(0)
    V = np.linalg.svd(Hc, full_matrices=False)[2][:n].T
    Ht = H / np.linalg.norm(H, axis=1, keepdims=True)
    return np.mean(np.sum((Ht - Ht @ V @ V.T) ** 2, axis=1))


def _reference_nrc2(H, W):
    P = W.T @ np.linalg.inv(W @ W.T) @ W
    Ht = H / np.linalg.norm(H, axis=1, keepdims=True)
    return np.mean(np.sum((Ht - Ht @ P) ** 2, axis=1))


@pytest.mark.slow
@given(st.sampled_from(((1, 5, 10), (3, 7, 23), (4, 9, 40))), st.integers(0, 10**6))
def test_nrc1_nrc2_match_reference_and_bounds(shape, seed):
    n, d, M = shape  # few shapes (each compiles the metrics once), random values
    rng = np.random.default_rng(seed)
    H, W = rng.normal(size=(M, d)), rng.normal(size=(n, d))
    v1, v2 = float(metrics.nrc1(H, n)), float(metrics.nrc2(H, W))
    assert v1 == pytest.approx(_reference_nrc1(H, n), rel=1e-10)
    assert v2 == pytest.approx(_reference_nrc2(H, W), rel=1e-10)
    assert 0 < v1 < 1 and 0 < v2 < 1


def test_metrics_zero_at_optimum_positive_after_perturbation():
    rng = np.random.default_rng(0)
    Y = random_targets(rng, 50, 3)
    p = ufm.RegressionUFM(Y, 0.05, 0.1, 7)
    opt = theory.regression.optimum_of(p)
    c = 0.05 * 0.1
    assert float(metrics.nrc1(opt.H, 3)) < 1e-20
    assert float(metrics.nrc2(opt.H, opt.W)) < 1e-20
    assert float(metrics.nrc3(opt.W, Y, c)) < 1e-20
    Hp = opt.H + 1e-2 * rng.normal(size=opt.H.shape)
    Wp = opt.W + 1e-2 * rng.normal(size=opt.W.shape)
    assert float(metrics.nrc1(Hp, 3)) > 1e-6
    assert float(metrics.nrc2(Hp, opt.W)) > 1e-6
    assert float(metrics.nrc3(Wp, Y, c)) > 1e-6
    # NRC3 is scale-free but sees the shape: the wrong gamma is penalised.
    assert float(metrics.nrc3(3.0 * opt.W, Y, c)) < 1e-20
    assert float(metrics.nrc3(opt.W, Y, 0.5 * c)) > 1e-8


def test_fit_gamma_recovers_c_for_any_ratio():
    """docs/theory.md discrepancy (ii): the normalised NRC3's grid argmin recovers c also when
    lambda_H != lambda_W (the unnormalised App. F gamma* does not)."""
    Y = random_targets(np.random.default_rng(1), 80, 3)
    lam_min = np.linalg.eigvalsh(np.cov(Y.T, bias=True))[0]
    for lH, lW in ((0.02, 0.02), (0.04, 0.01), (0.005, 0.05)):
        c = lH * lW
        assert c < lam_min
        opt = theory.regression.optimum(Y, lH, lW, 5)
        gamma, val = metrics.fit_gamma(opt.W, Y, num=20001)
        assert float(val) < 1e-8
        assert float(gamma) == pytest.approx(c, rel=1e-2)


def test_rank_deficient_regime_uses_positive_part():
    Y = random_targets(np.random.default_rng(2), 60, 3)
    lam = np.sort(np.linalg.eigvalsh(np.cov(Y.T, bias=True)))
    c = np.sqrt(lam[0] * lam[1])  # between the two smallest eigenvalues: rank 2
    opt = theory.regression.optimum(Y, np.sqrt(c), np.sqrt(c), 5)
    assert int(opt.rank) == 2
    assert float(metrics.nrc3(opt.W, Y, c)) < 1e-20


def test_safe_where_norms_vanish():
    Z = jnp.zeros((6, 4))
    W = jnp.zeros((2, 4))
    Y = random_targets(np.random.default_rng(0), 6, 2)
    for v in (metrics.nrc1(Z, 2), metrics.nrc2(Z, W), metrics.nrc3(W, Y, 0.01)):
        assert np.isfinite(float(v))
    H = np.random.default_rng(0).normal(size=(6, 4))
    H[2] = 0.0  # a zero sample
    assert np.isfinite(float(metrics.nrc1(H, 2)))
    assert float(metrics.nrc2(jnp.asarray(H), W)) == pytest.approx(5 / 6)  # W = 0: P_W = 0
    g = jax.grad(lambda w: metrics.nrc3(w, Y, 0.01))(W)
    assert np.all(np.isfinite(np.asarray(g)))


def test_stable_rank():
    assert float(metrics.stable_rank(jnp.eye(4))) == pytest.approx(4.0)
    A = np.diag([2.0, 1.0, 0.0])
    assert float(metrics.stable_rank(A)) == pytest.approx(5 / 4)
    assert float(metrics.stable_rank(jnp.zeros((3, 5)))) == 0.0


def test_batched_with_vmap_and_shape_errors():
    rng = np.random.default_rng(0)
    Hs = rng.normal(size=(4, 20, 6))
    out = jax.vmap(lambda H: metrics.nrc1(H, 2))(Hs)
    np.testing.assert_allclose(out, [_reference_nrc1(H, 2) for H in Hs], rtol=1e-10)
    with pytest.raises(ValueError, match="H must be a 2-D array of shape \\(M, d\\)"):
        metrics.nrc1(np.zeros(5), 2)
    with pytest.raises(ValueError, match="n must be an int >= 1"):
        metrics.nrc1(np.zeros((5, 3)), 0)
    with pytest.raises(ValueError, match="W must have shape \\(n, d\\) with d = 3"):
        metrics.nrc2(np.ones((5, 3)), np.ones((2, 4)))
    with pytest.raises(ValueError, match="W must have n = 2 rows"):
        metrics.nrc3(np.ones((3, 4)), np.ones((5, 2)), 0.1)
