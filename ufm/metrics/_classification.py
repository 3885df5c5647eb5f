r"""Neural collapse metrics NC1-NC4 (Papyan, Han, Donoho, PNAS 2020, arXiv 2008.08186).

Samples first: features ``H (N, d)``, integer ``labels (N,)`` in ``[0, K)``, classifier
``W (K, d)``, bias ``b (K,)``. One instance per call; batch with ``jax.vmap``. Definitions
(docs/theory.md section 4), with ``mu_c`` the class means, ``mu_G`` the global mean of the samples
and ``Mdot = [mu_c - mu_G]_c`` (``K x d``):

* ``Sigma_W = (1/N) sum_i (h_i - mu_{y_i})(h_i - mu_{y_i})^T``,
  ``Sigma_B = (1/K) sum_c (mu_c - mu_G)(mu_c - mu_G)^T``.
* NC1 = ``(1/K) tr(Sigma_W Sigma_B^+)``. ``Sigma_B`` has rank <= K - 1; we diagonalise it
  through the ``K x K`` Gram of ``Mdot`` and sum ``v_j^T Sigma_W v_j / e_j`` over its eigenpairs
  with ``e_j`` above a relative cut-off; each term is a squared norm over a positive number, so
  NC1 can never come out negative, whatever the rank. ``scale="notebook"`` drops the 1/K, as
  the PNAS reference notebook does (Zhu et al.'s code keeps it).
* NC2: equinorm ``std_c ||mu_c - mu_G|| / mean_c ||mu_c - mu_G||`` (and of ``||w_c||``),
  equiangularity ``std_{c != c'} cos(mu_c - mu_G, mu_c' - mu_G)``, the max-angle measure
  ``mean_{c != c'} |cos + 1/(K-1)|`` (what the notebook plots), and Zhu et al.'s distance to a
  simplex ETF ``|| G/||G|| - (I - J)/sqrt(K-1) ||`` for ``G = W W^T`` or ``Mdot Mdot^T``.
  ``ddof=0`` is the population std; the notebook uses ``torch.std``, i.e. ``ddof=1``.
* NC3 (self-duality) = ``|| W/||W|| - Mdot/||Mdot|| ||^2`` (squared, as in the notebook);
  Zhu et al.'s variant ``|| W Mdot^T / ||W Mdot^T|| - (I - J)/sqrt(K-1) ||``.
* NC4 = fraction of samples where ``argmax_c (w_c^T h + b_c) != argmin_c ||h - mu_c||``
  (uncentred class means). Zhu et al.'s plotting script labels ``||W mu_G + b||`` "NC4": a
  different quantity, not offered here.
* Orthogonal-frame variants for bias-free MSE UFMs (Tirer & Bruna 2022), uncentred:
  ``|| G/||G|| - I/sqrt(K) ||`` for ``G = W W^T`` or the uncentred class-mean Gram. Centring by
  ``mu_G`` maps an equinorm orthogonal frame to a simplex ETF, so only these tell the two apart.

All are 0 at the cross-entropy UFM optimum (ETF) and, for the orthogonal-frame variants, at the
bias-free MSE optimum. Degenerate but legitimate points (all class means equal, a zero ``W``)
give 0 where a ratio is 0/0.

NaN in, NaN out: a NaN or inf anywhere in ``H``, ``W`` or ``b`` makes every returned value NaN
(also under ``jit``/``vmap``), never a number that reads as collapse. So do traced labels that
an eager call would reject (outside ``[0, K)``, or a class without samples), and, for NC4, a
logit that overflows.

Accuracy (:class:`_Moments`): the class means are taken from samples centred by their mean,
so features that share a large offset keep their digits, and ``Sigma_B``'s K-th eigenvalue (0,
as ``sum_c N_c (mu_c - mu_G) = 0``) is never inverted. ``H`` and ``W`` are first rescaled by a
power of two (exact; none of these metrics depends on their scale), so squares neither
underflow nor overflow.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .._linalg import (
    eigh_desc,
    full_precision,
    inv_above,
    mm,
    nan_unless_finite,
    pow2_normalise,
    relative_cut,
    safe_div,
    safe_norm,
    safe_normalise,
    safe_normalise_rows,
)
from ._checks import (
    check_labels,
    check_num_classes,
    check_option,
    real_array,
    real_matrix,
)


def _check(H, labels, num_classes):
    H = real_matrix(H, "H", "(N, d)")
    K = check_num_classes(num_classes)
    return H, check_labels(labels, H.shape[0], K), K


def _check_head(W, K: int, d: int) -> jax.Array:
    W = real_matrix(W, "W", f"(K, d) = ({K}, {d})")
    if W.shape != (K, d):
        raise ValueError(f"W must have shape (K, d) = ({K}, {d}), got {W.shape}")
    return W


def _check_bias(b, K: int):
    if b is None:
        return None
    b = real_array(b, "b", 1, f"(K,) = ({K},)")
    if b.shape != (K,):
        raise ValueError(f"b must have shape (K,) = ({K},), got {b.shape}")
    return b


# --- internals on checked arrays (shared with the layer-wise metrics) -----------------------


def _stats(H, labels, K: int):
    onehot = jax.nn.one_hot(labels, K, dtype=H.dtype)
    counts = jnp.sum(onehot, axis=0)
    means = mm(onehot.T, H) / jnp.where(counts > 0, counts, 1.0)[:, None]
    return means, jnp.mean(H, axis=0), counts


class _Moments(NamedTuple):
    """First moments of ``H`` for the metrics, computed without cancellation and at a safe scale.

    ``H`` is first scaled by a power of two (exact, :func:`pow2_normalise`) and centred by its
    mean ``m``; the centred means then come from the centred samples, not as the difference of
    two large, nearly equal means (features that share an offset of 1e3 in float32 would lose
    every digit of ``mu_c - mu_G``). Every metric built from these is invariant to the scale of
    ``H``, so the scale is not undone.
    """

    X: jax.Array  # (N, d) the scaled samples minus m
    Xmeans: jax.Array  # (K, d) class means of X
    Md: jax.Array  # (K, d) mu_c - mu_G (scaled)
    mu: jax.Array  # (K, d) uncentred class means (scaled)
    valid: jax.Array  # every label in [0, K) and every class present (for traced labels)


def _moments(H, labels, K: int) -> _Moments:
    H = pow2_normalise(H)
    m = jnp.mean(H, axis=0)
    X = H - m
    Xmeans, XG, counts = _stats(X, labels, K)
    valid = (jnp.sum(counts) == H.shape[0]) & jnp.all(counts > 0)
    return _Moments(X, Xmeans, Xmeans - XG, Xmeans + m, valid)


def _valid_only(out, valid):
    """``out`` where the labels are valid, else NaN: traced labels cannot be checked before the
    work, and ``one_hot`` would silently drop a label outside ``[0, K)``."""
    return jax.tree_util.tree_map(lambda v: jnp.where(valid, v, jnp.nan), out)


def _nc1_trace(X, labels, Xmeans, Md, K: int) -> jax.Array:
    """``tr(Sigma_W Sigma_B^+)`` (without the 1/K) from samples ``X``, their class means and
    the centred class means ``Md``.

    ``Sigma_B`` has rank <= K - 1 (``sum_c N_c (mu_c - mu_G) = 0``), so its K-th eigenvalue is 0
    and only the top K - 1 are inverted: the K-th, computed, is rounding noise whose inverse
    would dominate the sum."""
    N = X.shape[0]
    V, inv_e = _sigma_b_eig(Md, K, X.shape[1])
    R = mm(X - Xmeans[labels], V)  # (N, K)
    return jnp.sum(jnp.sum(R**2, axis=0) / N * inv_e)


def _sigma_b_eig(Md, K: int, d: int) -> tuple[jax.Array, jax.Array]:
    """``(V (d, K), 1/e (K,))``: the unit eigenvectors of ``Sigma_B`` from the centred class
    means ``Md`` (via the ``K x K`` Gram) and the inverses of its top ``K - 1`` eigenvalues
    (the K-th and those below the cut give 0; see :func:`_nc1_trace`)."""
    e, U = eigh_desc(mm(Md, Md.T) / K)  # nonzero eigenvalues of Sigma_B, via the K x K Gram
    cut = relative_cut(e, max(K, d))
    e = jnp.where(jnp.arange(K) < K - 1, e, jnp.where(jnp.isnan(e), e, 0.0))
    V = mm(Md.T, U) * (inv_above(e, cut, 0.5) / jnp.sqrt(1.0 * K))  # unit eigvecs of Sigma_B
    return V, inv_above(e, cut, 1.0)


def _std_over_mean(x, ddof):
    return safe_div(jnp.std(x, ddof=ddof), jnp.mean(x))


def _offdiag_cosines(A):
    """Cosines between distinct rows of ``A`` (zero rows give 0), as a flat array."""
    An = safe_normalise_rows(A)
    return mm(An, An.T)[~np.eye(A.shape[0], dtype=bool)]


def etf_gram(K: int, dtype=float) -> jax.Array:
    """``(I - J)/sqrt(K - 1)``: the unit-Frobenius Gram of a simplex ETF (``J = 11^T/K``)."""
    return (jnp.eye(K, dtype=dtype) - jnp.full((K, K), 1.0 / K, dtype)) / jnp.sqrt(K - 1.0)


def _etf_dist(A):
    """ETF distance of the Gram of the rows of ``A`` (``K x p``)."""
    return safe_norm(safe_normalise(mm(A, A.T)) - etf_gram(A.shape[0], A.dtype))


def _frame_dist(A):
    """Orthogonal-frame distance of the Gram of the rows of ``A`` (``K x p``)."""
    K = A.shape[0]
    return safe_norm(safe_normalise(mm(A, A.T)) - jnp.eye(K, dtype=A.dtype) / jnp.sqrt(1.0 * K))


def _nc2_rows(A, K: int, ddof: int) -> dict[str, jax.Array]:
    cos = _offdiag_cosines(A)
    return {
        "equinorm": _std_over_mean(jnp.sqrt(jnp.sum(A**2, axis=1)), ddof),
        "equiangular": jnp.std(cos, ddof=ddof),
        "maxangle": jnp.mean(jnp.abs(cos + 1.0 / (K - 1))),
        "etf": _etf_dist(A),
    }


def _self_duality(W, M):
    return jnp.sum((safe_normalise(W) - safe_normalise(M)) ** 2)


def _nc4(H, W, b, mom: _Moments):
    """NaN when a logit overflows: its argmax would be meaningless. The nearest class mean is
    found among the centred samples and means (the same distances, without the offset)."""
    logits = mm(H, W.T) + (0.0 if b is None else b)
    X, C = mom.X, mom.Xmeans
    d2 = jnp.sum(X**2, axis=1, keepdims=True) - 2 * mm(X, C.T) + jnp.sum(C**2, axis=1)
    out = jnp.mean((jnp.argmax(logits, axis=1) != jnp.argmin(d2, axis=1)).astype(H.dtype))
    return jnp.where(jnp.all(jnp.isfinite(logits)), out, jnp.nan)


# --- public -----------------------------------------------------------------------------------


@full_precision
def class_means(H, labels, num_classes: int):
    """``(K, d)`` class means, ``(d,)`` global mean of the samples and ``(K,)`` class counts.

    A NaN in a sample makes its class mean and the global mean NaN (the others stay exact)."""
    H, labels, K = _check(H, labels, num_classes)
    return _stats(H, labels, K)


@full_precision
def nc1(H, labels, num_classes: int, *, scale: str = "papyan") -> jax.Array:
    """NC1 = ``(1/K) tr(Sigma_W Sigma_B^+)`` (``scale="notebook"``: without the 1/K)."""
    check_option(scale, "scale", ("papyan", "notebook"))
    H, labels, K = _check(H, labels, num_classes)
    mom = _moments(H, labels, K)
    total = _nc1_trace(mom.X, labels, mom.Xmeans, mom.Md, K)
    out = total / K if scale == "papyan" else total
    return nan_unless_finite(_valid_only(out, mom.valid), H)


@full_precision
def nc2(H, W, labels, num_classes: int, *, ddof: int = 0) -> dict[str, jax.Array]:
    """NC2 measures of the centred class means and of the classifier rows ``W (K, d)``.

    Returns a dict: ``equinorm_means``, ``equinorm_weights``, ``equiangular_means``,
    ``equiangular_weights``, ``maxangle_means``, ``maxangle_weights``, ``etf_means``,
    ``etf_weights`` (Zhu et al.'s ETF distances).
    """
    H, labels, K = _check(H, labels, num_classes)
    W = _check_head(W, K, H.shape[1])
    mom = _moments(H, labels, K)
    out = {}
    for name, A in (("means", mom.Md), ("weights", pow2_normalise(W))):
        out.update({f"{k}_{name}": v for k, v in _nc2_rows(A, K, ddof).items()})
    return nan_unless_finite(_valid_only(out, mom.valid), H, W)


@full_precision
def nc3(
    H, W, labels, num_classes: int, *, variant: str = "papyan", center: bool = True
) -> jax.Array:
    """Self-duality: ``||W/||W|| - Mdot/||Mdot||||^2`` (``variant="zhu"``: distance of the
    normalised ``W Mdot^T`` to the simplex-ETF Gram). ``center=False`` uses the uncentred class
    means, the right comparison for a bias-free MSE UFM (orthogonal frame, ``W^T ∝ H-bar``).
    ``W`` must have shape ``(K, d)``."""
    check_option(variant, "variant", ("papyan", "zhu"))
    H, labels, K = _check(H, labels, num_classes)
    W = _check_head(W, K, H.shape[1])
    mom = _moments(H, labels, K)
    Md = mom.Md if center else mom.mu
    W = pow2_normalise(W)
    if variant == "papyan":
        out = _self_duality(W, Md)
    else:
        out = safe_norm(safe_normalise(mm(W, Md.T)) - etf_gram(K, W.dtype))
    return nan_unless_finite(_valid_only(out, mom.valid), H, W)


@full_precision
def nc4(H, W, b, labels, num_classes: int) -> jax.Array:
    """Fraction of samples whose classifier decision differs from the nearest class centre.

    ``W`` of shape ``(K, d)``, ``b`` of shape ``(K,)`` or ``None``."""
    H, labels, K = _check(H, labels, num_classes)
    W = _check_head(W, K, H.shape[1])
    b = _check_bias(b, K)
    mom = _moments(H, labels, K)
    return nan_unless_finite(_valid_only(_nc4(H, W, b, mom), mom.valid), H, W, b)


def _check_gram(G) -> jax.Array:
    G = real_matrix(G, "G", "(K, K)")
    if G.shape[0] != G.shape[1] or G.shape[0] < 2:
        raise ValueError(f"G must be a square (K, K) Gram matrix with K >= 2, got shape {G.shape}")
    return G


@full_precision
def orthogonal_frame_distance(G) -> jax.Array:
    """``|| G/||G|| - I/sqrt(K) ||`` for a ``K x K`` Gram (``W W^T`` or ``mu mu^T``, uncentred):
    0 for an equinorm orthogonal frame (the bias-free MSE UFM optimum)."""
    G = _check_gram(G)
    K = G.shape[0]
    out = safe_norm(safe_normalise(G) - jnp.eye(K, dtype=G.dtype) / jnp.sqrt(1.0 * K))
    return nan_unless_finite(out, G)


@full_precision
def etf_distance(G) -> jax.Array:
    """``|| G/||G|| - (I - J)/sqrt(K-1) ||`` for a ``K x K`` Gram: 0 for a simplex ETF."""
    G = _check_gram(G)
    return nan_unless_finite(safe_norm(safe_normalise(G) - etf_gram(G.shape[0], G.dtype)), G)
