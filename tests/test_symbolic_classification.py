"""Tests for ``theory.symbolic_classification``: the sympy derivations of the classification-UFM
thresholds and optimal losses (docs/theory.md sections 0, 2, 3).

Three layers:
* exact: the derived expressions simplify to the closed forms of docs/theory.md;
* numeric: plain-numpy implementations of the formulas of docs/theory.md, written here
  independently, agree with the symbolic ones to 1e-12 in every regime (below / between /
  above thresholds);
* brute force: grid search on the scalar problem, explicit W, H built from the closed form and
  fed to the full objective, gradient descent on the full ridge-bias MSE UFM, and bisection on
  F'(t) for cross-entropy.
"""

from __future__ import annotations

import numpy as np
import pytest
import sympy
from hypothesis import given
from hypothesis import strategies as st

from theory.symbolic_classification import (
    K,
    cross_entropy,
    kappa,
    lambda_b,
    lambda_H,
    lambda_W,
    mse_bias_free,
    mse_free_bias,
    mse_regularised_bias,
    n,
    numeric,
    s,
    t,
)


def _zero(expr) -> bool:
    return sympy.simplify(expr) == 0


# --------------------------------------------------------------------------------------------
# Exact closed forms
# --------------------------------------------------------------------------------------------


def test_mse_bias_free_exact():
    a = mse_bias_free()
    assert _zero(a.kappa_definition - K * sympy.sqrt(n * lambda_W * lambda_H))
    assert _zero(a.tau - K * n * sympy.sqrt(lambda_W * lambda_H))  # N sqrt(lW lH)
    assert _zero(a.nuclear_weight - sympy.sqrt(lambda_W * lambda_H))
    assert _zero(a.sigma_stationary - sympy.sqrt(n) * (1 - kappa))
    assert a.threshold == 1
    assert _zero(a.loss_active - (kappa - kappa**2 / 2))
    assert a.loss_zero == sympy.Rational(1, 2)
    assert _zero(a.direction_value_active * K - a.loss_active)
    # continuous at the threshold
    assert _zero(a.loss_active.subs(kappa, a.threshold) - a.loss_zero)
    assert _zero(a.logit_scale.args[0][0] - (1 - kappa))
    assert _zero(a.WWt_scale - (1 - kappa) * sympy.sqrt(n * lambda_H / lambda_W))
    assert _zero(a.HbarHbar_scale - (1 - kappa) * sympy.sqrt(lambda_W / (n * lambda_H)))
    assert _zero(a.self_duality - sympy.sqrt(n * lambda_H / lambda_W))
    # W Hbar = sqrt(WWt_scale * HbarHbar_scale) I must equal the logit scale (1 - kappa).
    assert _zero(sympy.sqrt(a.WWt_scale * a.HbarHbar_scale / (1 - kappa) ** 2) - 1)
    # sigma* = (sqrt(n) - tau)_+ written through kappa (master lemma item 2)
    assert _zero(a.sigma_stationary - (sympy.sqrt(n) - a.tau).subs(lambda_H, _lh_of_kappa()))


def _lh_of_kappa():
    return kappa**2 / (K**2 * n * lambda_W)


def test_mse_free_bias_exact():
    b = mse_free_bias()
    assert _zero(b.centred_directions - (K - 1))
    assert b.threshold == 1
    assert _zero(b.loss_active - (K - 1) / K * (kappa - kappa**2 / 2))
    assert _zero(b.loss_zero - (K - 1) / (2 * K))
    assert _zero(b.loss_active.subs(kappa, 1) - b.loss_zero)
    assert _zero(b.bias - 1 / K)


