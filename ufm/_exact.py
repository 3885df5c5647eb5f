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
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl

from ._problem import Params


class MSEData(NamedTuple):
    """What an MSE problem hands the exact solver (see the module docstring)."""

    targets: jax.Array  # (N, n)
    ridge: jax.Array  # rho
    lambda_W: jax.Array
    lambda_b: jax.Array  # used only when bias == "reg"
    bias: str  # "none" | "free" | "reg" (static)


class Reduced(NamedTuple):
    Sigma: jax.Array  # (n, n) centred covariance over N
    mean: jax.Array  # (n,)
    Q: jax.Array  # (r, d) orthonormal rows


def _solve_bias(K, red: Reduced, data: MSEData) -> jax.Array:
    """The optimal ``b`` for fixed ``K = W W^T + rho I``."""
    if data.bias == "none":
        return jnp.zeros_like(red.mean)
    if data.bias == "free":
        return red.mean
    n = red.mean.shape[0]
    M = data.ridge * jnp.eye(n, dtype=K.dtype) + data.lambda_b * K
    return data.ridge * jnp.linalg.solve(M, red.mean)


def reduced_objective(A: jax.Array, red: Reduced, data: MSEData) -> jax.Array:
    """``F(W, b*(W))`` of the module docstring, as a function of ``A`` (``W = A Q``)."""
    n = A.shape[0]
    K = A @ A.T + data.ridge * jnp.eye(n, dtype=A.dtype)
    b = _solve_bias(K, red, data)
    z = red.mean - b
    cf = jsl.cho_factor(K, lower=True)
    X = jsl.cho_solve(cf, jnp.concatenate([red.Sigma, z[:, None]], axis=1))
    val = 0.5 * data.ridge * (jnp.trace(X[:, :n]) + z @ X[:, n])
    val = val + 0.5 * data.lambda_W * jnp.sum(A**2)
    if data.bias == "reg":
        val = val + 0.5 * data.lambda_b * jnp.sum(b**2)
    return val


def setup(data: MSEData, feature_dim: int, key: jax.Array, init: Params | None):
    """Return ``(Reduced, A0)``: data summary, fixed row basis ``Q`` and the starting ``A``."""
    Y = data.targets
    N, n = Y.shape
    r = min(n, feature_dim)
    dtype = Y.dtype
    mean = jnp.mean(Y, axis=0)
    Yc = Y - mean
    Sigma = Yc.T @ Yc / N
    Sigma = 0.5 * (Sigma + Sigma.T)
    if init is None:
        kq, ka = jax.random.split(key)
        Q, _ = jnp.linalg.qr(jax.random.normal(kq, (feature_dim, r), dtype))
        # Scale A A^T to the optimum's order sqrt(rho/lambda_W) sqrt(tr(second moment)/n).
        second = jnp.trace(Sigma) + jnp.sum(mean**2)
        s2 = jnp.sqrt(data.ridge / data.lambda_W) * jnp.sqrt(second / n)
        A0 = jnp.sqrt(s2 / r) * jax.random.normal(ka, (n, r), dtype)
    else:
        Q, _ = jnp.linalg.qr(init.W.T)
        A0 = init.W @ Q
    return Reduced(Sigma, mean, Q.T), A0


def recover(A: jax.Array, red: Reduced, data: MSEData) -> Params:
    """``W = A Q``, ``b = b*(W)``, ``H = (Y - b) K^{-1} W`` (cost ``O(N n d)``)."""
    n = A.shape[0]
    W = A @ red.Q
    K = A @ A.T + data.ridge * jnp.eye(n, dtype=A.dtype)
    b = _solve_bias(K, red, data)
    H = (data.targets - b) @ jsl.cho_solve(jsl.cho_factor(K, lower=True), W)
    return Params(H, W, b)
