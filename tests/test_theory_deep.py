"""Tests for ``theory.deep`` and ``theory.symbolic_deep`` (docs/theory.md sections 0.5, 2, 6).

Independent computations compared:
* sympy derivation of the threshold / root equations against the float64 scalar solver;
* ``L = 1`` against ``theory.regression`` (``lambda_H(regression) = N lambda_H``) and
  ``theory.classification`` (one-hot targets, no / free bias);
* the constructed minimiser fed to the objective and its hand-written gradient (numpy): value,
  gradient = 0, balance identities, every Gram field;
* best-of-restarts L-BFGS (optax, JAX) on the full non-convex objective, linear (L = 2, 3, both
  sides of the transition, a width bottleneck) and ReLU (L = 2, K = 3; L = 3, K = 2).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import sympy

from theory import _deep_scalar as scalar
from theory import classification, deep, regression, symbolic_deep

HI = jax.lax.Precision.HIGHEST


def _value_grad(Y, lams, H, Ws, b, relu=False):
    """The objective ``1/(2N)||Z - Y||^2 + lambda_H/2 ||H||^2 + sum lambda_W_l/2 ||W_l||^2`` and
    its gradient in (H, Ws, b), by hand-written backpropagation in numpy (float64)."""
    N, L = Y.shape[0], len(Ws)
    Xs, masks, X = [H], [], H
    for l, W in enumerate(Ws):
        A = X @ W.T
        if l < L - 1:
            masks.append(A > 0 if relu else np.ones(A.shape, bool))
            X = np.where(masks[-1], A, 0.0)
            Xs.append(X)
    R = (A + b - Y) / N
    f = 0.5 * N * np.sum(R**2) + 0.5 * lams[0] * np.sum(H**2)
    f += 0.5 * sum(lams[l + 1] * np.sum(W**2) for l, W in enumerate(Ws))
    G, dWs = R, [None] * L
    for l in reversed(range(L)):
        dWs[l] = G.T @ Xs[l] + lams[l + 1] * Ws[l]
        G = G @ Ws[l]
        if l > 0:
            G = G * masks[l - 1]
    return f, (G + lams[0] * H, dWs, R.sum(0))


@functools.partial(jax.jit, static_argnames=("widths", "restarts", "steps"))
def _restarts(Y, lams, relu, key, widths, restarts=8, steps=1000):
    """Best-of-``restarts`` L-BFGS (backtracking line search) on all variables of the bias-free
    model from N(0, 1) inits; ``relu`` is a traced flag so one compilation serves both
    activations of a shape. Returns all final losses and the best ``(H, Ws)``."""
    N, n = Y.shape
    dims = (*widths, n)

    def f(p):
        H, Ws = p
        X = H
        for l, W in enumerate(Ws):
            X = jnp.matmul(X, W.T, precision=HI)
            if l < len(Ws) - 1:
                X = jnp.where(relu, jax.nn.relu(X), X)
        pen = lams[0] * jnp.sum(H**2) + sum(lams[l + 1] * jnp.sum(W**2) for l, W in enumerate(Ws))
        return jnp.sum((X - Y) ** 2) / (2 * N) + pen / 2

    ls = optax.scale_by_backtracking_linesearch(max_backtracking_steps=30, store_grad=True)
    opt = optax.lbfgs(linesearch=ls)
    vg = optax.value_and_grad_from_state(f)

    def run(k):
        ks = jax.random.split(k, len(widths) + 1)
        H = jax.random.normal(ks[0], (N, widths[0]), Y.dtype)
        Ws = tuple(
            jax.random.normal(ks[l + 1], (dims[l + 1], dims[l]), Y.dtype)
            for l in range(len(widths))
        )
        p0 = (H, Ws)

        def step(carry, _):
            p, s = carry
            v, g = vg(p, state=s)
            u, s = opt.update(g, s, p, value=v, grad=g, value_fn=f)
            return (optax.apply_updates(p, u), s), None

        (p, _), _ = jax.lax.scan(step, (p0, opt.init(p0)), None, length=steps)
        return f(p), p

    losses, params = jax.vmap(run)(jax.random.split(key, restarts))
    i = jnp.argmin(jnp.where(jnp.isfinite(losses), losses, jnp.inf))
    return losses, jax.tree_util.tree_map(lambda x: x[i], params)


def _predict(H, Ws, relu):
    X = np.asarray(H)
    for l, W in enumerate(Ws):
        X = X @ np.asarray(W).T
        X = np.maximum(X, 0) if relu and l < len(Ws) - 1 else X
    return X


# ---------------------------------------------------------------------------------------------
# Symbolic derivation against the numerical scalar problem
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("P", [2, 3, 4, 5])
def test_symbolic_threshold_matches_theory_and_numerics(P):
    sp = symbolic_deep.scalar_problem(P)
    assert sympy.simplify(sp.kappa_crit - sp.kappa_crit_theory) == 0
    assert sp.jump == sympy.Rational(P - 2, P - 1)
    assert sp.loss_at_crit == sympy.Rational(1, 2)
    assert sympy.simplify(sp.s_max - sympy.Rational(P - 2, 2 * P - 2)) == 0
    assert abs(float(sp.kappa_crit) - scalar.kappa_crit(P)) <= 1e-15
    assert abs(float(sp.phi_max) - scalar.phi_max(P)) <= 1e-15
    assert scalar.jump(P) == float(sp.jump)
    # The root equation is kappa = t^{P-2} (1 - t^P); the tie h - 1/2 on that branch.
    tt = symbolic_deep.t
    expected = symbolic_deep.kappa - tt ** (P - 2) + tt ** (2 * P - 2)
    assert sympy.expand(sp.root_equation - expected) == 0
    tie = tt**P * (sympy.Rational(1 - P, 2) * tt**P + sympy.Rational(P - 2, 2))
    assert sympy.expand(sp.tie - tie) == 0
    # The tie: h(s*) = 1/2 at kappa_crit in float64 too.
    s_c = 1 - float(scalar.largest_root(scalar.kappa_crit(P), P))
    assert abs(s_c - float(sp.jump)) <= 1e-7 if P > 2 else s_c == 0.0
    assert abs(float(scalar.scalar_objective(s_c, scalar.kappa_crit(P), P)) - 0.5) <= 1e-15


@pytest.mark.parametrize("P", [2, 3, 4, 5])
def test_balanced_penalty(P):
    bp = symbolic_deep.balanced_penalty(P)
    sg = symbolic_deep.sigma
    assert sympy.simplify(sympy.prod(bp.factors) - sg) == 0
    gam = sympy.prod(bp.betas) ** sympy.Rational(1, P)
    assert sympy.simplify(bp.value - sympy.Rational(P, 2) * gam * sg ** sympy.Rational(2, P)) == 0


@pytest.mark.parametrize("P", [2, 3, 4, 5])
def test_roots_against_sympy(P):
    kc, pm = scalar.kappa_crit(P), scalar.phi_max(P)
    kappas = [1e-6, 1e-3, 0.05, 0.5 * kc, 0.999 * kc, 0.9999 * pm]
    kappas += [0.5 * (kc + pm)] if P > 2 else []  # between the threshold and existence
    errs = []
    for k in kappas:
        kq = sympy.Rational(k)
        s_exact = symbolic_deep.largest_root_numeric(P, kq)
        u = float(scalar.largest_root(float(kq), P))
        u_exact = float(1 - s_exact)
        errs.append(abs(u - u_exact) / u_exact)
    assert max(errs) <= 1e-12, errs
    assert np.isnan(scalar.largest_root(1.0001 * pm, P))


@pytest.mark.parametrize("P", [2, 3, 4, 5])
def test_transition_just_below_and_above(P):
    kc = scalar.kappa_crit(P)
    s, h = scalar.optimal_scale(np.array([kc * (1 - 1e-9), kc * (1 + 1e-9)]), P)
    assert s[1] == 0.0 and h[1] == 0.5
    if P == 2:
        assert 0 < s[0] <= 2e-9 and h[0] <= 0.5  # continuous (h = 1/2 - 5e-19 rounds to 1/2)
    else:
        assert abs(s[0] - (P - 2) / (P - 1)) <= 1e-6  # first order: the jump
        assert 0.5 - h[0] > 1e-11  # h(s*) - 1/2 is linear in kappa - kappa_crit
    # Through the full optimum: two target directions on either side of kappa_crit.
    N, L = 7, P - 1
    rng = np.random.default_rng(P)
    V, _ = np.linalg.qr(rng.normal(size=(N, 2)))
    U, _ = np.linalg.qr(rng.normal(size=(3, 2)))
    lam, kappas = 0.01, np.array([kc * (1 - 1e-6), kc * (1 + 1e-6)])
    y = (kappas / (lam * N)) ** (1 / (2 / P - 2))  # kappa = gamma N y^{2/P-2}, gamma = lam
    opt = deep.optimum((V * y) @ U.T, lam, lam, (3,) * L)
    np.testing.assert_allclose(opt.kappa[:2], kappas, rtol=1e-12)
    assert opt.rank == 1
    assert opt.singular_values[1] == 0.0
    assert abs(opt.scale[0] - scalar.jump(P)) <= (1e-3 if P > 2 else 2e-6)


# ---------------------------------------------------------------------------------------------
# L = 1 against the existing closed forms
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("d", [2, 5])
def test_single_layer_equals_regression(bias, d):
    rng = np.random.default_rng(d + 10 * bias)
    N = 30
    Y = rng.normal(size=(N, 4)) @ rng.normal(size=(4, 4)) + rng.normal(size=4)
    Yc = Y - Y.mean(0) if bias else Y
    ev = np.linalg.eigvalsh(Yc.T @ Yc / N)[::-1]
    lW = 0.3
    lH = np.sqrt(ev[1] * ev[2]) / (N * lW)  # c = N lH lW between eigenvalues 2 and 3: rank 2
    o = deep.optimum(Y, lH, lW, (d,), bias=bias)
    r = regression.optimum(Y, N * lH, lW, d, bias=bias)  # lambda_H(regression) = N lambda_H

    def rel(a, b):
        b = np.asarray(b)
        return np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300)

    assert o.rank == int(r.rank)
    assert o.rank == 2
    assert abs(o.loss - float(r.loss)) <= 1e-13 * abs(float(r.loss))
    assert rel(o.predictions, r.predictions) <= 1e-13
    assert rel(o.WWT, r.WWT) <= 1e-13
    assert rel(o.feature_gram_cores[0], r.feature_gram_core) <= 1e-12
    assert rel(o.bias, r.bias) <= 1e-13 if bias else not np.any(o.bias)


@pytest.mark.parametrize("bias", ["none", "free"])
@pytest.mark.parametrize("lam", [0.01, 0.3])  # kappa = 0.12 < 1 and 3.6 > 1
def test_single_layer_equals_classification(bias, lam):
    K, n = 3, 4
    labels = classification.balanced_labels(K, n)
    c = classification.optimum(K, n, lam, lam, bias=bias)
    o = deep.optimum_from_labels(labels, K, lam, lam, (K,), "linear", bias == "free")
    assert abs(o.loss - float(c.loss)) <= 1e-14
    np.testing.assert_allclose(o.WWT, c.WWT, atol=1e-14)
    np.testing.assert_allclose(o.class_mean_gram(1, labels, K), c.class_mean_gram, atol=1e-14)
    logits = np.eye(K)[labels].T @ o.predictions / n
    np.testing.assert_allclose(logits, c.logits, atol=1e-14)
    np.testing.assert_allclose(o.bias, c.bias, atol=1e-15)
    assert (o.rank == 0) == bool(c.zero)


# ---------------------------------------------------------------------------------------------
# The constructed minimiser: value, stationarity, balance, every Gram field
# ---------------------------------------------------------------------------------------------

CASES = [  # (widths, lambda_H, lambda_W, bias): all kept, rank drops, bottleneck, zero
    ((4, 4), 1e-3, 2e-3, False),
    ((4, 3, 5), 0.02, (0.01, 0.04, 0.02), True),
    ((3, 2, 4), 0.01, 0.01, False),
    ((5, 5, 5, 5), 0.02, 0.03, True),
    ((4, 4), 1.0, 1.0, False),
]


@pytest.mark.parametrize("case", CASES)
def test_minimiser_value_gradient_balance(case):
    widths, lH, lW, bias = case
    rng = np.random.default_rng(len(widths))
    Y = rng.normal(size=(9, 3)) @ np.diag([2.0, 1.0, 0.4]) + 0.5
    o = deep.optimum(Y, lH, lW, widths, bias=bias)
    H, Ws, b = o.minimiser()
    lam = o.lambdas
    f, (gH, gWs, gb) = _value_grad(Y, lam, H, Ws, b)
    assert abs(f - o.loss) <= 1e-14 * max(1.0, o.loss)
    gnorm = max(np.max(np.abs(x)) for x in (gH, *gWs, gb if bias else 0.0))
    assert gnorm <= 1e-13  # a stationary point (the bias gradient only counts when free)
    # Balance: lambda_W1 W1^T W1 = lambda_H H^T H, lambda_Wl Wl^T Wl = lambda_W(l-1) W W^T.
    np.testing.assert_allclose(lam[1] * Ws[0].T @ Ws[0], lam[0] * H.T @ H, atol=1e-13)
    for l in range(1, len(Ws)):
        np.testing.assert_allclose(
            lam[l + 1] * Ws[l].T @ Ws[l], lam[l] * Ws[l - 1] @ Ws[l - 1].T, atol=1e-13
        )
    np.testing.assert_allclose(Ws[-1] @ Ws[-1].T, o.WWT, atol=1e-13)
    norms = [np.sum(H**2)] + [np.sum(W**2) for W in Ws]
    np.testing.assert_allclose(norms, o.factor_norms_sq, rtol=1e-13, atol=1e-15)
    X = H
    for l, W in enumerate(Ws):
        np.testing.assert_allclose(X @ X.T, o.feature_gram(l + 1), atol=1e-13)
        ev = np.linalg.eigvalsh(X.T @ X)[::-1][: o.rank]
        np.testing.assert_allclose(ev, o.feature_spectra[l], atol=1e-13)
        ew = np.linalg.eigvalsh(W @ W.T)[::-1][: o.rank]
        np.testing.assert_allclose(ew, o.weight_spectra[l], atol=1e-13)
        X = X @ W.T
    np.testing.assert_allclose(X + b, o.predictions, atol=1e-13)
    if lH == 1.0:
        assert o.rank == 0 and o.loss == pytest.approx(np.sum(Y**2) / (2 * 9), rel=1e-14)


# ---------------------------------------------------------------------------------------------
# Independent numerical check: best-of-restarts L-BFGS on the full objective
# ---------------------------------------------------------------------------------------------


def _check_restarts(o, Y, relu, key):
    """Best of restarts matches the closed form's loss (never below it) and output."""
    losses, (H, Ws) = _restarts(jnp.asarray(Y), jnp.asarray(o.lambdas), relu, key, o.widths)
    gap = float(jnp.min(losses)) - o.loss
    assert -1e-13 <= gap <= 1e-10 * o.loss, (gap, np.asarray(losses))
    pred = _predict(H, Ws, relu)
    assert np.max(np.abs(pred - o.predictions)) <= 1e-5
    return H, Ws