def test_mse_regularised_bias_exact():
    c = mse_regularised_bias()
    lb = lambda_b
    assert _zero(c.gamma - lb / (1 + lb))
    assert _zero(c.s0_stationary - (1 - kappa * (1 + 1 / lb)))
    assert _zero(c.etf_threshold - lb / (1 + lb))
    assert _zero(c.bias_active - kappa / (lb * K))
    assert _zero(c.bias_etf - 1 / (K * (1 + lb)))
    # derived here (docs/theory.md gives no f* for 2(c)):
    assert _zero(c.mean_value_active - (kappa - kappa**2 / 2 * (1 + 1 / lb)) / K)
    assert _zero(c.mean_value_zero - lb / (2 * K * (1 + lb)))
    # continuity of s0, b*, and the loss at the ETF threshold
    thr = c.etf_threshold
    assert _zero(c.s0_stationary.subs(kappa, thr))
    assert _zero(c.bias_active.subs(kappa, thr) - c.bias_etf)
    assert _zero(c.mean_value_active.subs(kappa, thr) - c.mean_value_zero)
    # lambda_b -> oo recovers the bias-free problem (a); lambda_b -> 0 the free bias (b)
    a, b = mse_bias_free(), mse_free_bias()
    assert _zero(sympy.limit(c.s0_stationary, lb, sympy.oo) - (1 - kappa))
    total_active = b.loss_active + c.mean_value_active
    assert _zero(sympy.limit(total_active, lb, sympy.oo) - a.loss_active)
    total_zero = b.loss_zero + c.mean_value_zero
    assert _zero(sympy.limit(total_zero, lb, sympy.oo) - a.loss_zero)
    assert sympy.limit(c.mean_value_zero, lb, 0) == 0
    assert sympy.limit(c.bias_etf, lb, 0) == 1 / K  # free-bias b* = 1/K


def test_cross_entropy_exact():
    ce = cross_entropy()
    assert _zero(ce.s_definition - sympy.sqrt(n * lambda_W * lambda_H))
    # docs/theory.md section 3 scales, and the penalty factor K s t
    assert _zero(ce.rho_W_sq - t * sympy.sqrt(n * lambda_H / lambda_W))
    assert _zero(ce.W_sq_norm - K * t * sympy.sqrt(n * lambda_H / lambda_W))
    assert _zero(ce.H_sq_norm - K * t * sympy.sqrt(n * lambda_W / lambda_H))
    pen = lambda_W / 2 * ce.W_sq_norm + lambda_H / 2 * ce.H_sq_norm
    assert _zero(pen - K * ce.s_definition * t)
    assert _zero(ce.penalty - K * s * t)
    # self-duality hbar_k = sqrt(lW/(n lH)) w_k and the diagonal logit t
    assert _zero(ce.hbar_sq / ce.rho_W_sq - lambda_W / (n * lambda_H))
    assert _zero(sympy.sqrt(ce.hbar_sq * ce.rho_W_sq) - t)
    # F, F'(t) = 0  <=>  1/(e^{Kt/(K-1)} + K - 1) = s,  F'(0) = K s - 1,  F'' > 0
    F_theory = sympy.log(1 + (K - 1) * sympy.exp(-K * t / (K - 1))) + K * s * t
    assert _zero(ce.F - F_theory)
    assert _zero(ce.dF - K * (s - 1 / (sympy.exp(K * t / (K - 1)) + K - 1)))
    assert _zero(ce.dF_at_zero - (K * s - 1))
    assert ce.d2F.subs(K, 3).is_positive
    assert _zero(ce.threshold - 1 / K)
    t_theory = (K - 1) / K * sympy.log((1 - (K - 1) * s) / s)
    assert _zero(ce.t_stationary - t_theory)
    assert _zero(ce.dF.subs(t, ce.t_stationary))
    f_theory = -sympy.log(1 - (K - 1) * s) + (K - 1) * s * sympy.log((1 - (K - 1) * s) / s)
    assert _zero(ce.loss_active - f_theory)
    # f* really is F(t*): exponentiate (log is injective on the reals)
    assert _zero(sympy.exp(ce.F.subs(t, ce.t_stationary)) - sympy.exp(ce.loss_active))
    assert _zero(ce.loss_zero - sympy.log(K))
    # continuous at the threshold s = 1/K; the threshold is the MSE kappa = K s = 1
    assert _zero(ce.t_stationary.subs(s, ce.threshold))
    assert _zero(ce.loss_active.subs(s, ce.threshold) - ce.loss_zero)
    assert _zero((K * ce.s_definition) - mse_bias_free().kappa_definition)


