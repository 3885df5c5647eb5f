r"""Global-optimality certificate for every one-layer UFM in the package (MSE and cross-entropy).

Every such objective has the form ``data(Z + 1 b^T) + beta_W/2 ||W||^2 + beta_H/2 ||H||^2``
(plus a ridge on ``b``) with ``Z = H W^T`` and a data term convex in ``(Z, b)``. For a fixed
``Z`` the smallest penalty is ``sqrt(beta_W beta_H) ||Z||_*`` (docs/theory.md section 0, master
lemma), so the factorised problem has the same global minima as the convex problem
``min_{Z, b} data(Z, b) + sqrt(beta_W beta_H) ||Z||_*`` under ``rank Z <= d``. At a stationary
point (``b`` optimal, factors balanced), ``Z`` is a global minimiser iff

    || grad_Z data ||_op <= sqrt(beta_W beta_H),

provided the rank constraint is inactive: ``d >= n`` (``Z`` has ``n`` columns) or
``rank W < d`` at that point (then ``Z`` can grow in any direction, and a violated inequality
gives a descent direction, so the point is a strict saddle, not a minimum).

With the constraint active (``d < n``, ``rank W = d``) and an isotropic quadratic data term
(MSE with a free bias or none: ``data = (c/2) ||Z + 1 b^T - Y||^2``, curvature ``c = 1/N``),
the stationary points are ``Z = sum_{i in S} (s_i - tau/c) u_i v_i^T`` for a set ``S`` of
``d`` singular triplets of the (centred) targets with ``s_i > tau/c``, and the global ones keep
the ``d`` largest (a generalised Eckart-Young theorem). There ``G`` off the spans of ``Z``,
``G_perp = (I - P_col) G (I - P_row) = -c sum_{j not in S} s_j u_j v_j^T``, so ``Z`` is
a global minimiser iff

    || G_perp ||_op <= tau + c sigma_d(Z)        (max_{j not in S} s_j <= min_{i in S} s_i).

A stationary point in a wrong eigen-subspace (targets with a diagonal covariance and an init
in the span of a lesser direction) passed unverified before. Without a known curvature
(cross-entropy, a ridge on the bias) the constrained case is not certified.

:func:`violation` returns ``||grad_Z data||_op / sqrt(beta_W beta_H) - 1`` (<= 0 up to rounding
at a global minimum; ``> 0`` at a saddle such as ``W = H = 0`` below the collapse threshold),
or in the constrained case ``||G_perp||_op / (tau + c sigma_d(Z)) - 1``, and whether the test
applies. Problems call it from their ``certificate`` method.

Rounding. At very small regularisation the residual ``Z + 1 b^T - Y`` (and so
``grad_Z data``) can be smaller than the rounding error of forming it from ``Y`` (e.g.
``lambda = 1e-14`` with targets of size ``1e6``: a residual ``1e-14`` against ``Y``'s ulp
``1e-10``). The operator norm is then reduced by a bound on the rounding of ``G``
(:func:`gradient_rounding`) before the comparison, so only a violation that rounding cannot
explain makes a saddle.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ._linalg import eps_of, sym


def gradient_rounding(params, data_scale: jax.Array) -> jax.Array:
    r"""A bound on the Frobenius norm of the rounding error in ``grad_Z data`` for a data term
    averaged over ``N`` samples whose gradient is ``(Z + 1 b^T - T)/N`` entrywise-alike (MSE:
    ``T = Y``; cross-entropy: ``softmax - onehot``, ``T`` of size 1): forming ``Z = H W^T``
    costs ``d`` roundings of ``|H| |W|^T``, the residual a few more of ``|Z| + |b| + |T|``.

    ``data_scale``: ``(N, n)`` entrywise magnitudes ``|T|``.
    """
    H, W, b = params
    N, d = H.shape
    mag = (d + 4) * (jnp.abs(H) @ jnp.abs(W).T) + jnp.abs(b) + data_scale
    return eps_of(mag) * jnp.linalg.norm(mag) / N


def violation(
    data_term, factor_penalty, params, rounding=0.0, curvature=None
) -> tuple[jax.Array, jax.Array]:
    """``(relative violation, applicable)`` at ``params = (H, W, b)`` for the objective
    ``data_term(H W^T, b) + penalty`` with nuclear-norm weight ``factor_penalty``; the operator
    norm is reduced by ``rounding`` (a bound on the rounding error of the gradient, see
    :func:`gradient_rounding`). ``curvature``: ``c`` of an isotropic quadratic data term
    (module docstring), which certifies the rank-constrained case (``d < n``, ``rank W = d``);
    ``None`` leaves that case uncertified (``applicable`` False)."""
    H, W, b = params
    Z = H @ W.T
    G = jax.grad(data_term)(Z, b)  # (N, n)
    tau = jnp.where(factor_penalty > 0, factor_penalty, 1.0)
    n, d = W.shape
    unconstrained = _relative(_top(sym(G.T @ G), rounding), tau)
    if d >= n:
        return unconstrained, factor_penalty > 0
    if curvature is None:
        ev = jnp.linalg.eigvalsh(sym(W @ W.T))
        free = jnp.sum(ev > jnp.sqrt(eps_of(ev)) * jnp.maximum(ev[-1], 0.0)) < d
        return unconstrained, free & (factor_penalty > 0)
    constrained, free = eckart_young(H, W, G, tau, curvature, rounding)
    return jnp.where(free, unconstrained, constrained), factor_penalty > 0


def _top(gtg, rounding):
    """``||G||_op`` from ``G^T G``, reduced by the rounding bound."""
    top = jnp.sqrt(jnp.maximum(jnp.linalg.eigvalsh(gtg)[-1], 0.0))
    return jnp.maximum(top - rounding, 0.0)


def _relative(top, bound):
    return top / bound - 1.0


def eckart_young(F, W, G, tau, curvature, rounding=0.0) -> tuple[jax.Array, jax.Array]:
    """``(||G_perp||_op / (tau + c sigma_d(Z)) - 1, free)`` (module docstring) for
    ``Z = F W^T`` with ``F (m, d)``, ``W (n, d)``, ``d < n``, and the gradient ``G (m, n)``.

    The spans and ``sigma_d(Z)`` come from the factors (QR of ``F`` and of ``W``, then the
    singular values of the ``d x d`` core), never from ``Z^T Z``, which would square the
    spread of the kept singular values (a true minimum with ``sigma_1/sigma_d = 1e7`` read as
    a saddle in float64). ``free``: ``W`` is numerically of rank ``< d`` (``sigma_d(W) <=
    max(n, d) eps sigma_1(W)``, ``W = 0`` included); the rank constraint is then inactive and
    the caller uses the unconstrained test."""
    n, d = W.shape
    Qw, Rw = jnp.linalg.qr(W, mode="complete")  # (n, n), (n, d)
    Rw = Rw[:d]
    sw = jnp.linalg.svd(Rw, compute_uv=False)  # the singular values of W, descending
    free = sw[-1] <= max(n, d) * eps_of(sw) * sw[0]
    Qf, Rf = jnp.linalg.qr(F)  # (m, d), (d, d)
    sigma_d = jnp.linalg.svd(Rf @ Rw.T, compute_uv=False)[-1]  # Z = Qf (Rf Rw^T) Qw[:, :d]^T
    Y = G @ Qw[:, d:]  # G off the row space of Z, (m, n - d)
    X = Y - Qf @ (Qf.T @ Y)  # ... and off its column space
    top = _top(sym(X.T @ X), rounding)
    return _relative(top, tau + curvature * sigma_d), free