@pytest.mark.slow
@pytest.mark.parametrize("widths", [(3, 3), (3, 2, 3)])
def test_linear_closed_form_against_restarts(widths):
    """Targets with singular values (1.5, 1, 0.7) sqrt(N); lambda puts the last direction that
    fits (index min(widths) - 1) at 0.9 and 1.1 kappa_crit: kept with the jump, then dropped.
    (3, 2, 3) has a width bottleneck below the target rank."""
    N, P, j = 6, len(widths) + 1, min(widths) - 1
    rng = np.random.default_rng(7)
    V, _ = np.linalg.qr(rng.normal(size=(N, 3)))
    U, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    y = np.sqrt(N) * np.array([1.5, 1.0, 0.7])
    Y = (V * y) @ U.T
    for frac in (0.9, 1.1):
        lam = frac * scalar.kappa_crit(P) / (N * y[j] ** (2 / P - 2))  # gamma = lam
        o = deep.optimum(Y, lam, lam, widths)
        assert o.rank == (j + 1 if frac < 1 else j)
        assert abs(o.kappa[j] / o.kappa_crit - frac) <= 1e-12
        _check_restarts(o, Y, False, jax.random.PRNGKey(0))


@pytest.mark.parametrize(("K", "widths"), [(3, (3, 3)), (2, (3, 2, 3))])
def test_relu_closed_form_against_restarts(K, widths):
    """ReLU: best of restarts reaches the linear value (Tirer & Bruna, L = 2; Sukenik et al.,
    K = 2), never goes below it, and the post-ReLU class means form the predicted frame. The
    K = 2 targets are padded with a zero column to share the linear test's compilation (the
    extra output row is 0 at the optimum, so the optimum is the K = 2 one)."""
    n = 6 // K  # N = 6 and n_out = 3: the linear test's shapes, one compilation
    labels = np.repeat(np.arange(K), n)
    o = deep.optimum_from_labels(labels, K, 0.01, 0.02, widths, "relu")
    assert o.rank == K and o.feature_gram_cores[0] is None and o.weight_spectra[0] is None
    E = np.eye(K)[labels]
    Y = np.pad(E, ((0, 0), (0, 3 - K)))
    o = o._replace(predictions=np.pad(o.predictions, ((0, 0), (0, 3 - K))))
    H, Ws = _check_restarts(o, Y, True, jax.random.PRNGKey(0))
    X = np.asarray(H)
    for l in range(len(widths)):
        M = E.T @ X / n
        assert np.max(np.abs(X - M[labels])) <= 1e-5  # within-class collapse
        if l == 0:
            np.testing.assert_allclose(np.sum(M**2, 1), o.class_norms_sq[0], rtol=1e-5)
        else:
            np.testing.assert_allclose(M @ M.T, o.class_mean_gram(l + 1, labels, K), atol=1e-5)
        X = _predict(X, [Ws[l]], relu=False)
        X = np.maximum(X, 0) if l < len(widths) - 1 else X
    WL = np.asarray(Ws[-1])
    np.testing.assert_allclose(WL[:K] @ WL[:K].T, o.WWT, atol=1e-5)


