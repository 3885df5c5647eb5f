r"""Deep neural regression collapse, layer by layer (Rangamani & Unal, CPAL 2026, arXiv 2603.23805).

Layer ``l`` has features ``H (N, p)`` (the *input* of its linear map; for a conv layer the
global-average-pooled input) and weight ``W_l (out, p)``; the targets ``Y (N, n)`` are shared.
``Y_c``, ``H_c`` are the column-centred arrays, ``Sigma_H = H_c^T H_c / N`` with eigenvalues
``e_1 >= ... >= e_p`` and eigenvectors ``v_i``; ``k = min(n, p)``. Definitions of docs/theory.md
section 5, read in the authors' code (altayunal/neural-collapse-regression). The keys ``nrc1``
... ``nrc4`` below are *these* definitions, not those of :func:`ufm.metrics.nrc1` ...
:func:`ufm.metrics.nrc3` (Andriopoulos et al., NeurIPS 2024, measured on the head): ``nrc1`` here
is a fraction of feature variance, there a mean energy of normalised uncentred samples. Printed
and written next to those (``ufm metrics``), they are named ``deep_nrc1`` ... ``deep_nrc4``.

* ``nrc1`` (noise fraction) ``= sum_{i>k} e_i / sum_i e_i``: the variance outside the top-``k``
  principal directions. Tends to 0. A layer with ``p <= n`` dimensions gives 0 (nothing is
  outside); all-equal features give 0 (0/0 convention).
* ``nrc2`` = linear CKA of the centred features and targets,
  ``||Y_c^T H_c||_F^2 / (||H_c^T H_c||_F ||Y_c^T Y_c||_F)``, on **all** feature columns and
  computed from ``p x p``, ``p x n`` and ``n x n`` products (never an ``N x N`` Gram; it equals
  the Gram form ``<K_H, K_Y>/(||K_H|| ||K_Y||)`` of the code). Tends to 1. 0 for constant
  features. *Authors' code:* truncates ``H`` to its first ``n`` columns before the CKA;
  ``cka="authors"`` reproduces that to match published numbers (it depends on the arbitrary
  order of the feature columns).
* ``nrc3`` = mean of the cosines of the principal angles between the top-``k`` feature PCA
  subspace ``V_k`` and the span ``V~`` of the top right singular vectors of ``W_l``:
  ``mean_i sigma_i(V_k^T V~)``, over ``r = min(k, out)`` directions (a weight with fewer
  than ``k`` rows has only ``out`` input directions; the authors' code would pad with arbitrary
  null-space vectors). Tends to 1. Where ``Sigma_H`` or ``W_l`` has fewer than ``k`` nonzero
  eigenvalues the extra directions are arbitrary, as in the definition.
* ``nrc4`` = ``mean((H P - Y_c)^2)`` over all ``N n`` entries, with the least-squares probe
  ``P = pinv(H, rtol) Y_c``: ``H`` *uncentred*, no intercept, singular values
  ``<= rtol * sigma_max`` dropped (``rtol = 1e-3`` as in the code). Computed through the
  ``p x p`` Gram ``H^T H`` (eigenvalue cut-off ``rtol^2``); the residual itself is formed
  explicitly (``N x n``), so a perfect probe gives 0 to rounding. In float32 the squared cut-off
  (``1e-6``) is near the Gram's rounding level: use float64 for probe values near the cut.
  Compare with the model's training MSE per entry: collapse means they are close.
* stable ranks: ``srank_features = sum e_i / e_1`` (the usual stable rank
  ``||H_c||_F^2/||H_c||_2^2``) and ``srank_features_sq = sum e_i^2 / e_1^2`` (the authors'
  coded one: the stable rank of ``Sigma_H``); ``srank_weights = sum sigma_i(W_l)^2 /
  sigma_1^2`` (usual and coded agree); ``srank_targets = sum lambda_i / lambda_1`` and
  ``srank_targets_sq = sum lambda_i^2 / lambda_1^2`` (coded) for ``Sigma_Y = Y_c^T Y_c / N``,
  the same at every layer. A zero matrix has stable rank 0.
* ``collapsed`` = 1.0 where ``nrc1 < threshold`` else 0.0, and ``first_collapsed`` (a scalar):
  the index (from 0) of the first layer with ``nrc1 < threshold``, or ``L`` when no layer is
  collapsed (an index past the last layer, so ``features[first_collapsed]`` cannot silently
  pick a layer). The threshold (default ``1e-2``: at most 1% of the feature variance outside
  the top-``n`` directions) is this package's convention, not the paper's. A layer with
  ``p <= n`` has ``nrc1 = 0`` and counts as collapsed: its features trivially lie in ``n``
  directions.

NaN in, NaN out, per layer: a NaN or inf in layer ``l``'s features or weight makes every value
of layer ``l`` NaN (the other layers keep theirs); non-finite targets make everything NaN; a NaN
layer makes ``first_collapsed`` NaN. Traceable with fixed shapes (the layer loop unrolls at
trace time), so the metrics can be recorded inside a jitted loop and batched with ``vmap``.
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
    relative_cut,
    safe_div,
    safe_norm,
    sym,
)
from ._checks import check_option, real_matrix, real_scalar
from ._deep_nc import layer_features, layer_weights


def _cka(X, Yc, YtY_norm):
    """Linear CKA of centred ``X (N, q)`` and ``Yc (N, n)`` via ``q x q``, ``q x n`` products."""
    num = jnp.sum(mm(Yc.T, X) ** 2)
    return safe_div(num, safe_norm(mm(X.T, X)) * YtY_norm)


def _weight_spectrum(W, r: int):
    """Squared singular values of ``W`` (descending) and its ``(p, r)`` top right singular
    vectors, from one symmetric eigen-decomposition of the smaller Gram."""
    out, p = W.shape
    if p <= out:
        s2, V = eigh_desc(mm(W.T, W))
        return s2, V[:, :r]
    s2, U = eigh_desc(mm(W, W.T))
    V = mm(W.T, U[:, :r]) * inv_above(s2[:r], relative_cut(s2, max(out, p)), 0.5)
    return s2, V


def _principal_cosines(A, B):
    """Cosines of the principal angles between the column spans of orthonormal ``A``, ``B``."""
    C = mm(A.T, B)
    s2 = jnp.linalg.eigvalsh(sym(mm(C.T, C)))
    return jnp.sqrt(jnp.clip(s2, 0.0, 1.0))


def _probe_mse(H, Yc, rtol):
    G = mm(H.T, H)
    e, V = eigh_desc(G)
    inv = inv_above(e, rtol**2 * jnp.maximum(e[0], 0.0), 1.0)
    P = mm(V * inv, mm(V.T, mm(H.T, Yc)))  # pinv(H, rtol) Y_c through the Gram
    return jnp.mean((mm(H, P) - Yc) ** 2)


def _srank(e):
    return safe_div(jnp.sum(e), e[0])


@full_precision
def deep_nrc(
    features,
    weights,
    targets,
    *,
    cka: str = "all",
    threshold=1e-2,
    rtol=1e-3,
) -> dict[str, jax.Array]:
    """Deep NRC1-4 and stable ranks at every layer (definitions in the module docstring).

    Args:
        features: sequence of ``L`` arrays ``(N, p_l)``, the input of layer ``l``.
        weights: sequence of ``L`` matrices ``(out_l, p_l)``, the map that consumes them.
        targets: ``Y`` of shape ``(N, n)``.
        cka: ``"all"`` (the definition: CKA on every feature column) or ``"authors"`` (the
            authors' code: the first ``n`` feature columns only).
        threshold: a layer counts as collapsed when ``nrc1 < threshold`` (scalar, may be traced).
        rtol: relative singular-value cut-off of the probe's pseudo-inverse (scalar, may be traced).

    Returns:
        dict name -> ``(L,)`` array: ``nrc1``, ``nrc2``, ``nrc3``, ``nrc4``, ``srank_features``,
        ``srank_features_sq``, ``srank_weights``, ``srank_targets``, ``srank_targets_sq``,
        ``collapsed``; and ``first_collapsed``, a scalar (float, so that it can be NaN).
    """
    check_option(cka, "cka", ("all", "authors"))
    Y = real_matrix(targets, "targets", "(N, n)")
    Xs = layer_features(features, N=Y.shape[0])
    Ws = layer_weights(weights, Xs)
    threshold = real_scalar(threshold, "threshold")
    rtol = real_scalar(rtol, "rtol")
    N, n = Y.shape
    Yc = Y - jnp.mean(Y, axis=0)
    SY = mm(Yc.T, Yc)
    lam = jnp.maximum(jnp.linalg.eigvalsh(sym(SY))[::-1] / N, 0.0)
    YtY_norm = safe_norm(SY)
    rows = []
    for H, W in zip(Xs, Ws, strict=True):
        p = H.shape[1]
        k = min(n, p)
        Hc = H - jnp.mean(H, axis=0)
        e, V = eigh_desc(mm(Hc.T, Hc) / N)
        e = jnp.maximum(e, 0.0)
        s2, Vw = _weight_spectrum(W, min(k, W.shape[0]))
        row = {
            "nrc1": safe_div(jnp.sum(e[k:]), jnp.sum(e)),
            "nrc2": _cka(Hc if cka == "all" else Hc[:, :n], Yc, YtY_norm),
            "nrc3": jnp.mean(_principal_cosines(V[:, :k], Vw)),
            "nrc4": _probe_mse(H, Yc, rtol),
            "srank_features": _srank(e),
            "srank_features_sq": _srank(e**2),
            "srank_weights": _srank(jnp.maximum(s2, 0.0)),
            "srank_targets": _srank(lam),
            "srank_targets_sq": _srank(lam**2),
        }
        rows.append(nan_unless_finite(row, H, W, Y, rtol))
    out = {key: jnp.stack([r[key] for r in rows]) for key in rows[0]}
    nrc1 = out["nrc1"]
    flags = nrc1 < threshold
    L = len(rows)
    first = jnp.where(jnp.any(flags), jnp.argmax(flags), L).astype(nrc1.dtype)
    undefined = jnp.isnan(nrc1) | jnp.isnan(threshold)
    out["collapsed"] = jnp.where(undefined, jnp.nan, flags.astype(nrc1.dtype))
    out["first_collapsed"] = jnp.where(jnp.any(undefined), jnp.nan, first)
    return out
