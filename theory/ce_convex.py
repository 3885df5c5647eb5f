r"""Certified global optimum of the cross-entropy classification UFM, any class sizes.

Objective (:class:`ufm.ClassificationUFM`, ``loss="ce"``; samples first, ``H (N, d)``,
``W (K, d)``, ``b (K,)``, class sizes ``n_1 .. n_K``, ``N = sum n_k``; data term averaged over
``N``, penalties *not* divided by ``N``; label smoothing ``delta`` in PyTorch's convention,
``q_k = (1 - delta) e_k + (delta/K) 1``)::

    L = (1/N) sum_i [lse(z_i) - q_{y_i} . z_i] + lambda_H/2 ||H||_F^2 + lambda_W/2 ||W||_F^2
        [+ lambda_b/2 ||b||^2],      z_i = W h_i + b.

Convex reformulation (docs/theory.md sections 0, 3 and 11). For ``lambda_H > 0`` every
stationary point is class-collapsed (:meth:`ufm.ClassificationUFM.reduction`), so with class
means ``Hbar (K, d)``, ``D = diag(n)`` and the class-mean logits ``Zbar = Hbar W^T (K, K)`` the
penalties read ``lambda_H/2 ||D^{1/2} Hbar||^2 + lambda_W/2 ||W||^2``, whose minimum over the
factorisations of ``X = D^{1/2} Zbar`` is ``tau ||X||_*`` with ``tau = sqrt(lambda_H lambda_W)``
(master lemma, section 0 item 1; no factor ``N``: ``||X||_*`` is the nuclear norm of the full
``N x K`` logit matrix ``E X``, ``E = Y D^{-1/2}`` orthonormal). Hence the UFM's infimum is

    P* = min_{X, b}  sum_k w_k l_k(X_k / sqrt(n_k) + b) + tau ||X||_* [+ lambda_b/2 ||b||^2],

``w_k = n_k / N``, ``l_k(z) = lse(z) - q_k . z``, a convex problem (the full ``N x K`` version
has the same minimum: averaging within classes never increases it). It equals the UFM's minimum
when ``d >= rank X*``. Every optimum has ``X* 1 = 0`` (the data gradient ``G`` has rows summing
to 0, so the subgradient ``-G D^{-1/2}/tau`` kills ``1`` and so does ``V^T``), i.e. the
classifier rows sum to zero and ``rank X* <= K - 1`` in every bias mode: ``d >= K - 1`` always
suffices. For smaller ``d`` the convex value is only a lower bound (``exact = False``).

Dual (Fenchel; ``lse*`` is the negative entropy on the simplex). With the logit dual ``G
(K, K)`` and ``p_k = G_k / w_k + q_k``::

    D(G) = sum_k w_k Ent(p_k) [- ||G^T 1||^2 / (2 lambda_b)]
    s.t.  p_k in the simplex,  ||D^{-1/2} G||_op <= tau,  [G^T 1 = 0 with a free bias].

Weak duality gives ``D(G) <= P* <= P(X, b)`` for every feasible pair; the returned ``gap`` is
``P(X, b) - D(G)`` at the dual point built from the primal gradient (centred across classes
for a free bias, scaled into the operator-norm ball), a bound on the loss error.

Method: accelerated proximal gradient (FISTA with backtracking and gradient restarts) in the
metric ``diag(N, 1)`` on ``(X, b)`` (the data term's Hessian is at most ``(1/N) I`` in ``X``
and ``I`` in ``b``; ``lse``'s at most ``I/2``), singular-value soft-thresholding as the prox of
``tau ||X||_*``; numpy float64, independent of the UFM solvers. Factors from ``X* = U S V^T``
(balanced, master lemma)::

    W W^T = sqrt(lambda_H/lambda_W) V S V^T,
    Hbar Hbar^T = sqrt(lambda_W/lambda_H) D^{-1/2} U S U^T D^{-1/2}.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from ufm._validate import check_int

from ._ce_solver import _certify, _polish, _positive, _primal, _rank, _setup, _solve
from .imbalanced_mse import class_sizes_of

__all__ = [
    "CEOptimum",
    "MinorityCollapseThreshold",
    "coincidence_level",
    "minority_collapse_threshold",
    "optimum",
    "optimum_of",
]


class CEOptimum(NamedTuple):
    """Certified optimum of the cross-entropy UFM (numpy float64; ``K x K`` Grams).

    Attributes:
        WWT: ``W W^T``. class_mean_gram: ``Hbar Hbar^T`` (uncentred class means). logits:
        class-mean logits ``Zbar + 1 b^T`` (row ``c``: ``W mu_c + b``). bias: ``b`` (centred,
        ``b . 1 = 0``: with a free bias any shift ``b + c 1`` is also optimal). loss: the primal
        value ``P``. rank: rank of ``X* = D^{1/2} Zbar``. zero: ``W = H = 0`` is optimal.
        gap: the duality gap ``P - D >= P - P*``. exact: ``feature_dim >= rank`` (the convex
        value is the UFM's minimum; otherwise a lower bound). how: in words.
        singular_values: of ``X*`` (descending). dual: the dual point ``G (K, K)``.
        classifier: a ``W`` with the optimal ``W W^T``, ``V (S sqrt(lambda_H/lambda_W))^{1/2}``
        ``(K, K)`` (rows: the classes' classifier rows in one orthonormal frame).
        X: ``D^{1/2} Zbar`` (a warm start for :func:`optimum`).
    """

    WWT: np.ndarray
    class_mean_gram: np.ndarray
    logits: np.ndarray
    bias: np.ndarray
    loss: float
    rank: int
    zero: bool
    gap: float
    exact: bool
    how: str
    singular_values: np.ndarray
    dual: np.ndarray
    classifier: np.ndarray
    X: np.ndarray


def optimum(
    class_sizes,
    lambda_H,
    lambda_W,
    feature_dim: int | None = None,
    bias="none",
    label_smoothing=0.0,
    *,
    tol: float = 1e-12,
    max_iter: int = 200_000,
    init: tuple[np.ndarray, np.ndarray] | None = None,
) -> CEOptimum:
    """The certified global optimum of the cross-entropy UFM (module docstring).

    Args:
        class_sizes: ``K >= 2`` positive sizes ``n_k`` (integers, or any positive reals).
        lambda_H, lambda_W: ``> 0`` (concrete).
        feature_dim: ``d``; ``None`` for ``d >= K - 1``. Where ``d`` is below the optimum's
            rank, ``exact`` is ``False`` and ``loss`` is a lower bound on the UFM's minimum.
        bias: ``"none"``, ``"free"`` or ``lambda_b >= 0`` (as in :class:`ufm.ClassificationUFM`).
        label_smoothing: ``delta`` in ``[0, 1)``.
        tol: duality gap to reach (absolute, on the loss).
        max_iter: iteration cap; if reached, ``gap`` (and ``how``) say what was certified.
        init: a warm start ``(X (K, K), b (K,))`` (``X = D^{1/2} Zbar``).
    """
    st = _setup(class_sizes, lambda_H, lambda_W, bias, label_smoothing)
    K = st.w.shape[0]
    d = None if feature_dim is None else check_int(feature_dim, "feature_dim", minimum=1)
    max_iter = check_int(max_iter, "max_iter", minimum=1)
    if isinstance(tol, bool) or not (np.ndim(tol) == 0 and float(tol) >= 0):
        raise ValueError(f"tol must be a number >= 0, got {tol!r}")
    if init is None:
        X, b = np.zeros((K, K)), np.zeros(K)
        if st.mode != "none":
            # The bias-only optimum of the free problem: softmax(b) = sum_k w_k q_k.
            b = np.log(st.w @ st.q)
            b -= b.mean()
            if st.mode == "reg":
                b = b / (1 + st.lb)
    else:
        X, b = np.array(init[0], np.float64), np.array(init[1], np.float64)
    # Proximal gradient to identify the rank, then Newton on the factored problem at that
    # rank; the duality gap certifies the result (a wrong rank cannot pass it).
    total, budget, target = 0, 500, max(tol, 1e-7)
    while True:
        X, b, gap, G, iters = _solve(st, X, b, target, min(budget, max_iter - total))
        total += iters
        Xp, bp = _polish(st, X, b, _rank(X))
        gap_p, G_p = _certify(st, Xp, bp)
        if gap_p <= max(gap, tol):
            X, b, gap, G = Xp, bp, gap_p, G_p
        if gap <= tol or total >= max_iter:
            break
        budget, target = 2 * budget, max(tol, target / 100)
    iters = total
    return _finish(st, X, b, gap, G, iters, d, float(lambda_H), float(lambda_W))


def _finish(st, X, b, gap, G, iters, d, lH, lW) -> CEOptimum:
    U, s, Vt = np.linalg.svd(X)
    tiny = 1e-9 * max(1.0, float(s[0]))
    r = int(np.sum(s > tiny))
    s = np.where(s > tiny, s, 0.0)  # rounding left by the SVD of a rank-r matrix
    WWT = math.sqrt(lH / lW) * (Vt.T * s) @ Vt
    UD = U / st.sqn[:, None]
    gram = math.sqrt(lW / lH) * (UD * s) @ UD.T
    Zbar = X / st.sqn[:, None]
    b = np.zeros_like(b) if st.mode == "none" else b - b.mean() * (st.mode == "free")
    loss = _primal(st, X, b)
    exact = d is None or d >= r
    how = (
        f"certified convex computation, duality gap {gap:.1e} ({iters} proximal-gradient "
        "iterations and a Newton polish)"
    )
    if not exact:
        how += f"; feature_dim = {d} < rank {r}: the value is only a lower bound"
    Wf = Vt.T * np.sqrt(s * math.sqrt(lH / lW))
    return CEOptimum(
        WWT, gram, Zbar + b[None, :], b, loss, r, r == 0, float(gap), exact, how, s, G, Wf, X
    )


def optimum_of(problem, **kwargs) -> CEOptimum:
    """:func:`optimum` for a cross-entropy :class:`ufm.ClassificationUFM` (concrete, unbatched):
    its class sizes, lambdas, bias, ``label_smoothing`` and ``feature_dim``."""
    if getattr(problem, "loss", None) != "ce":
        raise ValueError("optimum_of needs a cross-entropy ufm.ClassificationUFM (loss='ce')")
    problem.check_unbatched()
    counts = class_sizes_of(problem)
    bias = problem.bias_mode if problem.bias_mode != "reg" else float(problem.lambda_b)
    return optimum(
        counts,
        float(problem.lambda_H),
        float(problem.lambda_W),
        problem.feature_dim,
        bias,
        float(getattr(problem, "label_smoothing", 0.0)),
        **kwargs,
    )


class MinorityCollapseThreshold(NamedTuple):
    """The cross-entropy minority-collapse threshold of a two-level step imbalance.

    Attributes:
        lambda_threshold: the smallest ``lambda = lambda_H = lambda_W`` at which the ``K_B``
        minority classifier rows coincide (midpoint of the final bracket).
        bracket: ``(lo, hi)``, rows distinct at ``lo`` and coincident at ``hi``.
        lambda_zero: the smallest ``lambda`` at which ``W = H = 0`` is optimal (a bracket of
        the search, bisected to the same precision).
        collapsed_nonzero: whether the minority rows coincide while nonzero (a window
        ``[lambda_threshold, lambda_zero)``), rather than only at the zero solution.
        max_gap: the largest duality gap of the certified optima used.
        predicted: the exact level ``(1 - delta) sqrt(n_B) / N`` (:func:`coincidence_level`),
        computed independently of the bisection.
    """

    lambda_threshold: float
    bracket: tuple[float, float]
    lambda_zero: float
    collapsed_nonzero: bool
    max_gap: float
    predicted: float


def _minority_spread(o: CEOptimum, minority: np.ndarray) -> float:
    """``max_{j in B} ||w_j - mean_B w|| / max_k ||w_k||`` (0 at the zero solution)."""
    Wf = o.classifier
    top = float(np.linalg.norm(Wf, axis=1).max())
    if top == 0:
        return 0.0
    WB = Wf[minority]
    return float(np.linalg.norm(WB - WB.mean(axis=0), axis=1).max()) / top


def minority_collapse_threshold(
    K_A: int,
    K_B: int,
    ratio,
    *,
    n_B=1.0,
    bias="none",
    label_smoothing=0.0,
    rtol: float = 1e-6,
    coincide_tol: float = 1e-7,
) -> MinorityCollapseThreshold:
    """The smallest ``lambda = lambda_H = lambda_W`` at which the minority classifier rows of
    the cross-entropy UFM coincide, for ``K_A`` classes of ``n_A = ratio n_B`` samples and
    ``K_B >= 2`` of ``n_B`` (minority collapse, Fang et al., PNAS 2021), by bisection in
    ``log lambda`` on certified optima (:func:`optimum`, ``feature_dim >= K - 1``).

    "Coincide": ``max_{j in B} ||w_j - mean_B w|| <= coincide_tol max_k ||w_k||`` at the
    certified optimum (or ``W = 0``). The bracket ends where the rows are distinct below and
    coincide above, with ``hi/lo - 1 <= rtol``. Only the product matters: the threshold in
    ``c = lambda_H lambda_W`` is ``lambda_threshold^2``, and it scales as ``n_B^{-1/2}``
    (``n -> a n`` multiplies the nuclear-norm term by ``sqrt(a)``).
    """
    K_A = check_int(K_A, "K_A", minimum=1)
    K_B = check_int(K_B, "K_B", minimum=2)
    R = float(ratio)
    if not (math.isfinite(R) and R > 1):
        raise ValueError(f"ratio must be a finite number > 1 (n_A / n_B), got {ratio!r}")
    nB = _positive(n_B, "n_B")
    sizes = np.array([R * nB] * K_A + [nB] * K_B)
    minority = np.arange(K_A, K_A + K_B)
    gaps = []

    def solve(lam, init=None):
        o = optimum(sizes, lam, lam, None, bias, label_smoothing, init=init)
        gaps.append(o.gap)
        return o

    def bisect(lo, hi, o_lo, test):
        while hi / lo - 1 > rtol:
            mid = math.sqrt(lo * hi)
            o = solve(mid, (o_lo.X, o_lo.bias))
            if test(o):
                hi = mid
            else:
                lo, o_lo = mid, o
        return lo, hi

    # The zero solution: first a lambda where W = 0, then the smallest such.
    hi = 1.0 / math.sqrt(sizes.sum())
    while not solve(hi).zero:
        hi *= 2
    lo = hi / 2
    o_lo = solve(lo)
    while o_lo.zero:
        lo /= 2
        o_lo = solve(lo)
    z_lo, z_hi = bisect(lo, hi, o_lo, lambda o: o.zero)
    # Rows distinct well below; coincident at the zero solution.
    lo = z_lo / 10
    o_lo = solve(lo)
    while _minority_spread(o_lo, minority) <= coincide_tol:
        lo /= 10
        if lo < 1e-12 * z_lo:
            raise ValueError("the minority rows coincide at every lambda tried")
        o_lo = solve(lo)
    lo, hi = bisect(lo, z_hi, o_lo, lambda o: _minority_spread(o, minority) <= coincide_tol)
    thr = math.sqrt(lo * hi)
    return MinorityCollapseThreshold(
        thr,
        (lo, hi),
        math.sqrt(z_lo * z_hi),
        hi < z_lo,
        float(max(gaps)),
        coincidence_level(sizes, nB, label_smoothing),
    )


def coincidence_level(class_sizes, size, label_smoothing=0.0) -> float:
    r"""``sqrt(lambda_H lambda_W)`` from which the classifier rows of the ``m >= 2`` classes of
    size ``n_j = size`` coincide, for the cross-entropy UFM in every bias mode:

        sqrt(lambda_H lambda_W) >= (1 - delta) sqrt(n_j) / N.

    Derivation (docs/theory.md section 11). The problem is invariant under permutations of the
    group ``B`` (rows and logit columns together) and its optimum is unique, so ``X*`` commutes
    with them; the ``B``-internal vectors (supported on ``B``, summing to 0) form one
    irreducible block, on which ``X* = c_B I``, and ``X*`` maps the rest to the rest: the
    nuclear norm is ``(m - 1)|c_B| + ||X_rest||_*``. The rows of ``W`` in ``B`` coincide iff
    ``c_B = 0``. There the logits have no ``B``-internal part (``D`` is constant on ``B``,
    ``1 b^T`` has none), so neither has the softmax, and the logit gradient's ``B``-internal
    part is ``-(n_j/N)(1 - delta)`` (from ``q``); with ``D^{-1/2}`` it is
    ``-(1 - delta) sqrt(n_j)/N``, and ``c_B = 0`` is optimal iff this is at most ``tau`` in
    absolute value. MSE gives the same level with ``delta = 0`` (docs/theory.md section 9).
    """
    n = np.asarray(class_sizes, np.float64)
    delta = float(label_smoothing)
    if int(np.sum(n == float(size))) < 2:
        raise ValueError(f"size must be the size of at least two classes, got {size!r}")
    return (1 - delta) * math.sqrt(float(size)) / float(n.sum())