def test_relu_minimiser_and_first_layer_freedom():
    """The constructed minimiser is ReLU-feasible; for K = 2 an antipodal / obtuse first layer
    (cosine rho in [-1, 0], with the W_1 of binary_dnc's derivation) gives the same loss."""
    per, widths = 3, (3, 3, 3)
    dnc = deep.binary_dnc(per, 0.01, 0.02, widths)
    o = dnc.optimum
    labels = np.repeat([0, 1], per)
    Y = np.eye(2)[labels]
    H, Ws, b = o.minimiser()
    assert abs(_value_grad(Y, o.lambdas, H, Ws, b, relu=True)[0] - o.loss) <= 1e-15
    bsq, a = dnc.first_layer_norm_sq, np.sqrt(dnc.class_mean_grams[1][0, 0])
    assert dnc.class_mean_grams[0] is None and dnc.first_layer_cosine_range == (-1.0, 0.0)
    for rho in (-1.0, -0.5, -0.2):
        h1 = np.sqrt(bsq) * np.array([1.0, 0.0, 0.0])
        h2 = np.sqrt(bsq) * np.array([rho, np.sqrt(1 - rho**2), 0.0])
        c = -rho * a  # v_1 = (a, -c), v_2 = (-c, a): (v_k)_+ = a e_k
        V = np.array([[a, -c], [-c, a], [0.0, 0.0]])
        Hb = np.stack([h1, h2])  # class means (2, d_1)
        W1 = V @ np.linalg.pinv(Hb.T)  # min-norm W_1 with W_1 hbar_k = v_k
        val = _value_grad(Y, o.lambdas, Hb[labels], (W1, *Ws[1:]), b, relu=True)[0]
        assert abs(val - o.loss) <= 1e-14, rho
    # rho > 0 cannot reach it with this construction: c = 0 is best and costs 2a^2/(1-rho^2)/b^2.
    Hb = np.sqrt(bsq) * np.array([[1.0, 0.0, 0.0], [0.3, np.sqrt(1 - 0.09), 0.0]])
    W1 = np.array([[a, 0.0], [0.0, a], [0.0, 0.0]]) @ np.linalg.pinv(Hb.T)
    val = _value_grad(Y, o.lambdas, Hb[labels], (W1, *Ws[1:]), b, relu=True)[0]
    assert val > o.loss + 1e-4


