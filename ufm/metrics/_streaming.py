r"""Streaming collapse metrics: features fed batch by batch, memory independent of N.

Each accumulator takes row batches (numpy, JAX, or anything with ``__array__``, e.g. a CPU
torch tensor), keeps counts, means and centred second moments in float64 numpy, and returns
the same numbers as the full-array functions of :mod:`ufm.metrics` (within 1e-10 in float64,
typically 1e-13, whatever ``jax_enable_x64`` says: the results are computed in numpy).
Memory is ``O(p^2 + K p)`` for ``p`` features and ``K`` classes (``O((p + n)^2)`` with ``n``
targets), whatever the number of samples ``N``.

Second moments are merged with the pairwise update of Chan, Golub and LeVeque (1979): a batch
of ``b`` rows with mean ``m_B`` and centred scatter ``S_B = sum (z - m_B)(z - m_B)^T`` joins
the running ``(N_A, m_A, S_A)`` as ::

    N = N_A + b,   delta = m_B - m_A,   m = m_A + delta b / N,
    S = S_A + S_B + delta delta^T N_A b / N,

which never forms ``sum z z^T - N m m^T``. All rows are first shifted by the mean of the first
batch, so the running means have the size of the spread, not of a common offset: with
features of mean 1e6 and spread 1 the translation-invariant metrics still agree with the
full-array functions to 1e-10. Metrics of *uncentred* quantities (NC4, ``nc3_alignment``,
``nc2_orthogonal``, the deep-NRC probe ``nrc4``) are as ill-conditioned as their definitions
under a large offset, here and in the full-array functions alike.

Passes. Everything here is one pass except the nearest-class-centre agreement NC4
(:class:`NCAccumulator`, :class:`DeepNCAccumulator`), which compares every sample with the
*final* class means; :func:`accumulate` runs both passes over a re-iterable source of
batches. The deep-NRC probe error is one pass: it needs only ``H^T H``, ``H^T Y_c`` and
``Y_c^T Y_c`` (:class:`DeepNRCAccumulator`).

NaN or inf in a batch makes NaN every metric that depends on it, as the full-array functions
do (never a finite number).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable

import numpy as np

from ._checks import check_option
from ._regression import FIT_GAMMA_METHODS, gamma_candidates

# ----------------------------------------------------------------------------------------------
# Helpers shared by the accumulators (numpy, float64)


def as_rows(x, name: str, width: int | None = None, column: bool = False) -> np.ndarray:
    """``x`` as a float64 ``(b, width)`` array (with ``column``, a 1-D ``x`` is one column).

    Accepts numpy and JAX arrays and anything with ``__array__``; rejects complex, boolean,
    string and object data with a ``TypeError`` naming ``name``.
    """
    try:
        a = np.asarray(x)
    except Exception as err:  # any failure of __array__
        raise TypeError(f"{name} must be a numeric array, got {type(x).__name__}") from err
    if a.dtype.kind not in "iuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {a.dtype}")
    if a.ndim == 1 and column:
        a = a[:, None]
    if a.ndim != 2:
        raise ValueError(f"{name} must be a 2-D batch of rows (b, features), got shape {a.shape}")
    if a.shape[1] == 0:  # no features: nothing to measure (not "collapsed")
        raise ValueError(f"{name} must have at least one column, got shape {a.shape}")
    if width is not None and a.shape[1] != width:
        raise ValueError(
            f"{name} must have {width} columns (as in the first batch), got shape {a.shape}"
        )
    return np.asarray(a, dtype=np.float64)


def quiet(method):
    """Run ``method`` with numpy's floating-point warnings off: NaN and inf in the data are
    tracked explicitly and turn the affected metrics into NaN."""

    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        with np.errstate(all="ignore"):
            return method(*args, **kwargs)

    return wrapper


def eigh_desc(S: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric eigen-decomposition, eigenvalues descending (numpy, float64)."""
    w, V = np.linalg.eigh(0.5 * (S + S.T))
    return w[::-1], V[:, ::-1]


def finite(*arrays) -> bool:
    """Whether every array given is free of NaN and inf."""
    return all(bool(np.all(np.isfinite(a))) for a in arrays)


def fro(A: np.ndarray) -> float:
    return float(np.sqrt(np.sum(A * A)))


