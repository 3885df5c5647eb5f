r"""Streaming NC1 per class (docs/theory.md section 4; :func:`ufm.metrics.nc1_per_class`).

See :mod:`ufm.metrics._streaming` for the update rule and the conventions. The other imbalance
metrics (:func:`ufm.metrics.minority_collapse`, :func:`ufm.metrics.gram_distance`) depend on the
classifier only, not on the features: apply them to ``W`` directly.
"""

from __future__ import annotations

import numpy as np

from .._validate import check_memory
from ._streaming import as_rows, eigh_desc, finite, quiet
from ._streaming_nc import _EPS, _inv_above, _labels, check_class_counts


class PerClassNC1Accumulator:
    r"""Streaming NC1 of each class, ``NC1_c = (1/K) tr(Sigma_W^(c) Sigma_B^+)``: the numbers of
    :func:`ufm.metrics.nc1_per_class` (within 1e-10 in float64), in one pass.

    Keeps, in float64, per-class counts ``(K,)``, means ``(K, d)`` and centred scatters
    ``S_c = sum_{i: y_i = c} (h_i - mu_c)(h_i - mu_c)^T`` ``(K, d, d)``, each merged with Chan et
    al.'s update ``S_c += S_c^B + (N_c b_c / (N_c + b_c)) delta_c delta_c^T`` (``delta_c`` the
    difference of the batch's and the running class-``c`` mean). Memory ``O(K d^2)``, whatever
    the number of samples (``check_memory`` refuses a ``K d^2`` that does not fit). At the end
    ``Sigma_W^(c) = S_c / n_c`` and ``Sigma_B`` is diagonalised through the ``K x K`` Gram of the
    centred means, as in :func:`ufm.metrics.nc1`; :meth:`result` also returns the pooled NC1
    (``sum_c S_c / N`` in place of ``S_c / n_c``), equal to :func:`ufm.metrics.nc1`.

    Rows are scaled by a power of two (exact) and shifted by the mean of the first batch, as in
    :class:`ufm.metrics.NCAccumulator`, so large offsets and scales cost no digits. NaN or inf in
    any batch makes every value NaN.

    Example::

        acc = PerClassNC1Accumulator(10)
        for H, y in loader:
            acc.update(H, y)
        acc.result()  # {"nc1_per_class": array of shape (10,), "nc1": float}
    """

    needs_second_pass = False

    def __init__(self, num_classes: int) -> None:
        if isinstance(num_classes, bool) or not isinstance(num_classes, int | np.integer):
            raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
        if num_classes < 2:
            raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
        self.num_classes = int(num_classes)
        check_memory(self.num_classes, np.int64, f"num_classes = {num_classes}: the counts (K,)")
        self.counts = np.zeros(self.num_classes, dtype=np.int64)
        self.dim: int | None = None
        self.scale_exp = 0
        self.shift: np.ndarray | None = None
        self.shifted_means: np.ndarray | None = None  # (K, d) class means minus shift
        self.scatters: np.ndarray | None = None  # (K, d, d) S_c
        self.finite = True

    @property
    def count(self) -> int:
        return int(self.counts.sum())

    @quiet
    def update(self, features, labels) -> PerClassNC1Accumulator:
        """Add ``features (b, d)`` with integer ``labels (b,)`` in ``[0, K)``."""
        H = as_rows(features, "features", self.dim)
        K = self.num_classes
        y = _labels(labels, K, H.shape[0])
        if H.shape[0] == 0:
            return self
        d = H.shape[1]
        ok = finite(H)
        self.finite = self.finite and ok
        exp = int(np.frexp(np.max(np.abs(H)))[1]) if ok else self.scale_exp
        if self.shift is None:
            check_memory(
                [(K, d, d)], np.float64, f"the per-class scatters (K, d, d) = ({K}, {d}, {d})"
            )
            self.scale_exp, self.dim = exp, d
            self.shift = np.ldexp(H, -exp).mean(axis=0)
            self.shifted_means, self.scatters = np.zeros((K, d)), np.zeros((K, d, d))
        elif exp > self.scale_exp:  # a larger batch: rescale what is kept (exact, by 2^-k)
            k = exp - self.scale_exp
            self.shift = np.ldexp(self.shift, -k)
            self.shifted_means = np.ldexp(self.shifted_means, -k)
            self.scatters, self.scale_exp = np.ldexp(self.scatters, -2 * k), exp
        H = np.ldexp(H, -self.scale_exp) - self.shift
        for c in np.unique(y):
            Hc = H[y == c]
            b, n0 = Hc.shape[0], int(self.counts[c])
            mB = Hc.mean(axis=0)
            R = Hc - mB
            delta = mB - self.shifted_means[c]
            n = n0 + b
            self.scatters[c] += R.T @ R + np.outer(delta, delta) * (n0 * b / n)
            self.shifted_means[c] += delta * (b / n)
            self.counts[c] = n
        return self

    def _check_classes(self) -> None:
        check_class_counts(self.count, self.counts, self.num_classes)

    @quiet
    def result(self, *, scale: str = "papyan") -> dict:
        """``{"nc1_per_class": (K,) float64 array, "nc1": float}``; ``scale`` as in
        :func:`ufm.metrics.nc1_per_class` (``"notebook"`` drops the 1/K)."""
        if scale not in ("papyan", "notebook"):
            raise ValueError(f"scale must be 'papyan' or 'notebook', got {scale!r}")
        self._check_classes()
        K, N = self.num_classes, self.count
        if not self.finite:
            return {"nc1_per_class": np.full(K, np.nan), "nc1": float("nan")}
        ms = self.shifted_means
        Md = ms - (self.counts @ ms) / N
        e, U = eigh_desc(Md @ Md.T / K)
        cut = max(K, Md.shape[1]) * _EPS * max(e[0], 0.0)
        e[K - 1] = 0.0  # Sigma_B has rank <= K - 1: the K-th is rounding noise
        V = (Md.T @ U) * (_inv_above(e, cut, 0.5) / np.sqrt(K))
        proj = np.einsum("ij,cij->cj", V, self.scatters @ V)  # (K classes, K eigenpairs)
        inv = _inv_above(e, cut, 1.0)
        div = K if scale == "papyan" else 1
        per = proj / self.counts[:, None] @ inv / div
        pooled = float(np.sum(proj, axis=0) / N @ inv) / div
        return {"nc1_per_class": per, "nc1": pooled}