# --------------------------------------------------------------------------------------------
# Targets: the singular values the master lemma is fed with
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("Kv, nv", [(2, 3), (3, 2), (5, 4)])
def test_target_singular_values(Kv, nv):
    Y = np.kron(np.eye(Kv), np.ones((1, nv)))
    sv = np.linalg.svd(Y, compute_uv=False)
    np.testing.assert_allclose(sv, np.sqrt(nv), rtol=1e-13)
    N = Kv * nv
    Yc = Y @ (np.eye(N) - np.ones((N, N)) / N)
    svc = np.sort(np.linalg.svd(Yc, compute_uv=False))
    assert abs(svc[0]) < 1e-12
    np.testing.assert_allclose(svc[1:], np.sqrt(nv), rtol=1e-13)
    assert int(mse_free_bias().centred_directions.subs(K, Kv)) == Kv - 1


# --------------------------------------------------------------------------------------------
# Numeric agreement with independent numpy formulas (docs/theory.md), every regime
# --------------------------------------------------------------------------------------------


def _kappa_np(Kv, nv, lw, lh):
    return Kv * np.sqrt(nv * lw * lh)


def _lambdas_for_kappa(Kv, nv, kap, ratio=2.0):
    """(lambda_W, lambda_H) with lambda_H / lambda_W = ratio and the given kappa."""
    prod = (kap / Kv) ** 2 / nv
    lw = np.sqrt(prod / ratio)
    return lw, ratio * lw


# (K, n, kappa, lambda_b): kappa below lambda_b/(1+lambda_b), between it and 1, and above 1
MSE_CASES = [
    (3, 2, 0.2, 1.0),
    (4, 3, 0.45, 1.0),
    (4, 3, 0.7, 1.0),
    (5, 1, 0.9, 4.0),
    (3, 5, 1.3, 0.5),
    (2, 4, 2.5, 10.0),
]


@pytest.mark.parametrize("Kv, nv, kap, lb", MSE_CASES)
def test_mse_numeric_regimes(Kv, nv, kap, lb):
    lw, lh = _lambdas_for_kappa(Kv, nv, kap)
    vals = dict(K=Kv, n=nv, lambda_W=lw, lambda_H=lh, lambda_b=lb)
    k = _kappa_np(Kv, nv, lw, lh)
    assert abs(k - kap) < 1e-14
    pos = max(1.0 - k, 0.0)
    # (a)
    a = mse_bias_free()
    f_a = k - k**2 / 2 if k < 1 else 0.5
    assert abs(numeric(a.loss, **vals) - f_a) < 1e-12
    assert abs(numeric(a.kappa_definition, **vals) - k) < 1e-12
    assert abs(numeric(a.sigma_star, **vals) - np.sqrt(nv) * pos) < 1e-12
    assert abs(numeric(a.logit_scale, **vals) - pos) < 1e-12
    if k < 1:
        assert abs(numeric(a.WWt_scale, **vals) - pos * np.sqrt(nv * lh / lw)) < 1e-12
        assert abs(numeric(a.HbarHbar_scale, **vals) - pos * np.sqrt(lw / (nv * lh))) < 1e-12
    # (b)
    b = mse_free_bias()
    f_b = (Kv - 1) / Kv * (k - k**2 / 2) if k < 1 else (Kv - 1) / (2 * Kv)
    assert abs(numeric(b.loss, **vals) - f_b) < 1e-12
    assert abs(numeric(b.bias, **vals) - 1 / Kv) < 1e-12
    # (c)
    c = mse_regularised_bias()
    s0 = max(1 - k * (1 + 1 / lb), 0.0)
    b_star = k / (lb * Kv) if s0 > 0 else 1 / (Kv * (1 + lb))
    mean = (k - k**2 / 2 * (1 + 1 / lb)) / Kv if s0 > 0 else lb / (2 * Kv * (1 + lb))
    assert abs(numeric(c.s0, **vals) - s0) < 1e-12
    assert abs(numeric(c.bias, **vals) - b_star) < 1e-12
    assert abs(numeric(c.centred_scale, **vals) - pos) < 1e-12
    assert abs(numeric(c.loss, **vals) - (f_b + mean)) < 1e-12
    assert (numeric(c.s0, **vals) == 0) == (k >= lb / (1 + lb))


def _ce_numpy(Kv, s_):
    """docs/theory.md section 3: (t*, f*)."""
    if Kv * s_ >= 1:
        return 0.0, np.log(Kv)
    q = 1 - (Kv - 1) * s_
    return (Kv - 1) / Kv * np.log(q / s_), -np.log(q) + (Kv - 1) * s_ * np.log(q / s_)