def normalise(A: np.ndarray) -> np.ndarray:
    """``A / ||A||_F`` and 0 for ``A = 0`` (as ``safe_normalise``)."""
    n = fro(A)
    return A / n if n > 0 else A * 0.0


class Moments:
    """Running count, mean ``(q,)`` and centred scatter ``(q, q)`` of row batches ``(b, q)``,
    merged with Chan et al.'s pairwise update (module docstring). Float64, ``O(q^2)`` memory.

    The rows are first shifted by the mean of the first batch, so that the running means stay
    of the size of the spread and their rounding does not scale with a large common offset."""

    def __init__(self) -> None:
        self.count = 0
        self.shift: np.ndarray | None = None
        self.shifted_mean: np.ndarray | None = None
        self.scatter: np.ndarray | None = None

    @property
    def mean(self) -> np.ndarray:
        return self.shift + self.shifted_mean

    @quiet
    def update(self, Z: np.ndarray) -> None:
        b = Z.shape[0]
        if b == 0:
            return
        if self.shift is None:
            self.shift = Z.mean(axis=0)
        Z = Z - self.shift
        mB = Z.mean(axis=0)
        Zc = Z - mB
        SB = Zc.T @ Zc
        if self.count == 0:
            self.count, self.shifted_mean, self.scatter = b, mB, SB
            return
        n = self.count + b
        delta = mB - self.shifted_mean
        self.shifted_mean = self.shifted_mean + delta * (b / n)
        self.scatter = self.scatter + SB + np.outer(delta, delta) * (self.count * b / n)
        self.count = n

    def second_moment(self) -> np.ndarray:
        """Uncentred ``sum z z^T = S + N m m^T``."""
        m = self.mean
        return self.scatter + self.count * np.outer(m, m)


# ----------------------------------------------------------------------------------------------
# Running both passes


def accumulate(accumulator, batches: Callable[[], Iterable] | Iterable, **result_kwargs) -> dict:
    """Feed every batch to ``accumulator`` (both passes when it needs two) and return its result.

    Args:
        accumulator: a fresh :class:`NCAccumulator`, :class:`DeepNCAccumulator`,
            :class:`NRCAccumulator` or :class:`DeepNRCAccumulator`.
        batches: the source of batches; each batch is a tuple of the arguments of
            ``accumulator.update`` (e.g. ``(features, labels)``). Either a function of no
            argument returning a fresh iterable (``lambda: loader``, called once per pass) or a
            re-iterable object such as a list or a data loader. A one-shot iterator (a
            generator) is accepted only when one pass suffices.
        **result_kwargs: passed to ``accumulator.result``.

    Only the classification accumulators with a classifier (``weights``) need a second pass
    (NC4 compares each sample with the final class means); the second pass calls
    ``accumulator.update_second_pass(*batch)``.
    """
    two = bool(getattr(accumulator, "needs_second_pass", False))

    def source():
        return batches() if callable(batches) else batches

    first = source()
    if two and not callable(batches) and iter(first) is first:
        raise TypeError(
            "batches is a one-shot iterator, but NC4 needs a second pass over the data: pass a "
            "function returning a fresh iterable (e.g. lambda: make_loader()) or a list"
        )
    for batch in first:
        accumulator.update(*_as_tuple(batch))
    if two:
        for batch in source():
            accumulator.update_second_pass(*_as_tuple(batch))
    return accumulator.result(**result_kwargs)


def _as_tuple(batch) -> tuple:
    if not isinstance(batch, tuple | list):
        raise TypeError(
            f"each batch must be a tuple of update arguments, e.g. (features, labels); got "
            f"{type(batch).__name__}"
        )
    return tuple(batch)


# ----------------------------------------------------------------------------------------------
# NRC1-NRC3 (Andriopoulos et al., NeurIPS 2024)