# ---------------------------------------------------------------------------------------------
# DNC candidate, scope of the ReLU predictions, bad input
# ---------------------------------------------------------------------------------------------


def test_dnc_candidate_loss():
    K, n, widths = 4, 3, (4, 4, 4)
    P = 4
    for frac in (0.3, 0.9):  # below kappa_crit: the candidate is the linear optimum
        lam = frac * scalar.kappa_crit(P) / (K * n ** (1 / P))  # kappa = K n^{1/P} gamma
        c = deep.dnc_candidate_loss(K, n, lam, lam, widths)
        o = deep.optimum_from_labels(np.repeat(np.arange(K), n), K, lam, lam, widths, "linear")
        assert abs(c - o.loss) <= 1e-15 and o.rank == K
        H, Ws, b = o.minimiser()  # non-negative frames: the ReLU objective takes this value
        Y = np.eye(K)[np.repeat(np.arange(K), n)]
        assert abs(_value_grad(Y, o.lambdas, H, Ws, b, relu=True)[0] - c) <= 1e-15
    mid = 0.5 * (scalar.kappa_crit(P) + scalar.phi_max(P)) / (K * n ** (1 / P))
    assert deep.dnc_candidate_loss(K, n, mid, mid, widths) > 0.5  # exists, worse than zero
    high = 1.01 * scalar.phi_max(P) / (K * n ** (1 / P))
    assert np.isnan(deep.dnc_candidate_loss(K, n, high, high, widths))
    with pytest.raises(NotImplementedError, match="not predicted"):
        deep.optimum_from_labels(np.repeat(np.arange(K), n), K, 0.01, 0.01, widths, "relu")


