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
  ``n > d`` only the top ``d`` eigen-directions are kept (docs/theory.md section 1).

All three lie in [0, 1], [0, 1] and [0, 4] and are 0 at the regression-UFM optimum (with
``gamma = lambda_H lambda_W`` for NRC3).

NaN in, NaN out: a NaN or inf in any input (features, head, targets, gamma) makes the result
NaN (also under ``jit``/``vmap``), never a number that reads as collapse.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .._linalg import (
    eigh_desc,
    full_precision,
    inv_above,
    mm,
    nan_unless_finite,
    pow2_normalise,
    relative_cut,
    safe_div,
    safe_normalise,
    safe_normalise_rows,
    sym,
)
from ._checks import check_int, check_option, nonnegative_scalar, real_matrix, real_scalar


def _principal_basis(H, k: int, center: bool = True) -> jax.Array:
    Hc = H - jnp.mean(H, axis=0) if center else H
    _, V = eigh_desc(mm(Hc.T, Hc))
    return V[:, : min(k, H.shape[1])]


@full_precision
def principal_basis(H: jax.Array, k: int, center: bool = True) -> jax.Array:
    """Orthonormal ``(d, min(k, d))`` basis of the top-``k`` principal directions of centred ``H``
    (of ``H`` itself with ``center=False``).

    Uses the symmetric eigen-solver on the ``d x d`` scatter matrix ``H_c^T H_c``. All NaN when
    ``H`` is not finite.
    """
    H = real_matrix(H, "H", "(M, d)")
    k = check_int(k, "k", 1)
    return nan_unless_finite(_principal_basis(pow2_normalise(H), k, center), H)


@full_precision
def row_space_basis(W: jax.Array) -> jax.Array:
    """Rows spanning the row space of ``W`` (shape ``(n, d)``), orthonormal; zero rows for the
    directions whose eigenvalue of ``W W^T`` is below ``max(n, d) * eps * largest``."""
    e, U = eigh_desc(mm(W, W.T))
    return mm((U * inv_above(e, relative_cut(e, max(W.shape)), 0.5)).T, W)


@full_precision
def nrc1(H: jax.Array, n: int, *, center: bool = True) -> jax.Array:
    """NRC1: energy of the normalised samples outside the top-``n`` PCA subspace.

    Args:
        H: features ``(M, d)``.
        n: target dimension (number of principal directions kept); ``n >= d`` gives 0.
        center: PCA of the centred features (the paper's, for models with a bias). A bias-free
            model's optimal features are not centred and their mean direction belongs to the
            collapse subspace: use ``center=False`` there.
    """
    H = real_matrix(H, "H", "(M, d)")
    n = check_int(n, "n", 1)
    Hs = pow2_normalise(H)  # NRC1 does not depend on the scale of H
    V = _principal_basis(Hs, n, center)
    Ht = safe_normalise_rows(Hs)
    R = Ht - mm(mm(Ht, V), V.T)
    return nan_unless_finite(jnp.mean(jnp.sum(R**2, axis=1)), H)


@full_precision
def nrc2(H: jax.Array, W: jax.Array) -> jax.Array:
    """NRC2: energy of the normalised samples outside the row space of ``W`` ``(n, d)``."""
    H = real_matrix(H, "H", "(M, d)")
    W = real_matrix(W, "W", "(n, d)")
    if W.shape[1] != H.shape[1]:
        raise ValueError(f"W must have shape (n, d) with d = {H.shape[1]}, got {W.shape}")
    B = row_space_basis(pow2_normalise(W))  # NRC2 depends on the scales of neither
    Ht = safe_normalise_rows(pow2_normalise(H))
    R = Ht - mm(mm(Ht, B.T), B)
    return nan_unless_finite(jnp.mean(jnp.sum(R**2, axis=1)), H, W)


def _covariance(Y, center: bool) -> jax.Array:
    Yc = Y - jnp.mean(Y, axis=0) if center else Y
    return sym(mm(Yc.T, Yc) / Y.shape[0])


