r"""Neural collapse metrics NC1-NC4 (Papyan, Han, Donoho, PNAS 2020, arXiv 2008.08186).

Samples first: features ``H (N, d)``, integer ``labels (N,)`` in ``[0, K)``, classifier
``W (K, d)``, bias ``b (K,)``. One instance per call; batch with ``jax.vmap``. Definitions
(THEORY.md section 4), with ``mu_c`` the class means, ``mu_G`` the global mean of the samples
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
bias-free MSE optimum.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .._linalg import eigh_desc, eps_of, safe_norm, safe_normalise, safe_normalise_rows
from .._validate import check_label_values


def _check(H, labels, num_classes):
    H = jnp.asarray(H)
    if H.ndim != 2:
        raise ValueError(f"H must be a 2-D array of shape (N, d), got shape {H.shape}")
    labels = jnp.asarray(labels)
    if labels.shape != (H.shape[0],):
        raise ValueError(f"labels must have shape (N,) = ({H.shape[0]},), got {labels.shape}")
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise TypeError(f"labels must be integers, got dtype {labels.dtype}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int | np.integer):
        raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
    if num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
    check_label_values(labels, num_classes)
    return H, labels


def class_means(H, labels, num_classes: int):
    """``(K, d)`` class means, ``(d,)`` global mean of the samples and ``(K,)`` class counts."""
    H, labels = _check(H, labels, num_classes)
    onehot = jax.nn.one_hot(labels, num_classes, dtype=H.dtype)
    counts = jnp.sum(onehot, axis=0)
    means = (onehot.T @ H) / jnp.where(counts > 0, counts, 1.0)[:, None]
    return means, jnp.mean(H, axis=0), counts


def nc1(H, labels, num_classes: int, *, scale: str = "papyan") -> jax.Array:
    """NC1 = ``(1/K) tr(Sigma_W Sigma_B^+)`` (``scale="notebook"``: without the 1/K)."""
    if scale not in ("papyan", "notebook"):
        raise ValueError(f"scale must be 'papyan' or 'notebook', got {scale!r}")
    H, labels = _check(H, labels, num_classes)
    mu, muG, _ = class_means(H, labels, num_classes)
    N, K = H.shape[0], num_classes
    Md = mu - muG  # (K, d)
    e, U = eigh_desc(Md @ Md.T / K)  # nonzero eigenvalues of Sigma_B, via the K x K Gram
    keep = e > max(K, H.shape[1]) * eps_of(e) * jnp.maximum(e[0], 0.0)
    e_safe = jnp.where(keep, e, 1.0)
    V = (Md.T @ U) / jnp.sqrt(K * e_safe)  # (d, K) unit eigenvectors of Sigma_B
    R = (H - mu[labels]) @ V  # (N, K)
    per = jnp.sum(R**2, axis=0) / N / e_safe
    total = jnp.sum(jnp.where(keep, per, 0.0))
    return total / K if scale == "papyan" else total


def _std_over_mean(x, ddof):
    m = jnp.mean(x)
    return jnp.where(m > 0, jnp.std(x, ddof=ddof) / jnp.where(m > 0, m, 1.0), 0.0)


def _offdiag_cosines(A):
    """Cosines between distinct rows of ``A`` (zero rows give 0), as a flat array."""
    An = safe_normalise_rows(A)
    return (An @ An.T)[~np.eye(A.shape[0], dtype=bool)]


def etf_gram(K: int, dtype=float) -> jax.Array:
    """``(I - J)/sqrt(K - 1)``: the unit-Frobenius Gram of a simplex ETF (``J = 11^T/K``)."""
    return (jnp.eye(K, dtype=dtype) - jnp.full((K, K), 1.0 / K, dtype)) / jnp.sqrt(K - 1.0)


def nc2(H, W, labels, num_classes: int, *, ddof: int = 0) -> dict[str, jax.Array]:
    """NC2 measures of the centred class means and of the classifier rows ``W (K, d)``.

    Returns a dict: ``equinorm_means``, ``equinorm_weights``, ``equiangular_means``,
    ``equiangular_weights``, ``maxangle_means``, ``maxangle_weights``, ``etf_means``,
    ``etf_weights`` (Zhu et al.'s ETF distances).
    """
    H, labels = _check(H, labels, num_classes)
    W = jnp.asarray(W)
    K = num_classes
    if W.shape != (K, H.shape[1]):
        raise ValueError(f"W must have shape (K, d) = ({K}, {H.shape[1]}), got {W.shape}")
    mu, muG, _ = class_means(H, labels, K)
    Md = mu - muG
    out = {}
    for name, A in (("means", Md), ("weights", W)):
        cos = _offdiag_cosines(A)
        out[f"equinorm_{name}"] = _std_over_mean(jnp.sqrt(jnp.sum(A**2, axis=1)), ddof)
        out[f"equiangular_{name}"] = jnp.std(cos, ddof=ddof)
        out[f"maxangle_{name}"] = jnp.mean(jnp.abs(cos + 1.0 / (K - 1)))
        out[f"etf_{name}"] = safe_norm(safe_normalise(A @ A.T) - etf_gram(K, A.dtype))
    return out


def nc3(
    H, W, labels, num_classes: int, *, variant: str = "papyan", center: bool = True
) -> jax.Array:
    """Self-duality: ``||W/||W|| - Mdot/||Mdot||||^2`` (``variant="zhu"``: distance of the
    normalised ``W Mdot^T`` to the simplex-ETF Gram). ``center=False`` uses the uncentred class
    means, the right comparison for a bias-free MSE UFM (orthogonal frame, ``W^T ∝ H-bar``)."""
    if variant not in ("papyan", "zhu"):
        raise ValueError(f"variant must be 'papyan' or 'zhu', got {variant!r}")
    H, labels = _check(H, labels, num_classes)
    W = jnp.asarray(W)
    mu, muG, _ = class_means(H, labels, num_classes)
    Md = mu - muG if center else mu
    if variant == "papyan":
        return jnp.sum((safe_normalise(W) - safe_normalise(Md)) ** 2)
    return safe_norm(safe_normalise(W @ Md.T) - etf_gram(num_classes, W.dtype))


def nc4(H, W, b, labels, num_classes: int) -> jax.Array:
    """Fraction of samples whose classifier decision differs from the nearest class centre."""
    H, labels = _check(H, labels, num_classes)
    mu, _, _ = class_means(H, labels, num_classes)
    logits = H @ jnp.asarray(W).T + (0.0 if b is None else jnp.asarray(b))
    d2 = jnp.sum(H**2, axis=1, keepdims=True) - 2 * H @ mu.T + jnp.sum(mu**2, axis=1)
    return jnp.mean((jnp.argmax(logits, axis=1) != jnp.argmin(d2, axis=1)).astype(H.dtype))


def orthogonal_frame_distance(G) -> jax.Array:
    """``|| G/||G|| - I/sqrt(K) ||`` for a ``K x K`` Gram (``W W^T`` or ``mu mu^T``, uncentred):
    0 for an equinorm orthogonal frame (the bias-free MSE UFM optimum)."""
    G = jnp.asarray(G)
    K = G.shape[0]
    return safe_norm(safe_normalise(G) - jnp.eye(K, dtype=G.dtype) / jnp.sqrt(1.0 * K))


def etf_distance(G) -> jax.Array:
    """``|| G/||G|| - (I - J)/sqrt(K-1) ||`` for a ``K x K`` Gram: 0 for a simplex ETF."""
    G = jnp.asarray(G)
    return safe_norm(safe_normalise(G) - etf_gram(G.shape[0], G.dtype))