def test_relu_scope():
    lab3 = np.repeat(np.arange(3), 2)
    with pytest.raises(NotImplementedError, match="bias"):
        deep.optimum_from_labels(lab3, 3, 0.01, 0.01, (3, 3), "relu", bias=True)
    with pytest.raises(ValueError, match="targets"):
        deep.optimum(np.random.default_rng(0).normal(size=(6, 3)), 0.01, 0.01, (3, 3), "relu")
    with pytest.raises(ValueError, match="targets"):  # unbalanced one-hot
        deep.optimum_from_labels(np.array([0, 0, 1, 2]), 3, 0.01, 0.01, (3, 3), "relu")
    with pytest.raises(NotImplementedError, match="widths"):
        deep.optimum_from_labels(lab3, 3, 0.01, 0.01, (3, 2), "relu")
    # L = 1: no activation is applied, any targets.
    Y = np.random.default_rng(1).normal(size=(6, 3))
    a = deep.optimum(Y, 0.01, 0.01, (3,), "relu", bias=True)
    b = deep.optimum(Y, 0.01, 0.01, (3,), "linear", bias=True)
    assert a.loss == b.loss


BAD = [
    (dict(widths=()), ValueError, "widths"),
    (dict(widths=(0, 2)), ValueError, "widths"),
    (dict(widths=(2.0,)), TypeError, "widths"),
    (dict(widths=3), TypeError, "widths"),
    (dict(widths=(2, 2), lambda_W=(0.1, 0.1, 0.1)), ValueError, "lambda_W"),
    (dict(lambda_W=(0.1, -0.1)), ValueError, r"lambda_W\[1\]"),
    (dict(lambda_H=-1.0), ValueError, "lambda_H"),
    (dict(lambda_H=float("nan")), ValueError, "lambda_H"),
    (dict(lambda_H=0.0), ValueError, "lambda_H"),
    (dict(lambda_W=float("nan")), ValueError, "lambda_W"),
    (dict(lambda_W="a"), TypeError, "lambda_W"),
    (dict(activation="tanh"), ValueError, "activation"),
    (dict(bias="yes"), TypeError, "bias"),
    (dict(targets=np.ones(4)), ValueError, "targets"),
    (dict(targets=np.ones((2, 2, 2))), ValueError, "targets"),
    (dict(targets=np.array([[np.nan, 1.0]])), ValueError, "targets"),
    (dict(targets=np.ones((2, 2), complex)), TypeError, "targets"),
]


