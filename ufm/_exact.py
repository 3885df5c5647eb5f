r"""Exact reduction of an MSE UFM to an ``n x r`` problem over ``W`` (``r = min(n, d)``).

Every MSE UFM in the package (regression, and classification with one-hot targets) has the form

    L(H, W, b) = 1/(2N) ||H W^T + 1 b^T - Y||_F^2 + rho/(2N) ||H||_F^2 + lambda_W/2 ||W||_F^2
                 [+ lambda_b/2 ||b||^2]

with ``Y (N, n)`` and a ridge parameter ``rho`` (``rho = lambda_H`` for the regression UFM,
``rho = N lambda_H`` for the classification UFM whose feature penalty is not divided by ``N``).
For fixed ``W`` the minimisation over each feature row is a ridge regression: with
``K = W W^T + rho I_n`` and ``z_i = y_i - b``,

    h_i = W^T K^{-1} z_i,    min_h = (rho / 2N) z_i^T K^{-1} z_i.

Summing, with ``ybar`` the target mean and ``Sigma = (Y - ybar)^T (Y - ybar) / N``,

    F(W, b) = (rho/2) [tr(K^{-1} Sigma) + (ybar - b)^T K^{-1} (ybar - b)] + lambda_W/2 ||W||^2
              [+ lambda_b/2 ||b||^2],

minimised over ``b`` in closed form: ``b = 0`` (no bias), ``b = ybar`` (free bias), or
``b = rho (rho I + lambda_b K)^{-1} ybar`` (regularised bias). The result depends on the data only
through ``Sigma`` and ``ybar`` and on ``W`` only through ``W W^T`` and ``||W||``; its gradient
``(-rho K^{-1} C K^{-1} + lambda_W I) W`` keeps ``W`` in its initial row space, so we write
``W = A Q`` with ``Q`` a fixed ``r x d`` matrix with orthonormal rows and minimise over ``A``
(``n x r``) with L-BFGS: ``O(n^3)`` per step, independent of ``N`` and ``d``.

This is a numerical minimisation, *not* the soft-threshold closed form of :mod:`theory`, so
comparing the two is a check between independent computations. It needs ``rho > 0`` and
``lambda_W > 0``.

Fewer features than outputs (``r = d < n``): ``K`` then has ``n - r`` eigenvalues equal to
``rho`` beside ones of order ``||A||^2``, and forming it loses the small ones once
``||A||^2 / rho`` nears ``1 / eps`` (e.g. ``d < n``, lambdas 1e-10 and targets of size 1e6,
where its Cholesky factorisation fails). Where ``||A||_F^2 / rho >= 0.01 / eps``
(:func:`_k_is_safe`, per instance and per evaluation) every product with ``K^{-1}`` goes
through the ridge solution
``X = (A^T A + rho I_r)^{-1} A^T V = argmin_X ||V - A X||^2 + rho ||X||^2`` (:func:`ridge`,
from a QR factorisation of ``[A; sqrt(rho) I_r]``, so nothing is squared): ``K^{-1} A = X^T``
for ``V = I`` (push-through), ``rho K^{-1} V = V - A X`` (a residual, never ``V / rho``), and
``rho V^T K^{-1} V = ||V - A X||^2 + rho ||X||^2``, a minimum over ``X`` whose value errs only
to second order in ``X``'s error; its gradient in ``A`` is ``-(V - A X) X^T`` (Danskin).
Below that bound ``K`` is formed as for ``d >= n``: its residuals come from triangular solves,
not from the difference ``V - A X``, whose absolute error ``eps ||V||`` would otherwise floor
the gradient when a rank-``d`` model explains all the variance.

The data enter only through :func:`moments` (one ``O(N n^2)`` pass): a sweep over lambdas forms
them once for all its points. The ``n x n`` linear algebra of every step is a Cholesky
factorisation and triangular solves (LAPACK).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl

from ._certificate import eckart_young
from ._types import MSEData, Params


class Reduced(NamedTuple):
    """The data summary of the reduced problem, in an orthonormal basis ``U`` of the output
    space (``U = None``: the standard basis)."""

    Sigma: jax.Array  # (n, n) centred covariance over N, diagonal (>= 0) in the basis U
    mean: jax.Array  # (n,) in the basis U
    Q: jax.Array  # (r, d) orthonormal rows
    U: jax.Array | None = None  # (n, n) orthogonal; W = U A Q


class Moments(NamedTuple):
    """What the reduced problem needs of the targets: ``Sigma = U diag(w) U^T`` (centred
    covariance over ``N``, eigenvalues at rounding level set to exactly 0) and the mean in the
    basis ``U`` (:func:`moments`)."""

    w: jax.Array  # (n,) ascending, >= 0
    mean: jax.Array  # (n,) U^T ybar
    U: jax.Array  # (n, n) orthogonal


# -- small dense linear algebra ---------------------------------------------------------------


def spd_solve(K: jax.Array, B: jax.Array) -> jax.Array:
    """``K^{-1} B`` for symmetric positive definite ``K (n, n)`` and ``B (n, m)`` (Cholesky)."""
    return jsl.cho_solve((jnp.linalg.cholesky(K), True), B)


def ridge(A: jax.Array, V: jax.Array, rho: jax.Array) -> jax.Array:
    """``(A^T A + rho I_r)^{-1} A^T V`` for ``A (n, r)``, ``V (n, m)``: the minimiser of
    ``||V - A X||^2 + rho ||X||^2``, by least squares on ``[A; sqrt(rho) I_r] X ~ [V; 0]`` (QR of
    the ``(n + r) x r`` stack: backward stable, the conditioning of ``A`` is not squared)."""
    r = A.shape[1]
    Qs, Rs = jnp.linalg.qr(jnp.concatenate([A, jnp.sqrt(rho) * jnp.eye(r, dtype=A.dtype)]))
    return jsl.solve_triangular(Rs, Qs[: A.shape[0]].T @ V, lower=False)


def _thin(A: jax.Array) -> bool:
    """Fewer features than outputs: ``K = A A^T + rho I`` may be unsafe to form."""
    return A.shape[1] < A.shape[0]


def _k_is_safe(A: jax.Array, rho: jax.Array) -> jax.Array:
    """``||A||_F^2 / rho < 0.01 / eps``: ``K``'s eigenvalues ``rho`` survive its rounding
    (module docstring). Where they do, the ``K`` form is the more accurate one: a residual
    ``rho K^{-1} V`` from triangular solves has a small relative error, while ``V - A X`` is a
    difference with an absolute error ``eps ||V||``, which keeps the stopping test from passing
    when a rank-``d`` model explains all the variance (``d >= rank Sigma``) and the lambdas are
    small beside it (e.g. rank-1 targets of size 1e6, lambdas 1e-2 and 1e-1)."""
    return jnp.sum(A**2) < (0.01 / jnp.finfo(A.dtype).eps) * rho


def _by_safety(A, rho, k_form, ridge_form):
    """``k_form(A)`` where :func:`_k_is_safe`, else ``ridge_form(A)`` (pytrees alike), per
    instance and differentiable: the ``K`` form runs at ``A = 0`` where it is not used (``K =
    rho I``), so neither branch is ever NaN, also under ``jax.vmap`` (where both run)."""
    safe = _k_is_safe(A, rho)
    k = k_form(jnp.where(safe, A, jnp.zeros_like(A)))
    r = ridge_form(A)
    return jax.tree_util.tree_map(lambda u, v: jnp.where(safe, u, v), k, r)


# -- the reduced problem -----------------------------------------------------------------------


def _solve_bias(K, red: Reduced, data: MSEData, A=None) -> jax.Array:
    """The optimal ``b`` for fixed ``K = W W^T + rho I``: ``rho (rho I + lambda_b K)^{-1} ybar``
    for a regularised bias. With ``A`` (thin, ``K = None``), as ``(ybar - A' X) / (1 +
    lambda_b)`` with ``A' = sqrt(lambda_b) A`` and ``X`` the ridge solution for ``V = ybar`` at
    ``rho (1 + lambda_b)`` (push-through, see the module docstring)."""
    if data.bias == "none":
        return jnp.zeros_like(red.mean)
    if data.bias == "free":
        return red.mean
    if K is None:
        A2 = jnp.sqrt(data.lambda_b) * A
        X = ridge(A2, red.mean[:, None], data.ridge * (1.0 + data.lambda_b))
        return (red.mean - (A2 @ X)[:, 0]) / (1.0 + data.lambda_b)
    n = red.mean.shape[0]
    M = data.ridge * jnp.eye(n, dtype=K.dtype) + data.lambda_b * K
    return data.ridge * spd_solve(M, red.mean[:, None])[:, 0]


def reduced_objective(A: jax.Array, red: Reduced, data: MSEData) -> jax.Array:
    """``F(W, b*(W))`` of the module docstring, as a function of ``A`` (``W = A Q``).

    With ``K = L L^T`` and ``Sigma = diag(w)`` (the basis of :func:`setup`):
    ``tr(K^{-1} Sigma) = ||L^{-1} diag(sqrt(w))||^2`` and ``z^T K^{-1} z = ||L^{-1} z||^2``."""
    n = A.shape[0]
    root = jnp.sqrt(jnp.maximum(jnp.diagonal(red.Sigma), 0.0))

    def columns(b):  # V = [diag(root), z] with z = ybar - b: rho tr(V^T K^{-1} V) is the data
        return jnp.concatenate([jnp.diag(root), (red.mean - b)[:, None]], axis=1)

    def k_form(A):
        K = A @ A.T + data.ridge * jnp.eye(n, dtype=A.dtype)
        b = _solve_bias(K, red, data)
        X = jsl.solve_triangular(jnp.linalg.cholesky(K), columns(b), lower=True)
        return 0.5 * data.ridge * jnp.sum(X**2), b

    def ridge_form(A):
        # rho tr(V^T K^{-1} V) as a ridge minimum (module docstring).
        b = _solve_bias(None, red, data, A)
        V = columns(b)
        X = jax.lax.stop_gradient(ridge(A, V, data.ridge))
        return 0.5 * (jnp.sum((V - A @ X) ** 2) + data.ridge * jnp.sum(X**2)), b

    if _thin(A):
        val, b = _by_safety(A, data.ridge, k_form, ridge_form)
    else:
        val, b = k_form(A)
    val = val + 0.5 * data.lambda_W * jnp.sum(A**2)
    if data.bias == "reg":
        val = val + 0.5 * data.lambda_b * jnp.sum(b**2)
    return val


def moments(targets: jax.Array) -> Moments:
    """The one pass over the data (``O(N n^2)``): :class:`Moments` of ``targets (N, n)``.

    Eigenvalues at rounding level are set to exactly 0: in the standard basis the rounding noise
    of a (numerically) null direction, ~eps ||Sigma||, is amplified by ``K^{-1} ~ 1/rho`` there
    and puts a floor of ~eps ||Sigma|| / f* under the relative accuracy of the objective: at
    lambda = 1e-12 (one-hot targets, free bias) it stopped the stationarity test from ever
    holding."""
    N, n = targets.shape
    mean = jnp.mean(targets, axis=0)
    Yc = targets - mean
    Sigma = Yc.T @ Yc / N
    w, U = jnp.linalg.eigh(0.5 * (Sigma + Sigma.T))
    w = jnp.where(w > max(n, 10) * jnp.finfo(targets.dtype).eps * w[-1], w, 0.0)
    return Moments(w, U.T @ mean, U)


def setup(data: MSEData, key: jax.Array, init: Params | None, mom: Moments | None = None):
    """Return ``(Reduced, A0)``: data summary, fixed row basis ``Q`` and the starting ``A``.

    ``mom``: the targets' :class:`Moments` when already formed (a sweep forms them once);
    ``data.targets`` is then not read."""
    if mom is None:
        mom = moments(data.targets)
    feature_dim = data.feature_dim
    n = mom.mean.shape[0]
    r = min(n, feature_dim)
    dtype = mom.mean.dtype
    # Work in Sigma's eigenbasis (see :func:`moments`).
    Sigma, mean, U = jnp.diag(mom.w), mom.mean, mom.U
    if init is None:
        kq, ka = jax.random.split(key)
        Q, _ = jnp.linalg.qr(jax.random.normal(kq, (feature_dim, r), dtype))
        # Scale A A^T to the optimum's order sqrt(rho/lambda_W) sqrt(tr(second moment)/n).
        second = jnp.sum(mom.w) + jnp.sum(mean**2)
        s2 = jnp.sqrt(data.ridge / data.lambda_W) * jnp.sqrt(second / n)
        A0 = jnp.sqrt(s2 / r) * jax.random.normal(ka, (n, r), dtype)
    else:
        Q, _ = jnp.linalg.qr(init.W.T)
        A0 = U.T @ (init.W @ Q)
    return Reduced(Sigma, mean, Q.T, U), A0


def recover(A: jax.Array, red: Reduced, data: MSEData) -> Params:
    """``W = U A Q``, ``b = U b*(A)``, ``H = (Y - b) U K^{-1} A Q`` with ``K = A A^T + rho I``
    (cost ``O(N n d)``)."""
    n = A.shape[0]
    U = jnp.eye(n, dtype=A.dtype) if red.U is None else red.U
    b, KA, _, _ = _parts(A, red, data)
    b = U @ b
    H = ((data.targets - b) @ U) @ (KA @ red.Q)
    return Params(H, U @ A @ red.Q, b)


def _k_parts(A: jax.Array, red: Reduced, data: MSEData):
    """``(b*, K^{-1} A, rho K^{-1}, K^{-1})`` with ``K`` formed (one Cholesky factor)."""
    n = A.shape[0]
    K = A @ A.T + data.ridge * jnp.eye(n, dtype=A.dtype)
    factor = (jnp.linalg.cholesky(K), True)
    B = jsl.cho_solve(factor, jnp.eye(n, dtype=A.dtype))
    B = 0.5 * (B + B.T)
    return _solve_bias(K, red, data), jsl.cho_solve(factor, A), data.ridge * B, B


def _parts(A: jax.Array, red: Reduced, data: MSEData):
    """:func:`_k_parts`; for thin ``A`` through ridge solutions where ``K`` is unsafe:
    ``K^{-1} A = X^T`` and ``rho K^{-1} = I - A X`` for ``X = ridge(A, I)`` (module
    docstring)."""
    if not _thin(A):
        return _k_parts(A, red, data)

    def ridge_form(A):
        eye = jnp.eye(A.shape[0], dtype=A.dtype)
        KA = ridge(A, eye, data.ridge).T
        P = eye - A @ KA.T
        P = 0.5 * (P + P.T)
        return _solve_bias(None, red, data, A), KA, P, P / data.ridge

    return _by_safety(A, data.ridge, lambda A: _k_parts(A, red, data), ridge_form)


# ---------------------------------------------------------------------------------------------
# The n x n path of ufm.sweep: nothing of size N or d per point.
# ---------------------------------------------------------------------------------------------


class ReducedOptimum(NamedTuple):
    r"""What a table row needs at ``W = U A Q`` with ``H``, ``b`` at their exact minimisers,
    from ``n x n`` quantities only (``Z_b = Y - 1 b^T`` is never formed). In the basis ``U``
    (where :func:`setup` works), with ``K = A A^T + rho I``, ``B = K^{-1}`` and
    ``z_i = U^T (y_i - b)``: ``h_i = Q^T A^T B z_i``, so

    * ``W W^T = U A A^T U^T`` and the sample Gram ``H H^T = Z_b U C U^T Z_b^T`` with the core
      ``C = B A A^T B``;
    * the residual ``U^T e_i = U^T (W h_i + b - y_i) = -rho B z_i``, so ``grad_Z data = E/N``
      has ``G^T G = (rho^2 / N) U B S_b B U^T`` with the second moment
      ``S_b = U^T Z_b^T Z_b U / N = Sigma + (ybar - b)(ybar - b)^T``. The certificate of
      ``ufm/_certificate.py`` is ``||G||_op / sqrt(lambda_W rho / N) - 1`` (the factor penalty
      ``sqrt(beta_W beta_H)`` of every MSE UFM here is ``sqrt(lambda_W rho / N)``).

    Fields are in the standard basis.
    """

    WWT: jax.Array  # (n, n)
    bias: jax.Array  # (n,)
    inverse: jax.Array  # (n, n) U B U^T
    gram_core: jax.Array  # (n, n) U C U^T: H H^T = Z_b (U C U^T) Z_b^T
    second_moment: jax.Array  # (n, n) Z_b^T Z_b / N
    violation: jax.Array  # certificate: <= 0 up to rounding at a global minimum
    applicable: jax.Array  # whether the certificate applies (bool)


def reduced_optimum(A: jax.Array, red: Reduced, data: MSEData, num_samples: int) -> ReducedOptimum:
    """:class:`ReducedOptimum` at ``A`` (cost ``O(n^3)``, independent of ``N`` and ``d``)."""
    n = A.shape[0]
    eye = jnp.eye(n, dtype=A.dtype)
    U = eye if red.U is None else red.U
    AAT = A @ A.T
    b, KA, P, B = _parts(A, red, data)
    z = red.mean - b
    S = red.Sigma + jnp.outer(z, z)
    core = KA @ KA.T
    gtg = (P @ S @ P) / num_samples
    top = jnp.sqrt(jnp.maximum(jnp.linalg.eigvalsh(0.5 * (gtg + gtg.T))[-1], 0.0))
    penalty = jnp.sqrt(data.lambda_W * data.ridge / num_samples)
    viol = top / jnp.where(penalty > 0, penalty, 1.0) - 1.0
    if data.feature_dim >= n:
        applicable = jnp.ones((), bool)
    elif data.bias != "reg":
        # Rank constraint active: the Eckart-Young form of ``ufm/_certificate.py`` (data
        # curvature 1/N). In the basis U, with Z_b any matrix with Z_b^T Z_b = N S (here
        # sqrt(N) [diag(sqrt(Sigma)); z^T], Sigma diagonal there): Z = (Z_b B A) A^T and
        # G = -(rho/N) Z_b B; the certificate depends on Z_b only through Z_b^T Z_b.
        Zb = jnp.sqrt(1.0 * num_samples) * jnp.concatenate(
            [jnp.diag(jnp.sqrt(jnp.maximum(jnp.diagonal(red.Sigma), 0.0))), z[None, :]]
        )
        constrained, free = eckart_young(
            Zb @ KA,
            A,
            -(Zb @ P) / num_samples,
            jnp.where(penalty > 0, penalty, 1.0),
            1.0 / num_samples,
        )
        viol = jnp.where(free, viol, constrained)
        applicable = jnp.ones((), bool)
    else:  # a ridge on the bias: certified only where the rank constraint is inactive
        ev = jnp.linalg.eigvalsh(0.5 * (AAT + AAT.T))
        tol = jnp.sqrt(jnp.finfo(ev.dtype).eps) * jnp.maximum(ev[-1], 0.0)
        applicable = jnp.sum(ev > tol) < data.feature_dim

    def rot(X):
        X = U @ X @ U.T
        return 0.5 * (X + X.T)

    return ReducedOptimum(
        rot(AAT), U @ b, rot(B), rot(core), rot(S), viol, applicable & (penalty > 0)
    )
