r"""Streaming layer-wise metrics: deep neural regression collapse (Rangamani & Unal, CPAL 2026;
docs/theory.md section 5) and NC1-NC4 at every layer (:func:`ufm.metrics.deep_nc`).

See :mod:`ufm.metrics._streaming` for the update rule. Deep NRC is one pass: every metric is
a function of the count ``N``, the feature mean ``h_bar`` and the joint centred scatter of
``[H_l, Y]``, that is ``H_c^T H_c`` ``(p, p)``, ``H_c^T Y_c`` ``(p, n)`` and ``Y_c^T Y_c``
``(n, n)``; memory ``O((p_l + n)^2)`` a layer. Deep NC keeps the class statistics of
:class:`NCAccumulator` a layer and needs a second pass for NC4 only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ._streaming import Moments, as_rows, eigh_desc, finite, fro, quiet
from ._streaming_nc import NCAccumulator

_EPS = np.finfo(np.float64).eps


def _ratio(a: float, b: float) -> float:
    """``a / b`` with 0 for ``b = 0`` (the 0/0 convention of ``safe_div``)."""
    return float(a) / float(b) if b > 0 else 0.0


def _right_basis(W: np.ndarray, r: int) -> np.ndarray:
    """``(p, r)`` top right singular vectors of ``W`` (as ``deep_nrc``: symmetric solver on the
    smaller Gram; directions of ``W W^T`` below the relative cut-off become 0)."""
    out, p = W.shape
    if p <= out:
        return eigh_desc(W.T @ W)[1][:, :r]
    s2, U = eigh_desc(W @ W.T)
    keep = s2 > max(out, p) * _EPS * max(s2[0], 0.0)
    scale = np.where(keep, np.where(keep, s2, 1.0) ** -0.5, 0.0)
    return ((W.T @ U) * scale)[:, :r]


KEYS = (
    "nrc1",
    "nrc2",
    "nrc3",
    "nrc4",
    "srank_features",
    "srank_features_sq",
    "srank_weights",
    "srank_targets",
    "srank_targets_sq",
)


def layer_metrics(
    N: int, mean_H: np.ndarray, S: np.ndarray, p: int, W, rtol: float, cka: str
) -> dict[str, float]:
    """The deep NRC metrics of one layer from the count, the feature mean and the joint centred
    scatter ``S`` of ``[H, Y]`` (``(p + n, p + n)``) and the layer's weight ``W (out, p)`` (or
    None: no ``nrc3``, no ``srank_weights``). All NaN unless everything is finite."""
    n = S.shape[0] - p
    k = min(n, p)
    keys = [key for key in KEYS if W is not None or key not in ("nrc3", "srank_weights")]
    if not finite(S, mean_H, 0.0 if W is None else W, rtol):
        return dict.fromkeys(keys, float("nan"))
    Shh, Shy, Syy = S[:p, :p], S[:p, p:], S[p:, p:]
    e, V = eigh_desc(Shh / N)
    e = np.maximum(e, 0.0)
    lam = np.maximum(np.linalg.eigvalsh(0.5 * (Syy + Syy.T))[::-1] / N, 0.0)
    q = p if cka == "all" else min(n, p)  # the authors' code: the first n feature columns
    out = {
        "nrc1": _ratio(np.sum(e[k:]), np.sum(e)),
        "nrc2": _ratio(np.sum(Shy[:q] ** 2), fro(Shh[:q, :q]) * fro(Syy)),
    }
    if W is not None:
        C = V[:, :k].T @ _right_basis(W, min(k, W.shape[0]))
        c2 = np.linalg.eigvalsh(0.5 * (C.T @ C + (C.T @ C).T))
        out["nrc3"] = float(np.mean(np.sqrt(np.clip(c2, 0.0, 1.0))))
    # Probe P = pinv(H, rtol) Y_c with H uncentred: H^T H = H_c^T H_c + N h_bar h_bar^T and
    # H^T Y_c = H_c^T Y_c; the eigenvalues of H^T H above rtol^2 times the largest are kept.
    # MSE = (||Y_c||^2 - sum_kept ||v_j^T H^T Y_c||^2 / s_j^2) / (N n).
    s2, Vg = eigh_desc(Shh + N * np.outer(mean_H, mean_H))
    keep = s2 > rtol**2 * max(s2[0], 0.0)
    proj = Vg[:, keep].T @ Shy
    explained = float(np.sum(np.sum(proj**2, axis=1) / s2[keep]))
    out["nrc4"] = max(float(np.trace(Syy)) - explained, 0.0) / (N * n)
    out["srank_features"] = _ratio(np.sum(e), e[0])
    out["srank_features_sq"] = _ratio(np.sum(e**2), e[0] ** 2)
    if W is not None:
        sw = np.maximum(np.linalg.eigvalsh(W @ W.T)[::-1], 0.0)
        out["srank_weights"] = _ratio(np.sum(sw), sw[0])
    out["srank_targets"] = _ratio(np.sum(lam), lam[0])
    out["srank_targets_sq"] = _ratio(np.sum(lam**2), lam[0] ** 2)
    return {key: out[key] for key in keys}


class DeepNRCAccumulator:
    r"""Streaming deep NRC metrics of every layer: the numbers of :func:`ufm.metrics.deep_nrc`.

    One pass over ``(features, targets)`` batches, ``features`` a sequence of ``L`` arrays
    ``(b, p_l)`` (the inputs of the layers), ``targets (b, n)``. Keeps per layer the count, the
    mean of ``[H_l, Y]`` and its centred scatter (Chan et al. updates), ``O((p_l + n)^2)``
    memory. With ``Sigma_H = H_c^T H_c / N`` (eigenpairs ``e_i, v_i`` descending), ``k =
    min(n, p)`` (definitions and the authors' variants in :mod:`ufm.metrics._deep_nrc`):

    * ``nrc1 = sum_{i>k} e_i / sum_i e_i`` (noise fraction outside the top-k PCA subspace);
    * ``nrc2 = ||Y_c^T H_c||^2 / (||H_c^T H_c|| ||Y_c^T Y_c||)`` (linear CKA on all columns;
      ``cka="authors"``: the first ``n`` columns, as the authors' code);
    * ``nrc3`` = mean cosine of the principal angles between the top-k PCA subspace and the top
      ``min(k, out)`` right singular vectors of ``W_l``;
    * ``nrc4 = mean((H P - Y_c)^2)`` with ``P = pinv(H, rtol) Y_c`` (``H`` uncentred, no
      intercept), from ``H^T H = H_c^T H_c + N h_bar h_bar^T`` and ``H^T Y_c = H_c^T Y_c``
      (eigenvalues of ``H^T H`` above ``rtol^2`` times the largest are kept), so one pass;
    * ``srank_features = sum e_i / e_1``, ``srank_features_sq = sum e_i^2 / e_1^2`` (the
      authors'), ``srank_weights``, ``srank_targets``, ``srank_targets_sq`` (of ``Sigma_Y``);
    * ``collapsed`` (``nrc1 < threshold``, 1.0 or 0.0) and the scalar ``first_collapsed``
      (first collapsed layer, ``L`` when none).

    NaN or inf in a layer's features or weight makes that layer NaN; in the targets, all.

    Args:
        weights: sequence of ``L`` matrices ``(out_l, p_l)``, or ``None`` (then no ``nrc3`` and
            no ``srank_weights``; give ``num_layers``).
        num_layers: ``L`` (checked against ``weights`` when both are given).

    Example::

        acc = DeepNRCAccumulator([W0, W1, W2])
        for (H0, H1, H2), Y in loader:
            acc.update([H0, H1, H2], Y)
        acc.result()["nrc1"]  # (3,) array
    """

    needs_second_pass = False

    def __init__(self, weights: Sequence | None = None, *, num_layers: int | None = None) -> None:
        if weights is None and num_layers is None:
            raise ValueError("give weights (a sequence, one per layer) or num_layers")
        if weights is not None:
            if isinstance(weights, np.ndarray) or not isinstance(weights, Sequence):
                raise TypeError("weights must be a list or tuple with one matrix per layer")
            self.weights = [as_rows(w, f"weights[{i}]") for i, w in enumerate(weights)]
        else:
            self.weights = [None] * int(num_layers)
        if num_layers is not None and num_layers != len(self.weights):
            raise ValueError(f"num_layers = {num_layers} but {len(self.weights)} weights")
        if len(self.weights) == 0:
            raise ValueError("weights must hold at least one layer")
        self.moments = [Moments() for _ in self.weights]
        self.dims = [None if w is None else w.shape[1] for w in self.weights]
        self.n: int | None = None

    @property
    def count(self) -> int:
        return self.moments[0].count

    def update(self, features: Sequence, targets) -> DeepNRCAccumulator:
        """Add a batch: ``features`` a sequence of ``L`` arrays ``(b, p_l)``, ``targets (b, n)``
        (or ``(b,)`` for ``n = 1``)."""
        L = len(self.weights)
        if isinstance(features, np.ndarray) or not isinstance(features, Sequence):
            raise TypeError(f"features must be a list or tuple of {L} per-layer batches")
        if len(features) != L:
            raise ValueError(f"features must hold {L} layers (one per weight), got {len(features)}")
        Hs = [as_rows(h, f"features[{i}]", self.dims[i]) for i, h in enumerate(features)]
        Y = as_rows(targets, "targets", self.n, column=True)
        for i, H in enumerate(Hs):
            if H.shape[0] != Y.shape[0]:
                raise ValueError(
                    f"features[{i}] has {H.shape[0]} rows, targets {Y.shape[0]}: they must match"
                )
        if Y.shape[0] == 0:
            return self
        self.n = Y.shape[1]
        for i, (H, mom) in enumerate(zip(Hs, self.moments, strict=True)):
            self.dims[i] = H.shape[1]
            mom.update(np.concatenate([H, Y], axis=1))
        return self

    @quiet
    def result(self, *, cka: str = "all", threshold=1e-2, rtol=1e-3) -> dict[str, np.ndarray]:
        """``{name: (L,) float64 array}`` and the scalar ``first_collapsed``; keywords as
        :func:`ufm.metrics.deep_nrc`."""
        if cka not in ("all", "authors"):
            raise ValueError(f"cka must be one of ('all', 'authors'), got {cka!r}")
        if self.count == 0:
            raise ValueError("no samples: call update with at least one non-empty batch")
        rtol, threshold = float(rtol), float(threshold)
        per = [
            layer_metrics(m.count, m.mean[:p], m.scatter, p, w, rtol, cka)
            for m, p, w in zip(self.moments, self.dims, self.weights, strict=True)
        ]
        out = {k: np.array([r.get(k, np.nan) for r in per]) for k in per[0]}
        nrc1 = out["nrc1"]
        undefined = np.isnan(nrc1) | np.isnan(threshold)
        flags = nrc1 < threshold
        out["collapsed"] = np.where(undefined, np.nan, flags.astype(float))
        first = float(np.argmax(flags)) if flags.any() else float(len(per))
        out["first_collapsed"] = np.float64(np.nan if undefined.any() else first)
        return out


class _Layer(NCAccumulator):
    """A layer of :class:`DeepNCAccumulator`: its weight may have any number of rows."""

    def _check_head(self) -> None:
        pass


class DeepNCAccumulator:
    r"""Streaming NC metrics of every layer: the numbers of :func:`ufm.metrics.deep_nc`.

    One class-statistics accumulator a layer (see :class:`NCAccumulator`), fed together. Keys
    per layer: ``nc1``, ``nc2`` (ETF distance of the centred means), ``nc2_equinorm``,
    ``nc2_orthogonal`` (frame distance of the uncentred means) and, with weights,
    ``nc3_alignment`` (energy of ``W_l`` outside the span of the class means), ``nc3``
    (self-duality at a layer whose weight has ``K`` rows, else ``nc3_alignment``) and ``nc4``
    (``K``-row layers only, NaN elsewhere; **second pass**). NaN or inf in a layer's features,
    weight or bias makes that layer's values NaN.

    Args:
        num_classes: ``K >= 2``.
        weights: optional sequence of ``L`` matrices ``(out_l, p_l)``; give ``num_layers``
            without it.
        biases: optional sequence of ``L`` entries ``(out_l,)`` or ``None`` (NC4).
        num_layers: ``L`` (checked against ``weights`` when both are given).
    """

    def __init__(
        self,
        num_classes: int,
        weights: Sequence | None = None,
        biases: Sequence | None = None,
        *,
        num_layers: int | None = None,
    ) -> None:
        if weights is None and num_layers is None:
            raise ValueError("give weights (a sequence, one per layer) or num_layers")
        if weights is not None and (isinstance(weights, np.ndarray) or not _is_seq(weights)):
            raise TypeError("weights must be a list or tuple with one matrix per layer")
        L = len(weights) if weights is not None else num_layers
        if isinstance(L, bool) or not isinstance(L, int) or L < 1:
            raise ValueError(f"num_layers must be an int >= 1, got {L!r}")
        if num_layers is not None and num_layers != L:
            raise ValueError(f"num_layers = {num_layers} but {L} weights")
        if biases is not None and weights is None:
            raise ValueError("biases were given without weights")
        weights = [None] * L if weights is None else list(weights)
        biases = [None] * L if biases is None else list(biases)
        if len(biases) != L:
            raise ValueError(f"biases must have one entry a layer ({L}), got {len(biases)}")
        self.layers = [_Layer(num_classes, w, b) for w, b in zip(weights, biases, strict=True)]

    @property
    def needs_second_pass(self) -> bool:
        return any(a.needs_second_pass for a in self.layers)

    def _split(self, features) -> list:
        if isinstance(features, np.ndarray) or not _is_seq(features):
            raise TypeError(f"features must be a list or tuple of {len(self.layers)} batches")
        if len(features) != len(self.layers):
            raise ValueError(f"features must hold {len(self.layers)} layers, got {len(features)}")
        return list(features)

    def update(self, features: Sequence, labels) -> DeepNCAccumulator:
        """First pass: ``features`` a sequence of ``L`` batches ``(b, p_l)``, ``labels (b,)``."""
        for acc, H in zip(self.layers, self._split(features), strict=True):
            acc.update(H, labels)
        return self

    def update_second_pass(self, features: Sequence, labels=None) -> DeepNCAccumulator:
        """Second pass (NC4) for the layers whose weight has ``K`` rows."""
        for acc, H in zip(self.layers, self._split(features), strict=True):
            if acc.needs_second_pass:
                acc.update_second_pass(H, labels)
        return self

    @quiet
    def result(self, *, center: bool = True, ddof: int = 0) -> dict[str, np.ndarray]:
        """``{name: (L,) float64 array}``, keywords as :func:`ufm.metrics.deep_nc`; ``nc4``
        only after the second pass (when some weight has ``K`` rows)."""
        per = [acc.layer_result(center=center, ddof=ddof) for acc in self.layers]
        keys = list(dict.fromkeys(k for r in per for k in r))
        heads = [a for a in self.layers if a.needs_second_pass]
        if heads and not all(a._second_count for a in heads):
            keys = [k for k in keys if k != "nc4"]  # no (complete) second pass: no NC4
        return {k: np.array([r.get(k, np.nan) for r in per]) for k in keys}


def _is_seq(x) -> bool:
    return isinstance(x, Sequence) and not isinstance(x, str)
