r"""Layer-wise neural collapse NC1-NC4 for any network's per-layer features, or a deep UFM.

Layer ``l`` has features ``X_l (N, p_l)``, the *input* of its linear map ``W_l (out_l, p_l)``
(and optional bias ``b_l (out_l,)``); ``labels (N,)`` in ``[0, K)`` are shared. For a deep UFM
``Z = W_L s(... s(H W_1^T) ...)`` pass ``features = (X_1 = H, X_2, ..., X_L)`` and
``weights = (W_1, ..., W_L)``. Per layer, with ``mu_c`` the class means of ``X_l``, ``mu_G``
their global mean and ``Mdot = [mu_c - mu_G]_c`` (see :mod:`ufm.metrics._classification`):

* ``nc1``: Papyan's ``(1/K) tr(Sigma_W Sigma_B^+)`` (PNAS 2020), as :func:`ufm.metrics.nc1`.
* ``nc2``: Zhu et al.'s simplex-ETF distance of the centred class means
  ``|| Mdot Mdot^T/||.|| - (I - J)/sqrt(K-1) ||`` (``etf_means`` of :func:`ufm.metrics.nc2`);
  ``nc2_equinorm``: ``std_c ||mu_c - mu_G|| / mean_c ||mu_c - mu_G||``;
  ``nc2_orthogonal``: the orthogonal-frame distance of the *uncentred* class-mean Gram,
  ``|| M M^T/||.|| - I/sqrt(K) ||``, the DNC2 geometry after a ReLU (Súkeník, Mondelli,
  Lampert, NeurIPS 2023, arXiv 2305.13165: non-negative, equinorm, orthogonal class means).
* ``nc3_alignment`` (every layer with a weight): the fraction of the weight's energy outside
  the span of the layer's (uncentred) class means,
  ``||W_l (I - P_l)||_F^2 / ||W_l||_F^2``, ``P_l`` the orthogonal projector onto
  ``span{mu_1, ..., mu_K}`` (rank cut-off ``max(K, p) eps`` relative). In [0, 1]; 0 iff every
  row of ``W_l`` lies in that span. This is a subspace form of the DNC3 property of Súkeník et
  al. 2023 ("the weight matrices are aligned with the class means of their layer"); the
  normalisation by ``||W_l||_F^2`` is this package's choice. Uncentred because after NC1 the
  features span exactly ``span{mu_c}`` (which contains ``mu_G``), so any part of ``W_l`` outside
  it acts on nothing, whatever the biases. 0 for a zero ``W_l`` (0/0 convention).
* ``nc3``: self-duality ``||W/||W|| - Mdot/||Mdot|| ||^2`` (Papyan, as
  :func:`ufm.metrics.nc3`; uncentred means with ``center=False``, the bias-free MSE case) at a
  layer whose weight has exactly ``K`` rows (a classifier head); at the other layers
  ``nc3 = nc3_alignment`` (self-duality needs one weight row per class).
* ``nc4`` (needs a ``K``-row weight): the fraction of samples where ``argmax_c (W_l x + b_l)``
  differs from the nearest uncentred class mean, as :func:`ufm.metrics.nc4`. NaN at layers
  whose weight does not have ``K`` rows: there is no per-class score to compare.

A layer whose weight happens to have ``K`` rows is treated as a head. Without ``weights`` the
keys ``nc3``, ``nc3_alignment`` and ``nc4`` are absent.

NaN in, NaN out, per layer: a NaN or inf in ``X_l``, ``W_l`` or ``b_l`` makes every value of
layer ``l`` NaN; the other layers keep their values. Traceable with fixed output shapes: the
layer loop runs at trace time, so ``jit``, ``vmap`` and recording inside a jitted loop work.
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
)
from ._checks import check_labels, check_num_classes, layer_list, real_array, real_matrix
from ._classification import (
    _etf_dist,
    _frame_dist,
    _moments,
    _nc1_trace,
    _nc4,
    _self_duality,
    _std_over_mean,
    _valid_only,
)


def layer_features(features, name: str = "features", N: int | None = None) -> list[jax.Array]:
    """Check a sequence of per-layer ``(N, p_l)`` arrays with one common ``N``."""
    out = []
    for i, X in enumerate(layer_list(features, name)):
        X = real_matrix(X, f"{name}[{i}]", "(N, p)")
        if N is None:
            N = X.shape[0]
        if X.shape[0] != N:
            raise ValueError(
                f"{name}[{i}] must have shape (N, p) with N = {N} samples, got {X.shape}"
            )
        out.append(X)
    return out


def layer_weights(weights, Xs: list, name: str = "weights") -> list[jax.Array]:
    """Check ``weights[l]`` of shape ``(out_l, p_l)`` against ``Xs[l]`` of shape ``(N, p_l)``."""
    Ws = layer_list(weights, name)
    if len(Ws) != len(Xs):
        raise ValueError(
            f"{name} must hold one matrix per layer: {len(Xs)} feature arrays, got {len(Ws)}"
        )
    out = []
    for i, (W, X) in enumerate(zip(Ws, Xs, strict=True)):
        p = X.shape[1]
        W = real_matrix(W, f"{name}[{i}]", f"(out, p) = (out, {p})")
        if W.shape[1] != p:
            raise ValueError(
                f"{name}[{i}] must have shape (out, p) with p = {p} columns (features[{i}] has "
                f"shape {X.shape}), got {W.shape}"
            )
        out.append(W)
    return out


def _layer_biases(biases, Ws: list) -> list:
    if biases is None:
        return [None] * len(Ws)
    bs = layer_list(biases, "biases")
    if len(bs) != len(Ws):
        raise ValueError(f"biases must hold one entry per weight: {len(Ws)}, got {len(bs)}")
    out = []
    for i, (b, W) in enumerate(zip(bs, Ws, strict=True)):
        if b is not None:
            b = real_array(b, f"biases[{i}]", 1, f"(out,) = ({W.shape[0]},)")
            if b.shape != (W.shape[0],):
                raise ValueError(
                    f"biases[{i}] must have shape (out,) = ({W.shape[0]},) to match "
                    f"weights[{i}] of shape {W.shape}, got {b.shape}"
                )
        out.append(b)
    return out


def _outside_fraction(W, M):
    """``||W (I - P)||_F^2 / ||W||_F^2`` with ``P`` the projector onto the row span of ``M``."""
    e, U = eigh_desc(mm(M, M.T))
    Q = mm(M.T, U) * inv_above(e, relative_cut(e, max(M.shape)), 0.5)  # (p, K) orthonormal cols
    R = W - mm(mm(W, Q), Q.T)
    return safe_div(jnp.sum(R**2), jnp.sum(W**2))


@full_precision
def deep_nc(
    features,
    labels,
    num_classes: int,
    weights=None,
    biases=None,
    *,
    center: bool = True,
    ddof: int = 0,
) -> dict[str, jax.Array]:
    """NC1-NC4 at every layer (see the module docstring for the definitions).

    Args:
        features: sequence of ``L`` arrays ``(N, p_l)``, the input of layer ``l``.
        labels: integer ``(N,)`` in ``[0, num_classes)``, every class present.
        num_classes: ``K >= 2``.
        weights: optional sequence of ``L`` matrices ``(out_l, p_l)`` (the map that consumes
            ``features[l]``).
        biases: optional sequence of ``L`` entries ``(out_l,)`` or ``None`` (used by NC4).
        center: self-duality (``nc3`` at ``K``-row layers) with centred class means (Papyan);
            ``False`` for the uncentred ones (bias-free MSE UFM).
        ddof: of the std in ``nc2_equinorm``.

    Returns:
        dict name -> ``(L,)`` array: ``nc1``, ``nc2``, ``nc2_equinorm``, ``nc2_orthogonal`` and,
        with ``weights``, ``nc3``, ``nc3_alignment``, ``nc4``.
    """
    Xs = layer_features(features)
    K = check_num_classes(num_classes)
    y = check_labels(labels, Xs[0].shape[0], K)
    Ws = None if weights is None else layer_weights(weights, Xs)
    if Ws is None and biases is not None:
        raise ValueError("biases were given without weights")
    bs = [None] * len(Xs) if Ws is None else _layer_biases(biases, Ws)
    rows = []
    for i, X in enumerate(Xs):
        mom = _moments(X, y, K)
        Md, mu = mom.Md, mom.mu
        r = {
            "nc1": _nc1_trace(mom.X, y, mom.Xmeans, Md, K) / K,
            "nc2": _etf_dist(Md),
            "nc2_equinorm": _std_over_mean(jnp.sqrt(jnp.sum(Md**2, axis=1)), ddof),
            "nc2_orthogonal": _frame_dist(mu),
        }
        W = None
        if Ws is not None:
            W, b = Ws[i], bs[i]
            Wn = pow2_normalise(W)  # the metrics below do not depend on the scale of W
            r["nc3_alignment"] = _outside_fraction(Wn, mu)
            if W.shape[0] == K:
                r["nc3"] = _self_duality(Wn, Md if center else mu)
                r["nc4"] = _nc4(X, W, b, mom)
            else:
                r["nc3"] = r["nc3_alignment"]
                r["nc4"] = jnp.full((), jnp.nan, X.dtype)
        rows.append(nan_unless_finite(_valid_only(r, mom.valid), X, W, bs[i]))
    return {k: jnp.stack([r[k] for r in rows]) for k in rows[0]}
