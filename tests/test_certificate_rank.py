"""The global-optimality certificate with the rank constraint active (``d < n``, ``rank W = d``):
the Eckart-Young form of ``ufm/_certificate.py``.

Targets with orthogonal, zero-mean columns (a Sylvester-Hadamard matrix) have singular values
``s = (12, 8, 4)`` exactly, so every stationary point is known in closed form: keep a set ``S``
of ``d`` directions, ``Z = sum_{i in S} (s_i - M tau) u_i v_i^T``. The certificate there must
equal ``max_{j not in S} s_j / min_{i in S} s_i - 1`` (a ratio of singular values of the data:
an independent computation), > 0 at the saddles and <= 0 at the global minimum, so a solve
started in a lesser direction ends ``saddle``, never ``successful``.
"""

import itertools

import jax
import numpy as np
import pytest

import ufm
from ufm import _exact

M, n = 16, 3
SING = np.array([12.0, 8.0, 4.0])
LAM = 1e-2


def hadamard_targets():
    Hd = np.array([[1.0]])
    while Hd.shape[0] < M:
        Hd = np.block([[Hd, Hd], [Hd, -Hd]])
    U = Hd[:, 1 : n + 1] / np.sqrt(M)  # orthonormal, zero-mean columns
    return U * SING, U


def stationary_point(S, U, tau, rng):
    """Balanced or not, the certificate only sees Z = H W^T and the rank of W."""
    d = len(S)
    a = rng.uniform(0.5, 2.0, size=d)
    W = np.zeros((n, d))
    H = np.zeros((M, d))
    for k, i in enumerate(S):
        W[i, k] = np.sqrt(a[k])
        H[:, k] = U[:, i] * (SING[i] - M * tau) / np.sqrt(a[k])
    return ufm.Params(H, W, np.zeros(n))


@pytest.mark.slow
@pytest.mark.parametrize("d", [1, 2])
@pytest.mark.parametrize("bias", [True, False])
def test_certificate_at_every_stationary_point(d, bias):
    Y, U = hadamard_targets()
    p = ufm.RegressionUFM(Y, LAM, LAM, d, bias=bias)
    tau = float(p.factor_penalty())
    rng = np.random.default_rng(d)
    for S in itertools.combinations(range(n), d):
        params = stationary_point(S, U, tau, rng)
        viol, applicable = p.certificate(params)
        out = [j for j in range(n) if j not in S]
        expected = max(SING[out]) / min(SING[list(S)]) - 1.0
        assert bool(applicable)
        assert float(viol) == pytest.approx(expected, rel=1e-9, abs=1e-12), S
        # the n x n path of ufm.sweep, at the exact solver's point with this W
        data = p.exact_data()
        red, A = _exact.setup(data, jax.random.PRNGKey(0), params, _exact.moments(p.targets))
        ro = _exact.reduced_optimum(A, red, data, M)
        full, _ = p.certificate(_exact.recover(A, red, data))
        assert bool(ro.applicable)
        assert float(ro.violation) == pytest.approx(float(full), rel=1e-9, abs=1e-12), S


@pytest.mark.slow
@pytest.mark.parametrize("solver", [None, "lbfgs"])
def test_a_solve_started_in_a_lesser_direction_ends_saddle(solver):
    Y, U = hadamard_targets()
    p = ufm.RegressionUFM(Y, LAM, LAM, 1)
    init = ufm.Params(0.1 * Y[:, 2:3], np.array([[0.0], [0.0], [1.0]]), np.zeros(n))
    sol = ufm.solve(p, solver, init=init)
    assert ufm.Status(int(sol.status)) == ufm.Status.saddle
    # from a random init the same solver reaches the global minimum and says so
    sol = ufm.solve(p, solver, key=jax.random.PRNGKey(1))
    assert ufm.Status(int(sol.status)) == ufm.Status.successful
    viol, applicable = p.certificate(sol.params)
    assert bool(applicable) and float(viol) == pytest.approx(SING[1] / SING[0] - 1, rel=1e-6)


@pytest.mark.slow
def test_mse_classification_with_fewer_features_than_classes():
    """d = 2 < K = 3, MSE without bias: the class-mean certificate (K x K) and the full one
    agree, and the global minimum passes; with cross-entropy the constrained case stays
    uncertified (no isotropic curvature)."""
    labels = np.repeat(np.arange(3), 4)
    with pytest.warns(UserWarning, match="feature_dim = 2 < 3"):
        p = ufm.ClassificationUFM(labels, 3, 1e-3, 1e-3, 2, loss="mse", bias="none")
    sol = ufm.solve(p, key=jax.random.PRNGKey(0))
    assert ufm.Status(int(sol.status)) == ufm.Status.successful
    viol, applicable = p.certificate(sol.params)
    assert bool(applicable) and float(viol) <= 1e-6
    red = p.reduction()
    H, W, b = sol.params
    hbar = np.stack([np.asarray(H)[labels == k].mean(0) for k in range(3)])
    rviol, rapp = red.problem.certificate(ufm.Params(hbar, W, b))
    assert bool(rapp) and float(rviol) == pytest.approx(float(viol), rel=1e-6, abs=1e-9)
    with pytest.warns(UserWarning, match="feature_dim = 1 < 2"):
        ce = ufm.ClassificationUFM(labels, 3, 1e-3, 1e-3, 1, loss="ce", bias="none")
    _, app = ce.certificate(ufm.solve(ce, key=jax.random.PRNGKey(0)).params)
    assert not bool(app)


@pytest.mark.parametrize(("dtype", "spread"), [("float64", 1e7), ("float32", 2e3)])
@pytest.mark.parametrize("bias", [True, False])
def test_a_global_minimum_with_widely_spread_kept_values_is_certified(dtype, spread, bias):
    """The spans and sigma_d(Z) come from the factors, not from Z^T Z (which squares the
    spread): with singular values (spread, 1, 0.97, 0.3, 0.1), d = 2 and tau/c = 0.5, the
    certificate at the balanced global minimum is 0.97/1 - 1 = -0.03. From Z^T Z it read up to
    +0.097 (float64, spread 3e7; a false saddle), and the sqrt(eps) rank cut on W W^T made a
    float32 minimum at spread 2e3 "rank-deficient" (+0.98 by the unconstrained test)."""
    rng = np.random.default_rng(7)
    N, n, d = 20, 5, 2
    s = np.array([spread, 1.0, 0.97, 0.3, 0.1])
    X = rng.normal(size=(N, n))
    u = np.linalg.qr(X - X.mean(0) if bias else X)[0]
    v = np.linalg.qr(rng.normal(size=(n, n)))[0]
    Y = (u * s) @ v.T + (3.0 * rng.normal(size=n) if bias else 0.0)
    lam = 0.5 / np.sqrt(N)  # tau / c = sqrt(lambda_H lambda_W N) = 0.5
    p = ufm.RegressionUFM(Y.astype(dtype), lam, lam, d, bias=bias)
    sig = np.sqrt(s[:d] - 0.5)
    H, W = u[:, :d] * sig, v[:, :d] * sig
    b = Y.mean(0) if bias else np.zeros(n)
    viol, applicable = p.certificate(ufm.Params(*(a.astype(dtype) for a in (H, W, b))))
    assert bool(applicable)
    # the rounding allowance (gradient_rounding) can only lower it, by ~eps |Y| / tau
    below = 5e-3 if dtype == "float32" else 1e-6
    assert -0.03 - below <= float(viol) <= -0.03 + 1e-9