class NRCAccumulator:
    r"""Streaming NRC1-NRC3 of Andriopoulos et al. (NeurIPS 2024, Sec. 3.1; docs/theory.md
    section 1).

    One pass. Keeps, in float64: the count ``M``, the mean and centred scatter of the features
    ``(d,)``, ``(d, d)`` (Chan et al. updates), the Gram ``sum_i h~_i h~_i^T`` of the
    normalised rows ``h~_i = h_i / ||h_i||`` (``(d, d)``; zero rows stay zero) and the mean and
    centred scatter of the targets ``(n,)``, ``(n, n)``. Memory ``O(d^2 + n^2)``.

    With ``V_perp`` the principal directions after the top ``n`` of the centred (``center=True``)
    or uncentred scatter and ``B_perp`` an orthonormal basis of the complement of ``W``'s row
    space:

    * ``nrc1 = tr(V_perp^T G~ V_perp) / M`` (equals :func:`ufm.metrics.nrc1`);
    * ``nrc2 = tr(B_perp^T G~ B_perp) / M`` (:func:`ufm.metrics.nrc2`);
    * ``nrc3 = ||W W^T/||W W^T|| - S/||S|| ||^2``, ``S = (Sigma^{1/2} - sqrt(gamma) I)_+``
      from the target covariance ``Sigma`` over ``M`` (:func:`ufm.metrics.nrc3`), at the
      ``gamma`` passed to :meth:`result` or, by default, at the fit of
      :func:`ufm.metrics.fit_gamma`.

    Each is a sum of non-negative terms, so there is no cancellation near collapse.

    Args:
        weights: the head ``W`` ``(n, d)`` (needed for NRC2 and NRC3; without it only NRC1).
        n: the target dimension for NRC1; defaults to ``W``'s rows, else the targets' columns.
        center: as in :func:`ufm.metrics.nrc1` / :func:`ufm.metrics.nrc3` (``False`` for a
            bias-free model: uncentred PCA and uncentred target second moment).

    Example::

        acc = NRCAccumulator(W)
        for H, Y in loader:
            acc.update(H, Y)
        acc.result()  # {"nrc1": ..., "nrc2": ..., "nrc3": ..., "gamma": ...}
    """

    needs_second_pass = False

    def __init__(self, weights=None, *, n: int | None = None, center: bool = True) -> None:
        self.weights = None if weights is None else as_rows(weights, "weights")
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
            raise ValueError(f"n must be an int >= 1 (the target dimension), got {n!r}")
        if n is not None and self.weights is not None and n != self.weights.shape[0]:
            raise ValueError(f"n = {n} differs from the rows of weights {self.weights.shape}")
        self.n = n if n is not None else None if weights is None else self.weights.shape[0]
        self.center = bool(center)
        self.features = Moments()
        self.targets = Moments()
        self.gram = None  # sum of h~ h~^T
        self.finite = True
        self._with_targets: bool | None = None

    @property
    def count(self) -> int:
        return self.features.count

    @quiet
    def update(self, features, targets=None) -> NRCAccumulator:
        """Add a batch: ``features (b, d)``; ``targets (b, n)`` (or ``(b,)`` for n = 1).

        Either give targets with every batch or never (then NRC3 is not computed)."""
        d = None if self.gram is None else self.gram.shape[0]
        if d is None and self.weights is not None:
            d = self.weights.shape[1]
        H = as_rows(features, "features", d)
        if self._with_targets is not None and self._with_targets != (targets is not None):
            raise ValueError("give targets with every batch or with none")
        self._with_targets = targets is not None
        if targets is not None:
            Y = as_rows(targets, "targets", self.n, column=True)
            if Y.shape[0] != H.shape[0]:
                raise ValueError(
                    f"targets must have as many rows as features ({H.shape[0]}), got {Y.shape}"
                )
            if self.n is None:
                self.n = Y.shape[1]
            self.targets.update(Y)
        self.finite = self.finite and finite(H)
        sq = np.sum(H * H, axis=1, keepdims=True)
        Ht = H / np.sqrt(np.where(sq > 0, sq, 1.0))
        G = Ht.T @ Ht
        self.gram = G if self.gram is None else self.gram + G
        self.features.update(H)
        return self

    @quiet
    def result(
        self, gamma=None, *, grid: int = 1000, upper=None, method: str = "exact"
    ) -> dict[str, float]:
        """``{"nrc1", "nrc2", "nrc3", "gamma"}`` as Python floats (NRC2/NRC3 only with weights,
        NRC3 only with targets). ``gamma=None`` fits it on ``[0, upper]`` (``upper`` defaults
        to ``lambda_min(Sigma)``) as :func:`ufm.metrics.fit_gamma` with the same ``method``
        (``"exact"``, or ``"linear_grid"`` on ``grid`` points)."""
        M = self.count
        if M == 0:
            raise ValueError("no samples: call update with at least one non-empty batch")
        if gamma is not None and float(gamma) < 0:
            raise ValueError(f"gamma must be >= 0, got {gamma!r}")
        check_option(method, "method", FIT_GAMMA_METHODS)
        if self.n is None:
            raise ValueError("the target dimension is unknown: pass n=, weights= or targets")
        nan = float("nan")
        G = self.gram
        out: dict[str, float] = {}
        if self.finite:
            S = self.features.scatter if self.center else self.features.second_moment()
            _, V = eigh_desc(S)
            Vp = V[:, min(self.n, V.shape[1]) :]
            out["nrc1"] = float(np.trace(Vp.T @ G @ Vp)) / M
        else:
            out["nrc1"] = nan
        W = self.weights
        if W is None:
            return out
        if self.finite and finite(W):
            Bp = _row_space_complement(W)
            out["nrc2"] = float(np.trace(Bp.T @ G @ Bp)) / M
        else:
            out["nrc2"] = nan
        if self.targets.count == 0:
            return out
        if W.shape[0] != self.n:
            raise ValueError(
                f"weights must have n = {self.n} rows (targets' columns), got {W.shape}"
            )
        Sy = self.targets.scatter if self.center else self.targets.second_moment()
        Sigma = Sy / M
        if not finite(Sigma, W, 0.0 if gamma is None else gamma, 0.0 if upper is None else upper):
            out["nrc3"] = out["gamma"] = nan
            return out
        if gamma is None:
            out["gamma"], out["nrc3"] = fit_gamma_from_cov(W, Sigma, grid, upper, method)
        else:
            out["nrc3"], out["gamma"] = nrc3_from_cov(W, Sigma, float(gamma)), float(gamma)
        return out