def _dF_numpy(t_, Kv, s_):
    return Kv * s_ - Kv / (np.exp(Kv * t_ / (Kv - 1)) + Kv - 1)


def _bisect(f, lo, hi, iters=200):
    flo = f(lo)
    assert flo * f(hi) < 0
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        fm = f(mid)
        if fm == 0:
            return mid
        if (fm < 0) == (flo < 0):
            lo, flo = mid, fm
        else:
            hi = mid
    return 0.5 * (lo + hi)


CE_CASES = [(2, 3, 0.1), (3, 2, 0.5), (4, 5, 0.9), (10, 1, 0.99), (3, 2, 1.0), (5, 3, 1.7)]


@pytest.mark.parametrize("Kv, nv, kap", CE_CASES)
def test_cross_entropy_numeric(Kv, nv, kap):
    lw, lh = _lambdas_for_kappa(Kv, nv, kap, ratio=0.5)
    vals = dict(K=Kv, n=nv, lambda_W=lw, lambda_H=lh)
    s_ = np.sqrt(nv * lw * lh)
    ce = cross_entropy()
    t_np, f_np = _ce_numpy(Kv, s_)
    assert abs(numeric(ce.t_star, **vals) - t_np) < 1e-12
    assert abs(numeric(ce.loss, **vals) - f_np) < 1e-12
    assert abs(numeric(ce.dF_at_zero, **vals) - (Kv * s_ - 1)) < 1e-12
    if Kv * s_ < 1 - 1e-9:
        root = _bisect(lambda x: _dF_numpy(x, Kv, s_), 0.0, 100.0)
        assert abs(numeric(ce.t_star, **vals) - root) < 1e-12
        # F evaluated at the numeric root, plain numpy
        F_root = np.log1p((Kv - 1) * np.exp(-Kv * root / (Kv - 1))) + Kv * s_ * root
        assert abs(numeric(ce.loss, **vals) - F_root) < 1e-12
    else:
        assert _dF_numpy(0.0, Kv, s_) >= -1e-15  # F increasing on t >= 0 (F convex)
        assert abs(numeric(ce.t_star, **vals)) < 1e-12


@given(
    Kv=st.integers(2, 12),
    nv=st.integers(1, 20),
    kap=st.floats(0.01, 3.0),
    ratio=st.floats(0.1, 10.0),
)
def test_cross_entropy_and_mse_random(Kv, nv, kap, ratio):
    lw, lh = _lambdas_for_kappa(Kv, nv, kap, ratio=ratio)
    vals = dict(K=Kv, n=nv, lambda_W=lw, lambda_H=lh)
    s_ = np.sqrt(nv * lw * lh)
    _, f_np = _ce_numpy(Kv, s_)
    assert abs(numeric(cross_entropy().loss, **vals) - f_np) < 1e-12
    k = Kv * s_
    f_a = k - k**2 / 2 if k < 1 else 0.5
    assert abs(numeric(mse_bias_free().loss, **vals) - f_a) < 1e-12


# --------------------------------------------------------------------------------------------
# Brute force
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("Kv, nv, kap", [(3, 2, 0.3), (4, 3, 0.8), (3, 4, 1.5)])
def test_mse_scalar_problem_grid(Kv, nv, kap):
    lw, lh = _lambdas_for_kappa(Kv, nv, kap)
    a = mse_bias_free()
    vals = dict(K=Kv, n=nv, lambda_W=lw, lambda_H=lh)
    # the scalar problem, written independently in numpy
    grid = np.linspace(0.0, 2 * np.sqrt(nv), 4_000_001)  # step ~ 1e-6 * sqrt(n)
    g = (grid - np.sqrt(nv)) ** 2 / (2 * Kv * nv) + np.sqrt(lw * lh) * grid
    i = int(np.argmin(g))
    sig = numeric(a.sigma_star, **vals)
    assert abs(grid[i] - sig) < 1e-6
    g_sym = numeric(a.scalar_objective, sigma=sig, **vals)
    assert abs(g[i] - g_sym) < 1e-6
    assert g_sym <= g.min() + 1e-15
    assert abs(Kv * g.min() - numeric(a.loss, **vals)) < 1e-6


