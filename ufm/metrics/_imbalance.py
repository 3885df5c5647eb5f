r"""Collapse metrics for imbalanced classes: NC1 per class, minority collapse, distance to a Gram.

Samples first: features ``H (N, d)``, integer ``labels (N,)`` in ``[0, K)`` with ``n_c`` samples
in class ``c``, classifier ``W (K, d)``. One instance per call; batch with ``jax.vmap``.

* **NC1 per class** (:func:`nc1_per_class`): the package's NC1 (docs/theory.md section 4,
  ``(1/K) tr(Sigma_W Sigma_B^+)``) with the pooled within-class covariance replaced by class
  ``c``'s own,

      NC1_c = (1/K) tr(Sigma_W^(c) Sigma_B^+),
      Sigma_W^(c) = (1/n_c) sum_{i: y_i = c} (h_i - mu_c)(h_i - mu_c)^T,

  with the same ``Sigma_B = (1/K) sum_c (mu_c - mu_G)(mu_c - mu_G)^T`` (``mu_G`` the mean of the
  samples) and the same pseudo-inverse (top ``K - 1`` eigenpairs above a relative cut-off). As
  ``Sigma_W = sum_c (n_c/N) Sigma_W^(c)``, ``nc1 = sum_c (n_c/N) NC1_c``: the pooled NC1 is the
  size-weighted mean of the per-class values (their plain mean under balance). A minority class
  whose features have not collapsed shows up here while it barely moves the pooled NC1.
* **Minority collapse** (:func:`minority_collapse`; Fang, He, Long, Su, PNAS 2021): for the
  rows ``w_c`` of the minority classes ``c in B`` (``|B| >= 2``) and of the majority ``A`` (the
  others, ``|A| >= 1``), the cosines ``cos(w_c, w_c') = w_c^T w_c' / (||w_c|| ||w_c'||)`` between
  minority rows (the full ``|B| x |B|`` matrix, and the maximum and mean over ``c != c'``: 1 when
  the minority classifiers coincide) and the norm ratios ``||w_c|| / mean_{a in A} ||w_a||``.
* **Distance to a reference geometry** (:func:`gram_distance`):
  ``|| G/||G||_F - G_ref/||G_ref||_F ||_F`` for a ``K x K`` Gram ``G`` (``W W^T`` or the
  class-mean Gram) and a reference ``G_ref``: 0 when ``G`` is a positive multiple of ``G_ref``,
  at most 2. With ``G_ref = (I - J)`` it is :func:`ufm.metrics.etf_distance`; for the SELI
  geometry of imbalanced cross-entropy (Thrampoulidis et al., NeurIPS 2022), pass
  ``theory.classification.seli(class_sizes).WWT``::

      gram_distance(W @ W.T, theory.classification.seli(sizes).WWT)

Conventions as in :mod:`ufm.metrics._classification`: a zero row has cosine 0 with every row,
a ratio whose denominator is 0 is 0, a zero Gram normalises to 0; NaN or inf in ``H``, ``W`` or a
Gram makes every returned value NaN (also under ``jit``/``vmap``), and so do traced labels that
an eager call would reject. ``H`` and ``W`` are rescaled by a power of two first (exact; none of
these depends on their scale).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .._linalg import (
    full_precision,
    mm,
    nan_unless_finite,
    pow2_normalise,
    safe_div,
    safe_norm,
    safe_normalise,
    safe_normalise_rows,
)
from .._validate import is_concrete
from ._checks import check_option, real_matrix
from ._classification import _check, _moments, _sigma_b_eig, _stats, _valid_only


def _per_class_trace(X, labels, Xmeans, Md, K: int) -> jax.Array:
    """``tr(Sigma_W^(c) Sigma_B^+)`` for every class ``c`` (``(K,)``, without the 1/K), from the
    centred samples ``X``, their class means and the centred class means ``Md`` (the
    eigen-decomposition of ``_classification._nc1_trace``, the residuals summed per class)."""
    V, inv_e = _sigma_b_eig(Md, K, X.shape[1])
    R2 = mm(X - Xmeans[labels], V) ** 2  # (N, K): squared residuals along each eigenvector
    per = _stats(R2, labels, K)[0]  # (classes, eig): the class means of R2
    return mm(per, inv_e)


@full_precision
def nc1_per_class(H, labels, num_classes: int, *, scale: str = "papyan") -> jax.Array:
    """NC1 of each class, ``(1/K) tr(Sigma_W^(c) Sigma_B^+)`` ``(K,)`` (module docstring);
    ``scale="notebook"`` drops the 1/K as :func:`ufm.metrics.nc1` does. The size-weighted mean
    ``sum_c (n_c/N) NC1_c`` is :func:`ufm.metrics.nc1`."""
    check_option(scale, "scale", ("papyan", "notebook"))
    H, labels, K = _check(H, labels, num_classes)
    mom = _moments(H, labels, K)
    per = _per_class_trace(mom.X, labels, mom.Xmeans, mom.Md, K)
    out = per / K if scale == "papyan" else per
    return nan_unless_finite(_valid_only(out, mom.valid), H)


def minority_indices(minority, K: int) -> np.ndarray:
    """The minority classes as sorted indices: ``minority`` is a boolean mask of shape ``(K,)`` or
    a sequence of distinct class indices in ``[0, K)``; concrete; at least 2 minority classes and
    at least 1 majority class."""
    if isinstance(minority, jax.Array) and not is_concrete(minority):
        raise TypeError(
            "minority must be concrete (a boolean mask or indices known before tracing): it "
            "fixes the shape of the result"
        )
    try:
        m = np.asarray(minority)
    except (TypeError, ValueError) as err:
        raise TypeError(
            f"minority must be a boolean mask of shape (K,) = ({K},) or a sequence of class "
            f"indices, got {type(minority).__name__}"
        ) from err
    if m.dtype.kind == "b":
        if m.shape != (K,):
            raise ValueError(
                f"minority as a boolean mask must have shape (K,) = ({K},), got {m.shape}"
            )
        idx = np.flatnonzero(m)
    elif m.dtype.kind in "iu" and m.ndim == 1:
        if m.size and (m.min() < 0 or m.max() >= K):
            raise ValueError(f"minority indices must lie in [0, K) = [0, {K}), got {m.tolist()}")
        if np.unique(m).size != m.size:
            raise ValueError(f"minority indices must be distinct, got {m.tolist()}")
        idx = np.sort(m)
    else:
        raise TypeError(
            f"minority must be a boolean mask of shape (K,) = ({K},) or a 1-D sequence of "
            f"integer class indices, got dtype {m.dtype} and shape {m.shape}"
        )
    if idx.size < 2:
        raise ValueError(
            f"minority must name at least 2 classes (cosines between minority rows), got "
            f"{idx.tolist()}"
        )
    if idx.size == K:
        raise ValueError(
            f"minority must leave at least 1 majority class (the norm ratios), got all {K}"
        )
    return idx.astype(np.intp)


@full_precision
def minority_collapse(W, minority) -> dict[str, jax.Array]:
    """Minority-collapse measures of a classifier ``W (K, d)`` (module docstring).

    Args:
        W: the classifier rows ``w_c`` ``(K, d)``.
        minority: which classes are minority: a boolean mask of shape ``(K,)`` or a sequence of
            distinct class indices (concrete); at least 2, and at least 1 class left as majority.

    Returns a dict: ``cosines`` ``(m, m)`` (minority rows in increasing class order, 1 on the
    diagonal for nonzero rows), ``max_cosine`` and ``mean_cosine`` (over ``c != c'``),
    ``norm_ratios`` ``(m,)`` (``||w_c|| / mean_{a in majority} ||w_a||``) and
    ``mean_norm_ratio``.
    """
    W = real_matrix(W, "W", "(K, d)")
    K = W.shape[0]
    idx = minority_indices(minority, K)
    maj = np.setdiff1d(np.arange(K), idx)
    Ws = pow2_normalise(W)
    B = Ws[idx]
    Bn = safe_normalise_rows(B)
    cos = mm(Bn, Bn.T)
    off = cos[~np.eye(idx.size, dtype=bool)]
    norms = jnp.sqrt(jnp.sum(Ws**2, axis=1))
    ratios = safe_div(norms[idx], jnp.mean(norms[maj]))
    out = {
        "cosines": cos,
        "max_cosine": jnp.max(off),
        "mean_cosine": jnp.mean(off),
        "norm_ratios": ratios,
        "mean_norm_ratio": jnp.mean(ratios),
    }
    return nan_unless_finite(out, W)


def _check_square(G, name: str) -> jax.Array:
    G = real_matrix(G, name, "(K, K)")
    if G.shape[0] != G.shape[1] or G.shape[0] < 2:
        raise ValueError(
            f"{name} must be a square (K, K) Gram matrix with K >= 2, got shape {G.shape}"
        )
    return G


@full_precision
def gram_distance(G, reference) -> jax.Array:
    """``|| G/||G||_F - G_ref/||G_ref||_F ||_F`` for ``K x K`` Grams ``G`` and
    ``reference = G_ref`` (module docstring); e.g. the SELI distance
    ``gram_distance(W @ W.T, theory.classification.seli(sizes).WWT)``."""
    G = _check_square(G, "G")
    R = _check_square(reference, "reference")
    if R.shape != G.shape:
        raise ValueError(
            f"reference must have the shape of G, (K, K) = {G.shape}, got shape {R.shape}"
        )
    G, R = pow2_normalise(G), pow2_normalise(R)
    return nan_unless_finite(safe_norm(safe_normalise(G) - safe_normalise(R)), G, R)