@pytest.mark.parametrize(("change", "err", "match"), BAD)
def test_bad_input(change, err, match):
    args = dict(targets=np.eye(2), lambda_H=0.1, lambda_W=(0.1, 0.1), widths=(2, 2))
    args.update(change)
    if "widths" in change and "lambda_W" not in change:
        args["lambda_W"] = 0.1
    with pytest.raises(err, match=match):
        deep.optimum(**args)


def test_bad_input_other_entry_points():
    with pytest.raises(ValueError, match="num_classes"):
        deep.dnc_candidate_loss(1, 2, 0.1, 0.1, (2,))
    with pytest.raises(ValueError, match="per_class"):
        deep.dnc_candidate_loss(2, 0, 0.1, 0.1, (2,))
    with pytest.raises(ValueError, match="width"):
        deep.dnc_candidate_loss(3, 2, 0.1, 0.1, (3, 2))
    with pytest.raises(ValueError, match="labels"):
        deep.optimum_from_labels(np.array([0, 3]), 2, 0.1, 0.1, (2,))
    with pytest.raises(ValueError, match="layer"):
        deep.optimum(np.eye(2), 0.1, 0.1, (2,)).feature_gram(2)
    with pytest.raises(ValueError, match="P"):
        scalar.kappa_crit(1)


