r"""Exact reduction of the regression UFM to an ``n x r`` problem (``r = min(n, d)``).

For fixed ``W`` the minimisation over ``H`` and ``b`` is a ridge regression per sample
(Andriopoulos et al. 2024, objective eq. 1). With ``Yc = Y - ybar`` (``Y`` itself without bias)
and ``K = W W^T + lambda_H I_n``:

    b = ybar,   H = Yc K^{-1} W,
    min_{H, b} L(H, W, b) = (lambda_H / 2) tr(Sigma K^{-1}) + (lambda_W / 2) ||W||_F^2,

with ``Sigma = Yc^T Yc / M``. The reduced objective depends on the data only through the
``n x n`` matrix ``Sigma`` and on ``W`` only through ``W W^T`` and ``||W||``. Its gradient,
``(-lambda_H K^{-1} Sigma K^{-1} + lambda_W I) W``, keeps ``W`` in its initial row space, so we
write ``W = A Q`` with ``Q`` a fixed ``r x d`` matrix with orthonormal rows and minimise over
``A`` (``n x r``) with L-BFGS: the cost per step is ``O(n^3)``, independent of ``M`` and ``d``.

This is a numerical minimisation, *not* the soft-threshold closed form of
:mod:`theory.regression`, so comparing the two is a check between independent computations.
It needs ``lambda_H > 0`` (for ``lambda_H = 0`` the ridge step is a projection and the reduced
objective is not smooth) and ``lambda_W > 0`` (else no minimiser exists).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl

from ._problem import Params, RegressionUFM


class Reduced(NamedTuple):
    Sigma: jax.Array  # (n, n)
    mean: jax.Array  # (n,)
    Q: jax.Array  # (r, d) orthonormal rows


def reduced_objective(A: jax.Array, red: Reduced, problem: RegressionUFM) -> jax.Array:
    """``(lambda_H/2) tr(Sigma (A A^T + lambda_H I)^{-1}) + (lambda_W/2) ||A||^2``."""
    n = A.shape[0]
    K = A @ A.T + problem.lambda_H * jnp.eye(n, dtype=A.dtype)
    X = jsl.cho_solve(jsl.cho_factor(K, lower=True), red.Sigma)
    return 0.5 * problem.lambda_H * jnp.trace(X) + 0.5 * problem.lambda_W * jnp.sum(A**2)


def setup(problem: RegressionUFM, key: jax.Array, init: Params | None):
    """Return ``(Reduced, A0)``: data summary, fixed row basis ``Q`` and the starting ``A``."""
    n, d = problem.target_dim, problem.feature_dim
    r = min(n, d)
    dtype = problem.dtype
    mean, Sigma = problem.target_moments()
    if init is None:
        kq, ka = jax.random.split(key)
        Q, _ = jnp.linalg.qr(jax.random.normal(kq, (d, r), dtype))
        # Scale A A^T to the optimum's order sqrt(lambda_H/lambda_W) * sqrt(tr Sigma / n).
        s2 = jnp.sqrt(problem.lambda_H / problem.lambda_W) * jnp.sqrt(jnp.trace(Sigma) / n)
        A0 = jnp.sqrt(s2 / r) * jax.random.normal(ka, (n, r), dtype)
    else:
        Q, _ = jnp.linalg.qr(init.W.T)
        A0 = init.W @ Q
    return Reduced(Sigma, mean, Q.T), A0


def recover(A: jax.Array, red: Reduced, problem: RegressionUFM) -> Params:
    """``W = A Q``, ``H = Yc K^{-1} W``, ``b = ybar`` (the ridge step, cost ``O(M n d)``)."""
    n = A.shape[0]
    W = A @ red.Q
    K = A @ A.T + problem.lambda_H * jnp.eye(n, dtype=A.dtype)
    Yc = problem.targets - red.mean
    H = Yc @ jsl.cho_solve(jsl.cho_factor(K, lower=True), W)
    return Params(H, W, red.mean)
