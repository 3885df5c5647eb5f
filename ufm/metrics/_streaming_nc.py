r"""Streaming NC1-NC4 of one layer (Papyan, Han, Donoho, PNAS 2020; docs/theory.md section 4).

See :mod:`ufm.metrics._streaming` for the update rule and the conventions. NC1-NC3 need one
pass; NC4 needs a second one (it compares each sample with the *final* class means).
"""

from __future__ import annotations

import numpy as np

from .._validate import check_memory
from ._streaming import as_rows, eigh_desc, finite, fro, normalise, quiet

_EPS = np.finfo(np.float64).eps


def _labels(labels, num_classes: int, rows: int) -> np.ndarray:
    try:
        y = np.asarray(labels)
    except Exception as err:
        raise TypeError(f"labels must be an integer array, got {type(labels).__name__}") from err
    if y.dtype.kind not in "iu":
        raise TypeError(f"labels must be integers, got dtype {y.dtype}")
    if y.shape != (rows,):
        raise ValueError(
            f"labels must have shape (b,) = ({rows},) like the features, got {y.shape}"
        )
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(
            f"labels must lie in [0, num_classes) = [0, {num_classes}), got values in "
            f"[{y.min()}, {y.max()}]"
        )
    return y.astype(np.intp)


def _ratio(a: float, b: float) -> float:
    """``a / b`` with 0 for ``b = 0`` (the 0/0 convention of ``safe_div``)."""
    return a / b if b > 0 else 0.0


def _etf_dist(A: np.ndarray) -> float:
    K = A.shape[0]
    return fro(normalise(A @ A.T) - (np.eye(K) - np.full((K, K), 1.0 / K)) / np.sqrt(K - 1.0))


def _frame_dist(A: np.ndarray) -> float:
    K = A.shape[0]
    return fro(normalise(A @ A.T) - np.eye(K) / np.sqrt(K))


def _inv_above(e: np.ndarray, cut: float, power: float) -> np.ndarray:
    keep = e > cut
    return np.where(keep, np.where(keep, e, 1.0) ** (-power), 0.0)


_NC2_KEYS = ("equinorm", "equiangular", "maxangle", "etf")


def _nc2_rows(A: np.ndarray, ddof: int) -> dict[str, float]:
    K = A.shape[0]
    sq = np.sum(A * A, axis=1, keepdims=True)
    An = A / np.sqrt(np.where(sq > 0, sq, 1.0))
    cos = (An @ An.T)[~np.eye(K, dtype=bool)]
    norms = np.sqrt(sq[:, 0])
    return {
        "equinorm": _ratio(float(np.std(norms, ddof=ddof)), float(np.mean(norms))),
        "equiangular": float(np.std(cos, ddof=ddof)),
        "maxangle": float(np.mean(np.abs(cos + 1.0 / (K - 1)))),
        "etf": _etf_dist(A),
    }


def check_class_counts(count: int, counts: np.ndarray, num_classes: int) -> None:
    """Refuse a result before any sample, or with a class that has none."""
    if count == 0:
        raise ValueError("no samples: call update with at least one non-empty batch")
    empty = np.flatnonzero(counts == 0)
    if empty.size:
        raise ValueError(
            f"every class needs at least one sample: classes {empty.tolist()} of "
            f"num_classes = {num_classes} have none"
        )