def _mse_objective(W, H, b, Y, lw, lh, lb):
    N = Y.shape[1]
    R = W @ H + np.outer(b, np.ones(N)) - Y
    return (
        0.5 / N * np.sum(R**2)
        + 0.5 * lw * np.sum(W**2)
        + 0.5 * lh * np.sum(H**2)
        + 0.5 * lb * np.sum(b**2)
    )


@pytest.mark.parametrize("Kv, nv, kap", [(3, 2, 0.4), (4, 3, 0.85)])
def test_mse_closed_form_in_full_objective(Kv, nv, kap):
    """Build W, H, b from the derived scales and evaluate the full objective."""
    lw, lh = _lambdas_for_kappa(Kv, nv, kap)
    vals = dict(K=Kv, n=nv, lambda_W=lw, lambda_H=lh)
    d = Kv + 2
    Y = np.kron(np.eye(Kv), np.ones((1, nv)))
    rng = np.random.default_rng(0)
    Q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    a = mse_bias_free()
    ww, hh = numeric(a.WWt_scale, **vals), numeric(a.HbarHbar_scale, **vals)
    # (a) orthogonal frame
    E = Q[:, :Kv].T  # K x d, E E^T = I
    W, Hbar = np.sqrt(ww) * E, np.sqrt(hh) * E.T
    H = np.kron(Hbar, np.ones((1, nv)))
    f = _mse_objective(W, H, np.zeros(Kv), Y, lw, lh, 0.0)
    assert abs(f - numeric(a.loss, **vals)) < 1e-12
    np.testing.assert_allclose(W.T, numeric(a.self_duality, **vals) * Hbar, atol=1e-12)
    # (b) simplex ETF, b = 1/K
    b = mse_free_bias()
    P = np.eye(Kv) - np.ones((Kv, Kv)) / Kv
    E = P @ Q[:, :Kv].T  # E E^T = I - J
    W, Hbar = np.sqrt(ww) * E, np.sqrt(hh) * E.T
    H = np.kron(Hbar, np.ones((1, nv)))
    bias = numeric(b.bias, **vals) * np.ones(Kv)
    f = _mse_objective(W, H, bias, Y, lw, lh, 0.0)
    assert abs(f - numeric(b.loss, **vals)) < 1e-12


def _gd_ridge_bias(Y, d, lw, lh, lb, steps=30_000, lr=0.5, seed=0):
    """Plain heavy-ball gradient descent on the full ridge-bias MSE UFM (benign landscape)."""
    Kv, N = Y.shape
    rng = np.random.default_rng(seed)
    W, H, b = rng.normal(size=(Kv, d)) * 0.3, rng.normal(size=(d, N)) * 0.3, np.zeros(Kv)
    vW, vH, vb = np.zeros_like(W), np.zeros_like(H), np.zeros_like(b)
    ones = np.ones(N)
    for _ in range(steps):
        R = (W @ H + np.outer(b, ones) - Y) / N
        gW, gH, gb = R @ H.T + lw * W, W.T @ R + lh * H, R @ ones + lb * b
        vW, vH, vb = 0.9 * vW - lr * gW, 0.9 * vH - lr * gH, 0.9 * vb - lr * gb
        W, H, b = W + vW, H + vH, b + vb
    return W, H, b


@pytest.mark.parametrize("kap, lb", [(0.25, 1.0), (0.7, 1.0)])
def test_mse_ridge_bias_gradient_descent(kap, lb):
    """docs/theory.md section 2(c) [derived] and the f* derived here, against a direct
    numerical solve."""
    Kv, nv, d = 3, 2, 4
    lw, lh = _lambdas_for_kappa(Kv, nv, kap, ratio=1.0)
    vals = dict(K=Kv, n=nv, lambda_W=lw, lambda_H=lh, lambda_b=lb)
    Y = np.kron(np.eye(Kv), np.ones((1, nv)))
    W, H, b = _gd_ridge_bias(Y, d, lw, lh, lb)
    c = mse_regularised_bias()
    f_gd = _mse_objective(W, H, b, Y, lw, lh, lb)
    f_star = numeric(c.loss, **vals)
    assert f_star <= f_gd + 1e-12
    assert f_gd - f_star < 1e-9
    Hbar = H.reshape(d, Kv, nv).mean(axis=2)
    logits = W @ Hbar
    J = np.ones((Kv, Kv)) / Kv
    expected = numeric(c.centred_scale, **vals) * (np.eye(Kv) - J) + numeric(c.s0, **vals) * J
    np.testing.assert_allclose(logits, expected, atol=1e-6)
    np.testing.assert_allclose(b, numeric(c.bias, **vals), atol=1e-6)