def _row_space_complement(W: np.ndarray) -> np.ndarray:
    """Orthonormal ``(d, d - r)`` basis of the complement of ``W``'s row space, ``r`` the number
    of eigenvalues of ``W W^T`` above ``max(n, d) eps e_max`` (as ``row_space_basis``)."""
    e = np.linalg.eigvalsh(W @ W.T)[::-1]
    r = int(np.sum(e > max(W.shape) * np.finfo(np.float64).eps * max(e[0], 0.0)))
    _, V = eigh_desc(W.T @ W)
    return V[:, r:]


def nrc3_from_cov(W: np.ndarray, Sigma: np.ndarray, gamma: float, spectrum=None) -> float:
    """NRC3 from the target covariance (numpy transcription of ``ufm.metrics.nrc3``);
    ``spectrum`` is ``eigh_desc(Sigma)`` when already known."""
    lam, U = eigh_desc(Sigma) if spectrum is None else spectrum
    g = np.maximum(np.sqrt(np.maximum(lam, 0.0)) - np.sqrt(gamma), 0.0)
    g[W.shape[1] :] = 0.0
    A = normalise(W @ W.T)
    B = normalise((U * g) @ U.T)
    return float(np.sum((A - B) ** 2))


def fit_gamma_from_cov(
    W: np.ndarray, Sigma: np.ndarray, grid: int, upper, method: str
) -> tuple[float, float]:
    """``(gamma, NRC3(gamma))`` minimising NRC3 on ``[0, upper]`` (numpy transcription of
    :func:`ufm.metrics.fit_gamma`, sharing its candidate points for ``method="exact"``)."""
    spectrum = eigh_desc(Sigma)
    lam, U = spectrum
    top = max(float(lam[-1] if upper is None else upper), 0.0)
    if method == "linear_grid":
        g = np.linspace(0.0, top, grid)
    else:
        A = normalise(W @ W.T)
        g = gamma_candidates(A, lam, U, np.sqrt(top), W.shape[1], xp=np) ** 2
        g = np.minimum(g, top)
    vals = np.array([nrc3_from_cov(W, Sigma, x, spectrum) for x in g])
    i = int(np.argmin(vals))
    return float(g[i]), float(vals[i])