@full_precision
def target_covariance(targets: jax.Array, center: bool = True) -> jax.Array:
    """``Sigma = (Y - ybar)^T (Y - ybar) / M`` (or ``Y^T Y / M`` with ``center=False``)."""
    return _covariance(real_matrix(targets, "targets", "(M, n)"), center)


def _collapse_target(Sigma, gamma, max_rank: int | None = None) -> jax.Array:
    lam, U = eigh_desc(Sigma)
    s = jnp.sqrt(jnp.maximum(lam, 0.0))
    g = jnp.maximum(s - jnp.sqrt(gamma), 0.0)
    if max_rank is not None:
        g = jnp.where(jnp.arange(g.shape[0]) < max_rank, g, 0.0)
    return mm(U * g, U.T)


@full_precision
def collapse_target(Sigma: jax.Array, gamma, max_rank: int | None = None) -> jax.Array:
    """``(Sigma^{1/2} - sqrt(gamma) I)_+``, the positive part taken on the eigenvalues, keeping
    at most the top ``max_rank`` eigen-directions (``d`` when ``n > d``: a rank-``d`` ``W W^T``
    can only match the top ``d`` directions, docs/theory.md section 1, ``n > d``)."""
    Sigma = real_matrix(Sigma, "Sigma", "(n, n)")
    if Sigma.shape[0] != Sigma.shape[1]:
        raise ValueError(f"Sigma must be a square (n, n) matrix, got shape {Sigma.shape}")
    gamma = real_scalar(gamma, "gamma")
    if max_rank is not None:
        max_rank = check_int(max_rank, "max_rank", 0)
    return nan_unless_finite(_collapse_target(Sigma, gamma, max_rank), Sigma, gamma)


def _nrc3_cov(W: jax.Array, Sigma: jax.Array, gamma) -> jax.Array:
    A = safe_normalise(mm(W, W.T))  # W at any scale: callers pass pow2_normalise(W)
    B = safe_normalise(_collapse_target(Sigma, gamma, max_rank=W.shape[1]))
    return jnp.sum((A - B) ** 2)


def _check_head_targets(W, targets):
    W = real_matrix(W, "W", "(n, d)")
    Y = real_matrix(targets, "targets", "(M, n)")
    if Y.shape[1] != W.shape[0]:
        raise ValueError(
            f"W must have n = {Y.shape[1]} rows (targets' columns), got {W.shape}; "
            f"targets have shape {Y.shape}"
        )
    return W, Y


@full_precision
def nrc3(W: jax.Array, targets: jax.Array, gamma, *, center: bool = True) -> jax.Array:
    """NRC3(gamma): distance between the normalised ``W W^T`` and ``(Sigma^{1/2}-sqrt(gamma))_+``.

    Args:
        W: head ``(n, d)``.
        targets: ``Y`` ``(M, n)``; ``Sigma`` is its covariance over ``M`` (uncentred second moment
            with ``center=False``, which is the right target for a bias-free model).
        gamma: scalar >= 0 (a negative one raises; traced, it gives NaN);
            ``gamma = lambda_H lambda_W`` at the UFM optimum. See
            :func:`fit_gamma` to fit it.
    """
    W, Y = _check_head_targets(W, targets)
    gamma = nonnegative_scalar(gamma, "gamma")
    Sigma = _covariance(Y, center)
    out = _nrc3_cov(pow2_normalise(W), Sigma, gamma.astype(W.dtype))
    return nan_unless_finite(out, W, Y, gamma)


FIT_GAMMA_METHODS = ("exact", "linear_grid")


def _nrc3_spectral(A, lam, U, s, max_rank: int):
    """NRC3 at ``gamma = s^2`` from ``Sigma``'s eigen-decomposition (as :func:`_nrc3_cov`)."""
    g = jnp.maximum(jnp.sqrt(jnp.maximum(lam, 0.0)) - s, 0.0)
    g = jnp.where(jnp.arange(g.shape[0]) < max_rank, g, 0.0)
    return jnp.sum((A - safe_normalise(mm(U * g, U.T))) ** 2)