@pytest.mark.parametrize("Kv, nv, kap", [(3, 2, 0.3), (5, 2, 0.8)])
def test_cross_entropy_closed_form_in_full_objective(Kv, nv, kap):
    """Self-dual ETF with the derived scales: the full CE objective equals f* = F(t*)."""
    lw, lh = _lambdas_for_kappa(Kv, nv, kap, ratio=3.0)
    vals = dict(K=Kv, n=nv, lambda_W=lw, lambda_H=lh)
    ce = cross_entropy()
    t_star = numeric(ce.t_star, **vals)
    rho_sq = numeric(ce.rho_W_sq, t=t_star, **vals)
    d = Kv + 1
    Q, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(d, d)))
    P = np.eye(Kv) - np.ones((Kv, Kv)) / Kv
    W = np.sqrt(rho_sq * Kv / (Kv - 1)) * (P @ Q[:, :Kv].T)  # W W^T = rho^2 K/(K-1) (I - J)
    Hbar = np.sqrt(lw / (nv * lh)) * W.T
    H = np.kron(Hbar, np.ones((1, nv)))
    Z = W @ H
    labels = np.repeat(np.arange(Kv), nv)
    zmax = Z.max(axis=0)
    lse = zmax + np.log(np.exp(Z - zmax).sum(axis=0))
    data = np.mean(lse - Z[labels, np.arange(Kv * nv)])
    f = data + 0.5 * lw * np.sum(W**2) + 0.5 * lh * np.sum(H**2)
    assert abs(f - numeric(ce.loss, **vals)) < 1e-12
    np.testing.assert_allclose(np.diag(W @ Hbar), t_star, rtol=1e-12)
    assert abs(np.sum(W**2) - numeric(ce.W_sq_norm, t=t_star, **vals)) < 1e-12
    assert abs(np.sum(H**2) - numeric(ce.H_sq_norm, t=t_star, **vals)) < 1e-12


# --------------------------------------------------------------------------------------------
# numeric helper
# --------------------------------------------------------------------------------------------


def test_numeric_helper():
    assert numeric(kappa, K=2, n=2, lambda_W=0.5, lambda_H=0.25) == pytest.approx(1.0, abs=1e-15)
    assert numeric(s * K, K=3, n=1, lambda_W=1.0, lambda_H=1.0) == pytest.approx(3.0)
    assert numeric(mse_bias_free().loss, kappa=0.5) == pytest.approx(0.375, abs=1e-15)
    with pytest.raises(ValueError, match="unknown"):
        numeric(kappa, kapa=1.0)
    with pytest.raises(ValueError, match="missing"):
        numeric(kappa + lambda_b, kappa=0.5)


@pytest.mark.parametrize(
    "loss, bias, kappa",
    [
        ("mse", "none", 0.3),
        ("mse", "free", 0.7),
        ("mse", 2.0, 0.2),
        ("mse", 0.2, 0.6),
        ("ce", "free", 0.4),
        ("mse", "none", 1.3),
    ],
)
def test_symbolic_losses_match_theory_classification(loss, bias, kappa):
    """The sympy-derived optimal values agree with theory.classification's numeric ones."""
    from theory import classification as tc
    from theory import symbolic_classification as sc

    K, n = 4, 3
    lam = kappa / K / np.sqrt(n)  # lambda_H = lambda_W, K sqrt(n lambda^2) = kappa
    vals = dict(K=K, n=n, lambda_W=lam, lambda_H=lam)
    if loss == "ce":
        expr = sc.cross_entropy().loss
    elif bias == "none":
        expr = sc.mse_bias_free().loss
    elif bias == "free":
        expr = sc.mse_free_bias().loss
    else:
        expr = sc.mse_regularised_bias().loss
        vals["lambda_b"] = bias
    numeric = float(tc.optimum(K, n, lam, lam, loss, bias).loss)
    assert sc.numeric(expr, **vals) == pytest.approx(numeric, rel=1e-12)
