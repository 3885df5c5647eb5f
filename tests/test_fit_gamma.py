"""fit_gamma recovers c = lambda_H lambda_W at every scale, from 1e-10 up to lambda_min.

The heads come from the closed form (theory.regression.optimum) and from the exact solver, at
a known c; the default method must return c, the paper's linear grid must fail below its step.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import theory
import ufm
from ufm import metrics

EPS = np.finfo(np.float64).eps


def _targets(seed=1, M=200):
    """Targets whose covariance has well separated eigenvalues (about 0.15 ... 3.5)."""
    rng = np.random.default_rng(seed)
    return rng.normal(size=(M, 4)) @ np.diag([2.0, 1.0, 0.7, 0.4])


def _eigs(Y):
    return np.linalg.eigvalsh(np.cov(Y.T, bias=True))


def _head(Y, c, ratio, d=6):
    lH = np.sqrt(c * ratio)
    return theory.regression.optimum(Y, lH, c / lH, d).W


_dense_nrc3 = jax.jit(jax.vmap(metrics.nrc3, in_axes=(None, None, 0)))
SCALES = (1e-10, 1e-8, 1e-6, 1e-4, 1e-2)


@pytest.mark.parametrize("ratio", (1.0, 4.0, 0.1))
def test_recovers_c_from_1e_minus_10_to_lambda_min(ratio):
    Y = _targets()
    lam = _eigs(Y)
    fit = jax.jit(metrics.fit_gamma)
    for c in (*SCALES, 0.5 * lam[0], lam[0]):
        gamma, val = fit(_head(Y, c, ratio), Y)
        # sqrt(gamma) is resolved to rounding level, relative to sqrt(lambda_max)
        assert abs(np.sqrt(float(gamma)) - np.sqrt(c)) < 1e3 * EPS * np.sqrt(lam[-1]), c
        assert float(gamma) == pytest.approx(c, rel=1e-7)
        assert float(val) < 1e-24
        assert float(val) == pytest.approx(float(metrics.nrc3(_head(Y, c, ratio), Y, gamma)))


@pytest.mark.slow
def test_linear_grid_is_the_papers_and_misses_c_below_its_step():
    Y = _targets()
    lam_min = _eigs(Y)[0]
    W = _head(Y, 1e-5, 1.0)  # c < lambda_min / 2000: nearer 0 than the grid's first step
    gamma, val = metrics.fit_gamma(W, Y, method="linear_grid")
    assert float(gamma) == 0.0 and float(val) > 1e-12
    # on its own grid it is the argmin of NRC3 over linspace(0, lambda_min, num)
    grid = np.linspace(0.0, lam_min, 50)
    vals = np.asarray(_dense_nrc3(W, Y, grid))
    g50, v50 = metrics.fit_gamma(W, Y, num=50, method="linear_grid")
    assert float(g50) == pytest.approx(grid[int(np.argmin(vals))], rel=1e-12)
    assert float(v50) == pytest.approx(float(vals.min()), rel=1e-9)
    # the default resolves it
    assert float(metrics.fit_gamma(W, Y)[0]) == pytest.approx(1e-5, rel=1e-9)


@pytest.mark.slow
def test_readme_example_exact_solver():
    """The README's regression example: c = 1e-4, solved by the exact solver."""
    Y = np.random.default_rng(0).normal(size=(1000, 3))
    sol = ufm.solve(ufm.RegressionUFM(Y, lambda_H=1e-2, lambda_W=1e-2, feature_dim=64))
    assert ufm.Status(int(sol.status)) == ufm.Status.successful
    gamma, val = metrics.fit_gamma(sol.params.W, Y)
    assert float(gamma) == pytest.approx(1e-4, rel=1e-6)
    assert float(val) < 1e-16


@pytest.mark.parametrize("c", (1e-10, 1e-6, 1e-2))
def test_recovers_c_from_exact_solver(c):
    Y = _targets(2)
    p = ufm.RegressionUFM(Y, np.sqrt(2 * c), np.sqrt(c / 2), 6)
    sol = ufm.solve(p)
    assert ufm.Status(int(sol.status)) == ufm.Status.successful
    gamma, _ = metrics.fit_gamma(sol.params.W, Y)
    assert float(gamma) == pytest.approx(c, rel=1e-4)