def gamma_candidates(A, lam, U, top, max_rank: int, xp=jnp):
    """Candidates for ``sqrt(gamma)`` in ``[0, top]`` among which NRC3 has its minimum: 0,
    ``top``, the breakpoints ``sqrt(lambda_i)`` and, on each piece between breakpoints, the
    stationary point (see :func:`fit_gamma`), clipped to the piece. ``xp`` is ``jax.numpy`` or
    ``numpy`` (the streaming accumulator's float64 transcription shares this code)."""
    n = lam.shape[0]
    sig = xp.sqrt(xp.maximum(lam, 0.0))  # descending
    alpha = xp.sum(U * (A @ U), axis=0)  # u_i^T A u_i
    r = min(n, max_rank)  # pieces: the top m directions kept, m = 1..r
    m = xp.arange(1, r + 1)
    inside = xp.arange(r)[None, :] < m[:, None]  # (m, i): direction i kept on piece m
    mean = xp.cumsum(sig[:r]) / m
    dev = xp.where(inside, sig[None, :r] - mean[:, None], 0.0)  # centred: no cancellation
    t = xp.cumsum(alpha[:r])
    ss, sa = xp.sum(dev**2, axis=1), xp.sum(dev * alpha[None, :r], axis=1)
    # s* = sigma_bar - (t/m) sum(delta^2) / sum(alpha delta), delta = sigma - sigma_bar
    lo = xp.concatenate([sig[1:r], xp.zeros((1,), sig.dtype)])
    star = mean - (t / m) * ss / xp.where(sa != 0, sa, 1.0)
    star = xp.where(sa != 0, star, lo)
    star = xp.clip(star, xp.minimum(lo, top), xp.minimum(sig[:r], top))
    ends = xp.stack([xp.zeros((), sig.dtype), top])
    return xp.concatenate([ends[:1], star, xp.minimum(sig, top), ends[1:]])