@pytest.mark.slow
def test_out_of_scope_relu_is_a_value_and_compare_bounds_the_loss():
    import theory
    import ufm

    labels = np.repeat(np.arange(3), 2)
    p = ufm.DeepUFM.from_labels(labels, 3, 5e-3, 5e-3, (4, 4, 4), "relu")
    ref = theory.reference(p)
    assert not ref.available and "L = 3 >= 3" in ref.reason
    assert ref.notes()["loss_theory"] == ref.reason
    sol = ufm.solve(p, "lbfgs", restarts=2, key=jax.random.PRNGKey(0))
    cmp = theory.compare(sol, p)
    assert not cmp.available and cmp.reason == ref.reason and not cmp.passed(1.0)
    assert cmp.errors == {} and "loss" in cmp.not_compared
    ((name, gap),) = cmp.bounds.items()  # the loss against the DNC candidate, an upper bound
    cand = deep.dnc_candidate_loss(3, 2, 5e-3, 5e-3, (4, 4, 4))
    assert "DNC candidate" in name
    assert gap == pytest.approx((float(sol.loss) - cand) / abs(cand), rel=1e-6, abs=1e-12)
    assert "not compared" in cmp.table(1e-6)
    # In scope (linear): available, and the same problem compares quantity by quantity.
    lin = ufm.DeepUFM.from_labels(labels, 3, 5e-3, 5e-3, (4, 4, 4), "linear")
    assert theory.reference(lin).available