def test_rank_deficient_regime_with_upper_lambda_max():
    """c between eigenvalues: W has rank < n; searching up to lambda_max finds c."""
    Y = _targets(3)
    lam = _eigs(Y)
    c = np.sqrt(lam[0] * lam[1])  # rank 3 of 4
    W = _head(Y, c, 2.0)
    gamma, val = metrics.fit_gamma(W, Y, upper=lam[-1])
    assert float(gamma) == pytest.approx(c, rel=1e-9)
    assert float(val) < 1e-24
    # the paper's range (0, lambda_min) cannot reach it
    assert float(metrics.fit_gamma(W, Y)[1]) > 1e-6
    # rank 1: the normalised target u_1 u_1^T is the same for every gamma in [lambda_2,
    # lambda_1), so gamma is not identified there; any point of that piece is a minimiser
    W = _head(Y, np.sqrt(lam[2] * lam[3]), 2.0)
    gamma, val = metrics.fit_gamma(W, Y, upper=lam[-1])
    assert lam[2] * (1 - 1e-12) <= float(gamma) < lam[3] and float(val) < 1e-24


@pytest.mark.parametrize("shape", ((3, 6), (4, 2)))  # n <= d and n > d (top d directions)
def test_global_minimum_beats_a_dense_grid_for_any_head(shape):
    """For a head far from collapse the result is the minimum of NRC3 on [0, upper]: no point
    of a dense grid is lower (the grid's own minimum is at most its spacing away)."""
    n, d = shape
    rng = np.random.default_rng(4)
    for seed in range(6):
        Y = np.random.default_rng(seed).normal(size=(60, n)) * (1 + np.arange(n))
        W = rng.normal(size=(n, d))
        lam = _eigs(Y)
        for upper in (None, lam[-1]):
            top = lam[0] if upper is None else upper
            gamma, val = metrics.fit_gamma(W, Y, upper=upper)
            assert 0.0 <= float(gamma) <= top
            dense = _dense_nrc3(W, Y, np.linspace(0.0, top, 4001))
            assert float(val) <= float(jnp.min(dense)) + 1e-13
            assert float(val) == pytest.approx(float(metrics.nrc3(W, Y, gamma)), rel=1e-12)


@pytest.mark.slow
def test_vmap_matches_single_instances():
    Y = _targets()
    cs = np.array([1e-9, 1e-5, 1e-3, 0.1])
    Ws = jnp.stack([_head(Y, c, 3.0) for c in cs])
    gammas, vals = jax.vmap(lambda W: metrics.fit_gamma(W, Y))(Ws)
    np.testing.assert_allclose(np.asarray(gammas), cs, rtol=1e-7)
    for W, g in zip(Ws, gammas, strict=True):
        assert float(metrics.fit_gamma(W, Y)[0]) == pytest.approx(float(g), rel=1e-12)
    assert np.all(np.asarray(vals) < 1e-24)


def test_float32():
    Y = _targets()
    for c, rel in ((1e-4, 1e-3), (1e-2, 1e-4), (0.1, 1e-4)):
        W = np.asarray(_head(Y, c, 1.0), np.float32)
        gamma, val = jax.jit(metrics.fit_gamma)(W, Y.astype(np.float32))
        assert gamma.dtype == jnp.float32
        assert float(gamma) == pytest.approx(c, rel=rel)
        assert float(val) < 1e-10


def test_nan_stays_nan_and_bad_method_raises():
    Y = _targets()
    W = np.asarray(_head(Y, 1e-3, 1.0))
    for method in ("exact", "linear_grid"):
        Wn = W.copy()
        Wn[0, 0] = np.nan
        assert np.isnan(np.asarray(metrics.fit_gamma(Wn, Y, method=method))).all()
        Yi = Y.copy()
        Yi[5, 1] = np.inf
        assert np.isnan(np.asarray(metrics.fit_gamma(W, Yi, method=method))).all()
        out = jax.jit(lambda u, m=method: metrics.fit_gamma(W, Y, upper=u, method=m))(np.nan)
        assert np.isnan(np.asarray(out)).all()
    with pytest.raises(ValueError, match="method must be 'exact' or 'linear_grid'"):
        metrics.fit_gamma(W, Y, method="grid")


def test_streaming_accumulator_fits_the_same_gamma():
    Y = _targets()
    for c in (1e-8, 1e-3):
        W = np.asarray(_head(Y, c, 2.0))
        H = np.asarray(theory.regression.optimum(Y, np.sqrt(2 * c), np.sqrt(c / 2), 6).H)
        acc = metrics.NRCAccumulator(W).update(H[:70], Y[:70]).update(H[70:], Y[70:])
        res = acc.result()
        assert res["gamma"] == pytest.approx(c, rel=1e-7)
        lin = acc.result(method="linear_grid")
        g_lin, _ = metrics.fit_gamma(W, Y, method="linear_grid")
        assert lin["gamma"] == pytest.approx(float(g_lin), abs=1e-15)
