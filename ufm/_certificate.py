r"""Global-optimality certificate for every UFM in the package (MSE and cross-entropy).

Every objective here has the form ``data(Z + 1 b^T) + beta_W/2 ||W||^2 + beta_H/2 ||H||^2``
(plus a ridge on ``b``) with ``Z = H W^T`` and a data term convex in ``(Z, b)``. For a fixed
``Z`` the smallest penalty is ``sqrt(beta_W beta_H) ||Z||_*`` (THEORY.md section 0, master
lemma), so the factorised problem has the same global minima as the convex problem
``min_{Z, b} data(Z, b) + sqrt(beta_W beta_H) ||Z||_*`` under ``rank Z <= d``. At a stationary
point (``b`` optimal, factors balanced), ``Z`` is a global minimiser iff

    || grad_Z data ||_op <= sqrt(beta_W beta_H),

provided the rank constraint is inactive: ``d >= n`` (``Z`` has ``n`` columns) or
``rank W < d`` at that point (then ``Z`` can grow in any direction, and a violated inequality
gives a descent direction, so the point is a strict saddle, not a minimum).

:func:`violation` returns ``||grad_Z data||_op / sqrt(beta_W beta_H) - 1`` (<= 0 up to rounding
at a global minimum; ``> 0`` at a saddle such as ``W = H = 0`` below the collapse threshold) and
whether the test applies.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ._linalg import eps_of, sym


def violation(problem, params) -> tuple[jax.Array, jax.Array]:
    """``(relative violation, applicable)`` of the certificate at ``params`` (see module doc)."""
    H, W, b = params
    Z = H @ W.T
    G = jax.grad(problem.data_term)(Z, b)  # (N, n)
    gtg = sym(G.T @ G)
    top = jnp.sqrt(jnp.maximum(jnp.linalg.eigvalsh(gtg)[-1], 0.0))
    weight = problem.factor_penalty()
    n, d = W.shape
    if d >= n:
        applicable = jnp.ones((), bool)
    else:
        ev = jnp.linalg.eigvalsh(sym(W @ W.T))
        rank = jnp.sum(ev > jnp.sqrt(eps_of(ev)) * jnp.maximum(ev[-1], 0.0))
        applicable = rank < d
    applicable = applicable & (weight > 0)
    return top / jnp.where(weight > 0, weight, 1.0) - 1.0, applicable