class NCAccumulator:
    r"""Streaming NC1-NC4 of one layer: the numbers of :func:`ufm.metrics.nc1` ...
    :func:`ufm.metrics.nc4` (docs/theory.md section 4), memory ``O(d^2 + K d)``.

    First pass (:meth:`update`): per-class counts ``(K,)`` and means ``(K, d)``, and the pooled
    within-class scatter ``S_W = sum_i (h_i - mu_{y_i})(h_i - mu_{y_i})^T`` ``(d, d)``, merged
    class by class with Chan et al.'s update ``S_W += S_W^B + sum_c (N_c b_c / (N_c + b_c))
    delta_c delta_c^T`` (``delta_c`` the difference of the batch's and the running class-c
    mean). From these: ``Sigma_W = S_W / N``, ``mu_G = sum_c N_c mu_c / N``, NC1
    (``(1/K) tr(Sigma_W Sigma_B^+)``, through the ``K x K`` Gram of the centred means, as
    :func:`ufm.metrics.nc1`), NC2 and NC3.

    Second pass (:meth:`update_second_pass`, only with ``weights``): **NC4**, the fraction of
    samples whose decision ``argmax_c (w_c^T h + b_c)`` differs from the nearest class mean
    ``argmin_c ||h - mu_c||``, against the final means of the first pass. It is the only
    metric that needs a second pass; :func:`accumulate` runs both.

    Args:
        num_classes: ``K >= 2``.
        weights: the classifier ``W`` ``(K, d)``, optional (NC2 of the weights, NC3, NC4).
        bias: ``b`` ``(K,)``, optional (NC4; default 0).

    NaN or inf in the features makes every metric NaN; in ``W``, NC2-NC4; in ``b``, NC4 (as
    the full-array functions).

    Example::

        acc = NCAccumulator(10, W, b)
        for H, y in loader():
            acc.update(H, y)
        for H, y in loader():
            acc.update_second_pass(H)
        acc.result()  # {"nc1", "nc2_equinorm_means", ..., "nc3", "nc4"}
    """

    def __init__(self, num_classes: int, weights=None, bias=None) -> None:
        if isinstance(num_classes, bool) or not isinstance(num_classes, int | np.integer):
            raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
        if num_classes < 2:
            raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
        K = self.num_classes = int(num_classes)
        check_memory(K, np.int64, f"num_classes = {K}: the class counts (K,)")
        self.weights = None if weights is None else as_rows(weights, "weights")
        self._check_head()
        if bias is not None and self.weights is None:
            raise ValueError("bias given without weights")
        self.bias = None
        if bias is not None:
            self.bias = as_rows(bias, "bias", column=True)[:, 0]
            if np.ndim(bias) != 1 or self.bias.shape != (self.weights.shape[0],):
                raise ValueError(
                    f"bias must have shape ({self.weights.shape[0]},), got {np.shape(bias)}"
                )
        self.dim = None if self.weights is None else self.weights.shape[1]
        self.counts = np.zeros(K, dtype=np.int64)
        # The rows are scaled by 2^-scale_exp (exact), the power of two just above the largest
        # entry seen so far (a larger batch rescales what is kept), so that the scatter's
        # squares neither overflow nor underflow; every metric here is invariant to that scale,
        # and ``means`` undoes it.
        self.scale_exp = 0
        self.shift: np.ndarray | None = None  # mean of the first (scaled) batch (see Moments)
        self.shifted_means: np.ndarray | None = None  # class means minus shift
        self.within: np.ndarray | None = None  # S_W
        self.finite = True
        self._disagree = 0
        self._logits_finite = True
        self._second_count = 0
        self._frozen = False

    def _check_head(self) -> None:
        W, K = self.weights, self.num_classes
        if W is not None and W.shape[0] != K:
            raise ValueError(f"weights must have shape (K, d) with K = {K}, got {W.shape}")

    @property
    def needs_second_pass(self) -> bool:
        """True with a ``(K, d)`` classifier (NC4)."""
        return self.weights is not None and self.weights.shape[0] == self.num_classes

    @property
    def count(self) -> int:
        return int(self.counts.sum())

    @property
    def means(self) -> np.ndarray | None:
        """The ``(K, d)`` class means so far (None before the first batch)."""
        if self.shift is None:
            return None
        return np.ldexp(self.shift + self.shifted_means, self.scale_exp)

    @quiet
    def update(self, features, labels) -> NCAccumulator:
        """First pass: add ``features (b, d)`` with integer ``labels (b,)`` in ``[0, K)``."""
        if self._frozen:
            raise ValueError("update after update_second_pass: the first pass is over")
        H = as_rows(features, "features", self.dim)
        y = _labels(labels, self.num_classes, H.shape[0])
        if H.shape[0] == 0:
            return self
        K, d = self.num_classes, H.shape[1]
        ok = finite(H)
        self.finite = self.finite and ok
        exp = int(np.frexp(np.max(np.abs(H)))[1]) if ok else self.scale_exp
        if self.shift is None:
            self.scale_exp = exp
            self.dim, self.shift = d, np.ldexp(H, -exp).mean(axis=0)
            self.shifted_means, self.within = np.zeros((K, d)), np.zeros((d, d))
        elif exp > self.scale_exp:  # a larger batch: rescale what is kept (exact, by 2^-k)
            k = exp - self.scale_exp
            self.shift, self.shifted_means = (
                np.ldexp(self.shift, -k),
                np.ldexp(self.shifted_means, -k),
            )
            self.within, self.scale_exp = np.ldexp(self.within, -2 * k), exp
        H = np.ldexp(H, -self.scale_exp) - self.shift
        nB = np.bincount(y, minlength=K)
        sums = np.zeros((K, d))
        np.add.at(sums, y, H)
        mB = sums / np.maximum(nB, 1)[:, None]
        Hc = H - mB[y]
        n = self.counts + nB
        w = self.counts * (nB / np.maximum(n, 1))
        delta = mB - self.shifted_means
        self.within = self.within + Hc.T @ Hc + (delta * w[:, None]).T @ delta
        self.shifted_means = self.shifted_means + delta * (nB / np.maximum(n, 1))[:, None]
        self.counts = n
        return self

    @quiet
    def update_second_pass(self, features, labels=None) -> NCAccumulator:
        """Second pass (NC4): add ``features (b, d)`` again, after every first-pass batch.
        ``labels`` is accepted (so the same batches serve both passes) and not used."""
        if not self.needs_second_pass:
            raise ValueError("NC4 needs a (K, d) classifier: construct with weights=W")
        if self.means is None:
            raise ValueError("update_second_pass before any first-pass update")
        self._check_classes()
        self._frozen = True
        H = as_rows(features, "features", self.dim)
        if labels is not None:
            _labels(labels, self.num_classes, H.shape[0])
        self.finite = self.finite and finite(H)
        logits = H @ self.weights.T + (0.0 if self.bias is None else self.bias)
        # The nearest class mean among the shifted samples and means: the same distances
        # without the offset the features may share (which would cancel every digit).
        X, C = np.ldexp(H, -self.scale_exp) - self.shift, self.shifted_means
        d2 = np.sum(X**2, axis=1, keepdims=True) - 2 * X @ C.T + np.sum(C**2, axis=1)
        self._disagree += int(np.sum(np.argmax(logits, axis=1) != np.argmin(d2, axis=1)))
        self._logits_finite = self._logits_finite and finite(logits)  # else no argmax
        self._second_count += H.shape[0]
        return self

    def _check_classes(self) -> None:
        check_class_counts(self.count, self.counts, self.num_classes)

    def _nc4(self) -> float | None:
        """NC4 after a complete second pass, None without one."""
        if not self._second_count:
            return None
        if self._second_count != self.count:
            raise ValueError(
                f"the second pass saw {self._second_count} samples, the first {self.count}: "
                "feed the same batches to both passes"
            )
        return self._disagree / self.count if self._logits_finite else float("nan")

    def _nc1(self, Md: np.ndarray) -> float:
        """``tr(Sigma_W Sigma_B^+)`` without the 1/K (as ``_nc1_trace``)."""
        N, (K, d) = self.count, Md.shape
        e, U = eigh_desc(Md @ Md.T / K)
        cut = max(K, d) * _EPS * max(e[0], 0.0)
        e[K - 1] = 0.0  # Sigma_B has rank <= K - 1: the K-th is rounding noise (as _nc1_trace)
        V = (Md.T @ U) * (_inv_above(e, cut, 0.5) / np.sqrt(K))
        per = np.einsum("ij,ik,kj->j", V, self.within, V) / N
        return float(np.sum(per * _inv_above(e, cut, 1.0)))

    def _stats(self):
        """Uncentred class means and centred ``Mdot`` (from the shifted means: no cancellation)."""
        self._check_classes()
        ms = self.shifted_means  # both scaled by 2^-scale_exp: the metrics do not see it
        return self.shift + ms, ms - (self.counts @ ms) / self.count

    @quiet
    def result(
        self, *, scale: str = "papyan", ddof: int = 0, nc3_variant: str = "papyan", center=True
    ) -> dict[str, float]:
        """The metrics as Python floats: ``nc1``; ``nc2_<key>`` for each key of
        :func:`ufm.metrics.nc2` (only the ``*_means`` keys without weights); ``nc3`` (with
        weights); ``nc4`` (after a complete second pass). Keywords as in :func:`ufm.metrics.nc1`
        (``scale``), :func:`ufm.metrics.nc2` (``ddof``) and :func:`ufm.metrics.nc3`
        (``variant`` as ``nc3_variant``, ``center``)."""
        if scale not in ("papyan", "notebook"):
            raise ValueError(f"scale must be 'papyan' or 'notebook', got {scale!r}")
        if nc3_variant not in ("papyan", "zhu"):
            raise ValueError(f"nc3_variant must be 'papyan' or 'zhu', got {nc3_variant!r}")
        mu, Md = self._stats()
        K, W, nan = self.num_classes, self.weights, float("nan")
        out = {"nc1": self._nc1(Md) / (K if scale == "papyan" else 1) if self.finite else nan}
        ok = self.finite and (W is None or finite(W))
        for name, A in (("means", Md), ("weights", W)):
            if A is not None:
                rows = _nc2_rows(A, ddof) if ok else dict.fromkeys(_NC2_KEYS, nan)
                out |= {f"nc2_{k}_{name}": v for k, v in rows.items()}
        if W is None:
            return out
        Mc = Md if center else mu
        if not ok:
            out["nc3"] = nan
        elif nc3_variant == "papyan":
            out["nc3"] = float(np.sum((normalise(W) - normalise(Mc)) ** 2))
        else:
            out["nc3"] = _etf_dist_pair(W, Mc)
        nc4 = self._nc4()
        if nc4 is not None:
            out["nc4"] = nc4 if ok and (self.bias is None or finite(self.bias)) else nan
        return out

    def layer_result(self, *, center: bool = True, ddof: int = 0) -> dict[str, float]:
        """The keys of :func:`ufm.metrics.deep_nc` for this layer (see :class:`DeepNCAccumulator`);
        ``nc4`` is NaN for a weight without ``K`` rows and absent before the second pass."""
        mu, Md = self._stats()
        K, W = self.num_classes, self.weights
        keys = ["nc1", "nc2", "nc2_equinorm", "nc2_orthogonal"]
        if W is not None:
            keys += ["nc3_alignment", "nc3"]
            if W.shape[0] != K or self._second_count:
                keys.append("nc4")
        if not (self.finite and finite(0.0 if W is None else W, self._bias_or_zero())):
            return dict.fromkeys(keys, float("nan"))
        norms = np.sqrt(np.sum(Md**2, axis=1))
        out = {
            "nc1": self._nc1(Md) / K,
            "nc2": _etf_dist(Md),
            "nc2_equinorm": _ratio(float(np.std(norms, ddof=ddof)), float(np.mean(norms))),
            "nc2_orthogonal": _frame_dist(mu),
        }
        if W is not None:
            out["nc3_alignment"] = _outside_fraction(W, mu)
            if W.shape[0] == K:
                out["nc3"] = float(np.sum((normalise(W) - normalise(Md if center else mu)) ** 2))
            else:
                out["nc3"] = out["nc3_alignment"]
            if "nc4" in keys:
                out["nc4"] = self._nc4() if W.shape[0] == K else float("nan")
        return out

    def _bias_or_zero(self):
        return 0.0 if self.bias is None else self.bias


def _etf_dist_pair(W: np.ndarray, M: np.ndarray) -> float:
    """Zhu et al.'s NC3: ``|| W M^T/||W M^T|| - (I - J)/sqrt(K-1) ||``."""
    K = W.shape[0]
    return fro(normalise(W @ M.T) - (np.eye(K) - np.full((K, K), 1.0 / K)) / np.sqrt(K - 1.0))


def _outside_fraction(W: np.ndarray, M: np.ndarray) -> float:
    """``||W (I - P)||^2 / ||W||^2``, ``P`` the projector onto the row span of ``M`` (K x p)."""
    e, U = eigh_desc(M @ M.T)
    Q = (M.T @ U) * _inv_above(e, max(M.shape) * _EPS * max(e[0], 0.0), 0.5)
    R = W - (W @ Q) @ Q.T
    return _ratio(float(np.sum(R**2)), float(np.sum(W**2)))