@full_precision
def fit_gamma(
    W: jax.Array,
    targets: jax.Array,
    num: int = 1000,
    upper=None,
    *,
    center: bool = True,
    method: str = "exact",
) -> tuple[jax.Array, jax.Array]:
    r"""The ``gamma`` minimising NRC3(gamma) for a head ``W`` (Andriopoulos et al., App. A.3).

    NRC3(gamma) ``= || W W^T/||W W^T|| - S(gamma)/||S(gamma)|| ||_F^2`` with
    ``S(gamma) = (Sigma^{1/2} - sqrt(gamma) I)_+`` (see :func:`nrc3`), minimised over
    ``gamma in [0, upper]``. At the regression-UFM optimum it is 0 at ``gamma = c =
    lambda_H lambda_W``, for every ratio ``lambda_H / lambda_W``.

    Methods:

    * ``"exact"`` (default): the minimiser itself, at any scale of ``gamma``. Write
      ``s = sqrt(gamma)``, ``Sigma = sum_i lambda_i u_i u_i^T`` (descending),
      ``sigma_i = sqrt(lambda_i)`` and ``alpha_i = u_i^T A u_i`` with ``A = W W^T/||W W^T||``.
      Between consecutive ``sigma_i`` the kept set ``K = {i : sigma_i > s}`` (at most the top
      ``d``) is fixed and ``NRC3 = 2 - 2 f(s)``, ``f(s) = sum_K alpha_i (sigma_i - s) /
      sqrt(sum_K (sigma_i - s)^2)``. With ``a = sum_K alpha_i sigma_i``, ``t = sum_K alpha_i``,
      ``P = sum_K sigma_i``, ``Q = sum_K sigma_i^2`` and ``m = |K|``, ``f'(s)`` has the sign of
      the linear function ``(a P - t Q) + s (t P - a m)``, so on each piece NRC3 has at most one
      interior stationary point, ``s* = (t Q - a P) / (t P - a m)``, and is otherwise monotone.
      It is computed centred, ``s* = sigma_bar - (t/m) sum_K delta_i^2 / sum_K alpha_i
      delta_i`` with ``delta_i = sigma_i - sigma_bar`` (no cancellation between large terms).
      NRC3 is evaluated at ``s = 0``, ``sqrt(upper)``, every ``sigma_i`` and every piece's
      ``s*`` clipped to the piece (at most ``2 n + 2`` points) and the smallest is returned:
      the global minimum on ``[0, upper]`` up to rounding. ``sqrt(gamma)`` is resolved to about
      ``eps sqrt(lambda_max) / delta``, ``delta`` the relative spread of the ``sigma_i`` (NRC3
      depends on ``gamma`` only through the shape of the spectrum): for the closed-form head
      at ``c = 1e-10`` with ``lambda`` in ``[0.15, 3.5]``, ``gamma`` comes out within 1e-11
      (relative) in float64, 1e-2 in float32; with ``lambda`` in ``[0.93, 1.05]``, 1e-8
      (float64). A ``gamma`` below ``(eps sqrt(lambda_max) / delta)^2`` is indistinguishable
      from 0, and for ``Sigma`` proportional to ``I`` NRC3 does not depend on ``gamma`` at all.
      Cost ``O(n)`` NRC3 evaluations; jittable and vmappable. ``num`` is not used.
    * ``"linear_grid"``: the authors' code, ``argmin`` of NRC3 over ``linspace(0, upper,
      num)``. Its step ``upper / (num - 1)`` cannot resolve a smaller ``gamma``: with the
      default 1000 points, a ``c`` below ``lambda_min / 1000`` comes out as 0.

    Args:
        W: head ``(n, d)``.
        targets: ``Y`` ``(M, n)``; ``Sigma`` its covariance over ``M`` (uncentred second
            moment with ``center=False``, for a bias-free model).
        num: grid points of ``"linear_grid"`` (an int >= 1).
        upper: the search's upper end, default ``lambda_min(Sigma)`` (the paper's range
            ``(0, lambda_min)``); pass ``lambda_max`` to search the rank-deficient regime
            ``c > lambda_min`` too. A negative one raises, or (traced) gives NaN.
        center: as in :func:`nrc3`.
        method: ``"exact"`` or ``"linear_grid"``.

    Returns:
        ``(gamma, NRC3(gamma))``, both NaN for non-finite input. Use the final ``W`` and hold
        gamma fixed over a trajectory (App. A.3).
    """
    W, Y = _check_head_targets(W, targets)
    check_option(method, "method", FIT_GAMMA_METHODS)
    num = check_int(num, "num", 1)
    Sigma = _covariance(Y, center)
    lam, U = eigh_desc(Sigma)
    if upper is None:
        upper = jnp.maximum(lam[-1], 0.0)  # may round below 0
    else:  # a negative one raises, or (traced) gives NaN
        upper = nonnegative_scalar(upper, "upper")
        upper = jnp.where(upper >= 0, upper, jnp.nan)
    upper_t = upper.astype(W.dtype)
    Wn = pow2_normalise(W)
    if method == "linear_grid":
        grid = jnp.linspace(0.0, upper_t, num)
        vals = jax.vmap(lambda g: _nrc3_cov(Wn, Sigma, g))(grid)
        i = jnp.argmin(vals)
        return nan_unless_finite((grid[i], vals[i]), W, Y, upper)
    A = safe_normalise(mm(Wn, Wn.T))
    top = jnp.sqrt(jnp.where(upper_t >= 0, upper_t, 0.0))
    cand = gamma_candidates(A, lam, U, top, W.shape[1])
    vals = jax.vmap(lambda x: _nrc3_spectral(A, lam, U, x, W.shape[1]))(cand)
    s = cand[jnp.argmin(vals)]
    gamma = jnp.minimum(s * s, upper_t)
    return nan_unless_finite((gamma, _nrc3_cov(Wn, Sigma, gamma)), W, Y, upper)


@full_precision
def stable_rank(A: jax.Array) -> jax.Array:
    """Stable rank ``||A||_F^2 / ||A||_2^2`` (0 for ``A = 0``); symmetric solver on the Gram."""
    A = real_matrix(A, "A", "(p, q)")
    As = pow2_normalise(A)  # the stable rank does not depend on the scale of A
    G = mm(As, As.T) if A.shape[0] <= A.shape[1] else mm(As.T, As)
    e = jnp.linalg.eigvalsh(sym(G))
    return nan_unless_finite(safe_div(jnp.trace(G), e[-1]), A)
