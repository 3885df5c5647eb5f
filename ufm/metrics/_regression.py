r"""Neural regression collapse metrics NRC1-NRC3 (Andriopoulos et al., NeurIPS 2024, Sec. 3.1).

Samples first: features ``H`` of shape ``(M, d)``, head ``W`` of shape ``(n, d)``, targets
``Y`` of shape ``(M, n)``. Every function takes one instance; batch with ``jax.vmap``.

* ``h~_i = h_i / ||h_i||`` are the normalised, *uncentred* samples (a zero row stays zero).
* NRC1 = (1/M) sum_i ||h~_i - P_PCA h~_i||^2, with ``P_PCA`` the projector onto the top-n
  principal directions of the *centred* features (as sklearn's PCA in the authors' code).
* NRC2 = (1/M) sum_i ||h~_i - P_W h~_i||^2, with ``P_W = W^T (W W^T)^+ W`` the projector onto
  the row space of ``W``.
* NRC3(gamma) = || W W^T / ||W W^T|| - S / ||S|| ||_F^2, with
  ``S = (Sigma^{1/2} - sqrt(gamma) I)_+`` (positive part on the eigenvalues) and ``Sigma`` the
  centred target covariance over M. For ``gamma < lambda_min`` and ``n <= d`` this is the
  paper's definition; the positive part extends it to the rank-deficient regime, and for
  ``n > d`` only the top ``d`` eigen-directions are kept (THEORY.md section 1).

All three lie in [0, 1], [0, 1] and [0, 4] and are 0 at the regression-UFM optimum (with
``gamma = lambda_H lambda_W`` for NRC3).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .._linalg import eigh_desc, eps_of, safe_normalise, safe_normalise_rows, sym


def _check_matrix(x, name: str, what: str) -> jax.Array:
    x = jnp.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array of shape {what}, got shape {x.shape}")
    return x


def principal_basis(H: jax.Array, k: int, center: bool = True) -> jax.Array:
    """Orthonormal ``(d, min(k, d))`` basis of the top-``k`` principal directions of centred ``H``
    (of ``H`` itself with ``center=False``).

    Uses the symmetric eigen-solver on the ``d x d`` scatter matrix ``H_c^T H_c``.
    """
    Hc = H - jnp.mean(H, axis=0) if center else H
    _, V = eigh_desc(Hc.T @ Hc)
    return V[:, : min(k, H.shape[1])]


def row_space_basis(W: jax.Array) -> jax.Array:
    """Rows spanning the row space of ``W`` (shape ``(n, d)``), orthonormal; zero rows for the
    directions whose eigenvalue of ``W W^T`` is below ``max(n, d) * eps * largest``."""
    e, U = eigh_desc(W @ W.T)
    cut = max(W.shape) * eps_of(W) * jnp.maximum(e[0], 0.0)
    keep = e > cut
    inv_sqrt = jnp.where(keep, 1.0 / jnp.sqrt(jnp.where(keep, e, 1.0)), 0.0)
    return (U * inv_sqrt).T @ W


def nrc1(H: jax.Array, n: int, *, center: bool = True) -> jax.Array:
    """NRC1: energy of the normalised samples outside the top-``n`` PCA subspace.

    Args:
        H: features ``(M, d)``.
        n: target dimension (number of principal directions kept); ``n >= d`` gives 0.
        center: PCA of the centred features (the paper's, for models with a bias). A bias-free
            model's optimal features are not centred and their mean direction belongs to the
            collapse subspace: use ``center=False`` there.
    """
    H = _check_matrix(H, "H", "(M, d)")
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an int >= 1 (the target dimension), got {n!r}")
    V = principal_basis(H, n, center)
    Ht = safe_normalise_rows(H)
    R = Ht - (Ht @ V) @ V.T
    return jnp.mean(jnp.sum(R**2, axis=1))


def nrc2(H: jax.Array, W: jax.Array) -> jax.Array:
    """NRC2: energy of the normalised samples outside the row space of ``W`` ``(n, d)``."""
    H = _check_matrix(H, "H", "(M, d)")
    W = _check_matrix(W, "W", "(n, d)")
    if W.shape[1] != H.shape[1]:
        raise ValueError(f"W must have shape (n, d) with d = {H.shape[1]}, got {W.shape}")
    B = row_space_basis(W)
    Ht = safe_normalise_rows(H)
    R = Ht - (Ht @ B.T) @ B
    return jnp.mean(jnp.sum(R**2, axis=1))


def target_covariance(targets: jax.Array, center: bool = True) -> jax.Array:
    """``Sigma = (Y - ybar)^T (Y - ybar) / M`` (or ``Y^T Y / M`` with ``center=False``)."""
    Y = _check_matrix(targets, "targets", "(M, n)")
    Yc = Y - jnp.mean(Y, axis=0) if center else Y
    return sym(Yc.T @ Yc / Y.shape[0])


def collapse_target(Sigma: jax.Array, gamma, max_rank: int | None = None) -> jax.Array:
    """``(Sigma^{1/2} - sqrt(gamma) I)_+``, the positive part taken on the eigenvalues, keeping
    at most the top ``max_rank`` eigen-directions (``d`` when ``n > d``: a rank-``d`` ``W W^T``
    can only match the top ``d`` directions, THEORY.md section 1, ``n > d``)."""
    lam, U = eigh_desc(Sigma)
    s = jnp.sqrt(jnp.maximum(lam, 0.0))
    g = jnp.maximum(s - jnp.sqrt(gamma), 0.0)
    if max_rank is not None:
        g = jnp.where(jnp.arange(g.shape[0]) < max_rank, g, 0.0)
    return (U * g) @ U.T


def _nrc3_cov(W: jax.Array, Sigma: jax.Array, gamma) -> jax.Array:
    A = safe_normalise(W @ W.T)
    B = safe_normalise(collapse_target(Sigma, gamma, max_rank=W.shape[1]))
    return jnp.sum((A - B) ** 2)


def nrc3(W: jax.Array, targets: jax.Array, gamma, *, center: bool = True) -> jax.Array:
    """NRC3(gamma): distance between the normalised ``W W^T`` and ``(Sigma^{1/2}-sqrt(gamma))_+``.

    Args:
        W: head ``(n, d)``.
        targets: ``Y`` ``(M, n)``; ``Sigma`` is its covariance over ``M`` (uncentred second moment
            with ``center=False``, which is the right target for a bias-free model).
        gamma: scalar >= 0; ``gamma = lambda_H lambda_W`` at the UFM optimum. See
            :func:`fit_gamma` for the paper's grid fit.
    """
    W = _check_matrix(W, "W", "(n, d)")
    Sigma = target_covariance(targets, center)
    if Sigma.shape[0] != W.shape[0]:
        raise ValueError(f"W must have n = {Sigma.shape[0]} rows (targets' columns), got {W.shape}")
    return _nrc3_cov(W, Sigma, jnp.asarray(gamma, W.dtype))


def fit_gamma(
    W: jax.Array, targets: jax.Array, num: int = 1000, upper=None, *, center: bool = True
) -> tuple[jax.Array, jax.Array]:
    """Grid fit of gamma as in the authors' code: argmin of NRC3 over ``linspace(0, upper, num)``.

    ``upper`` defaults to ``lambda_min(Sigma)`` (the paper's range ``(0, lambda_min)``); pass
    ``upper = lambda_max`` to search the rank-deficient regime as well. Returns
    ``(gamma, NRC3(gamma))``. Use the final ``W`` and hold gamma fixed over a trajectory (App. A.3).
    """
    W = _check_matrix(W, "W", "(n, d)")
    Sigma = target_covariance(targets, center)
    if upper is None:
        upper = jnp.linalg.eigvalsh(Sigma)[0]
    grid = jnp.linspace(0.0, jnp.maximum(jnp.asarray(upper, W.dtype), 0.0), num)
    vals = jax.vmap(lambda g: _nrc3_cov(W, Sigma, g))(grid)
    i = jnp.argmin(vals)
    return grid[i], vals[i]


def stable_rank(A: jax.Array) -> jax.Array:
    """Stable rank ``||A||_F^2 / ||A||_2^2`` (0 for ``A = 0``); symmetric solver on the Gram."""
    A = _check_matrix(A, "A", "(p, q)")
    G = A @ A.T if A.shape[0] <= A.shape[1] else A.T @ A
    e = jnp.linalg.eigvalsh(sym(G))
    top = e[-1]
    return jnp.where(top > 0, jnp.trace(G) / jnp.where(top > 0, top, 1.0), 0.0)
