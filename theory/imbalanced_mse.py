r"""Exact optima of the classification UFM with MSE loss and any class sizes ``n_1 .. n_K``.

Objective (:class:`ufm.ClassificationUFM`, ``loss="mse"``; samples first, ``H (N, d)``,
``W (K, d)``, ``b (K,)``, one-hot targets ``Y (N, K)``, ``N = n_1 + ... + n_K``; the data term is
averaged over ``N``, the feature penalty is *not* divided by ``N``)::

    L = 1/(2N) ||H W^T + 1 b^T - Y||_F^2 + lambda_H/2 ||H||_F^2 + lambda_W/2 ||W||_F^2
        [+ lambda_b/2 ||b||^2]

with ``bias="none"`` (no ``b``), ``"free"`` (unregularised ``b``) or a number ``lambda_b``.

Master lemma (singular-value soft-thresholding of the target; Andriopoulos et al., NeurIPS 2024,
Thm 4.1 for regression; Dang et al., ICML 2023, for imbalanced MSE classification): for a fixed
product ``Z = H W^T`` the smallest penalty is ``sqrt(lambda_H lambda_W) ||Z||_*``, so the optimal
``Z`` soft-thresholds the singular values ``sigma_i`` of the target ``T`` at

    tau = N sqrt(lambda_H lambda_W),      Z* = sum_{i kept} (sigma_i - tau) u_i v_i^T,

keeping the largest ``min(d, K)`` terms with ``sigma_i > tau`` (Eckart-Young for ``d < K``), and
``L* = (1/N) [sum_{kept} (tau sigma_i - tau^2/2) + sum_{others} sigma_i^2/2]``. The factors are
balanced: ``W W^T = sqrt(lambda_H/lambda_W) sum_{kept} (sigma_i - tau) v_i v_i^T``.

Class space. ``Y = E diag(sqrt(n))`` with ``E = Y diag(n)^{-1/2}`` orthonormal columns, and every
target below has rows constant within a class, ``T = E A`` with a ``K x K`` matrix ``A``. The SVD
``A = P diag(sigma) Q^T`` gives ``T``'s (left vectors ``E P``), so every optimum is
class-collapsed and, with ``s_i = (sigma_i - tau)_+`` on the kept terms,

    W W^T = sqrt(lambda_H/lambda_W) Q diag(s) Q^T,
    mu mu^T = sqrt(lambda_W/lambda_H) D P diag(s) P^T D,     D = diag(n)^{-1/2},
    logits  = D P diag(s) Q^T + 1 b^T      (class-mean logits, row c: W mu_c + b).

* ``bias="none"``: ``A = diag(sqrt(n))``, ``sigma_k = sqrt(n_k)``. Class ``k``'s classifier row
  and class mean are zero exactly when ``sqrt(n_k) <= tau``, i.e. when

      n_k <= N^2 lambda_H lambda_W        (class k dies at  lambda_H lambda_W = n_k / N^2),

  otherwise ``W W^T = sqrt(lambda_H/lambda_W) diag((sqrt(n_k) - tau)_+)`` (an orthogonal frame
  with unequal norms), logit ``L_kk = (1 - tau/sqrt(n_k))_+`` and per-class self-duality
  ``w_k = sqrt(n_k lambda_H/lambda_W) mu_k`` (Dang et al., ICML 2023, bias-free imbalanced MSE).
  Balanced classes recover ``kappa = K sqrt(n lambda_H lambda_W) < 1``.
* ``bias="free"``: ``b = n/N`` and the target is centred, ``A = diag(sqrt(n)) - sqrt(n) n^T / N``
  (``= diag(sqrt(n)) (I - 1 n^T / N)``). Its Gram ``A^T A = diag(n) - n n^T / N`` is a rank-one
  downdate of ``diag(n)``; its eigenvalues ``mu = sigma^2`` are ``0`` (vector ``1``), each distinct
  size ``n_j`` of multiplicity ``m_j`` with multiplicity ``m_j - 1`` (vectors supported on that
  group, summing to zero), and one root of the secular equation

      sum_k n_k / (n_k - mu) = 0

  in each gap between consecutive distinct sizes (the left side increases from ``-inf`` to
  ``+inf`` there; eigenvector ``v_k = n_k / (n_k - mu)`` up to scale, touching every class)
  (:func:`centred_spectrum`). Hence class ``k``'s row dies at ``lambda_H lambda_W =
  max(mu_1, n_k [m_k >= 2]) / N^2``, ``mu_1`` the largest secular root, and the rows of a group of
  equal sizes ``n_j`` coincide from ``n_j / N^2`` on (minority collapse, Fang et al., PNAS 2021;
  for MSE Dang et al., ICML 2023): :func:`minority_collapse_window`.
* ``bias = lambda_b > 0``: for a fixed ``b`` the optimum soft-thresholds ``T_b = E A_b`` with
  ``A_b = diag(sqrt(n)) - sqrt(n) b^T``, so ``b`` minimises the strongly convex, ``C^1`` function

      g(b) = (1/N) sum_i phi(sigma_i(A_b)) + lambda_b/2 ||b||^2,
      phi(s) = tau s - tau^2/2 (s > tau), s^2/2 (s <= tau),

  whose stationarity condition is ``lambda_b b = (1/N) R_b^T sqrt(n)`` with ``R_b = A_b -
  SVT_tau(A_b) = P diag(min(sigma, tau)) Q^T`` (the projection of ``A_b`` on the spectral-norm
  ball of radius ``tau``). Two regimes are closed (``g`` is strictly convex, so a ``b`` that
  meets the condition is the optimum): every direction kept,

      b = tau sqrt(n) / (N lambda_b) = sqrt(lambda_H lambda_W) sqrt(n) / lambda_b,

  whenever the then symmetric ``A_b = diag(sqrt(n)) - (tau/(N lambda_b)) sqrt(n) sqrt(n)^T`` has
  every eigenvalue ``> tau`` (so ``R_b = tau I``); none kept, ``b = n / (N (1 + lambda_b))``
  (the zero optimum), whenever ``sigma_1(A_b) <= tau`` there (so ``R_b = A_b``). Otherwise ``b``
  is computed to rounding by accelerated gradient descent on ``g`` (gradient Lipschitz
  ``1 + lambda_b``, strong convexity ``lambda_b``) started from the closer closed form; the
  returned ``stationarity`` is ``||grad g(b)||``.
  Balanced classes recover ``theory.classification.optimum``'s regularised-bias formulas.

Width. ``bias="none"`` or a regularised bias need ``d >= K`` for every direction, ``"free"``
``d >= K - 1``; with a smaller ``d`` the none/free optima keep the top ``d`` soft-thresholded
values (exact by Eckart-Young; the Grams are then not unique when a kept and a dropped singular
value tie, flagged by ``unique``), and a regularised bias is exact when its ``d >= K`` optimum has
rank ``<= d`` (a ``ValueError`` otherwise).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ufm._linalg import full_precision
from ufm._validate import bias_option, check_int, float_dtype, is_concrete, positive_scalar

__all__ = [
    "ImbalancedOptimum",
    "MinorityCollapseWindow",
    "centred_spectrum",
    "class_sizes_of",
    "minority_collapse_window",
    "optimum",
    "optimum_of",
    "secular_roots",
]


class ImbalancedOptimum(NamedTuple):
    """Exact optimum of the MSE classification UFM with class sizes ``n`` (``K x K`` Grams).

    Attributes:
        WWT: ``W W^T`` ``(K, K)``.
        class_mean_gram: ``mu mu^T`` of the uncentred class means ``(K, K)``.
        logits: class-mean logits ``W mu_c + b`` (row ``c``) ``(K, K)``.
        bias: ``b`` ``(K,)`` (zeros without bias).
        loss: optimal value.
        rank: rank of ``Z* = H W^T``.
        zero: whether ``W = H = 0`` is optimal.
        threshold: ``tau = N sqrt(lambda_H lambda_W)``.
        singular_values: ``sigma_i`` of the (centred, or ``b``-shifted) target, descending
            ``(K,)``.
        kept: which ``sigma_i`` are kept ``(K,)``.
        survives: class ``k``'s classifier row is nonzero ``(K,)``.
        death_level: the value of ``lambda_H lambda_W`` from which row ``k`` is zero, for ``d``
            at least the target's rank (``n_k / N^2`` without bias; ``max(mu_1, n_k [m_k >= 2])
            / N^2`` with a free bias; NaN for a regularised bias).
        unique: whether the Grams are unique (no tie at the width cut ``d``).
        stationarity: ``||grad g(b)||`` for a regularised bias (0 otherwise).
    """

    WWT: jax.Array
    class_mean_gram: jax.Array
    logits: jax.Array
    bias: jax.Array
    loss: jax.Array
    rank: jax.Array
    zero: jax.Array
    threshold: jax.Array
    singular_values: jax.Array
    kept: jax.Array
    survives: jax.Array
    death_level: jax.Array
    unique: jax.Array
    stationarity: jax.Array


class MinorityCollapseWindow(NamedTuple):
    """The MSE minority-collapse window of a two-level step imbalance (free bias).

    Attributes:
        c_low: the window's lower end ``n_B / N^2`` of ``lambda_H lambda_W``.
        c_high: the window's upper end ``K n_A n_B / N^3`` (the window is
            ``c_low <= lambda_H lambda_W < c_high``).
        lambda_low: ``sqrt(c_low)``, the lower end for ``lambda_H = lambda_W = lambda``.
        lambda_high: ``sqrt(c_high)``, the upper end for ``lambda_H = lambda_W = lambda``.
        coupled_eigenvalue: ``mu_c = K n_A n_B / N``, the coupled eigenvalue of the centred
            target's Gram (its squared singular value).
    """

    c_low: float
    c_high: float
    lambda_low: float
    lambda_high: float
    coupled_eigenvalue: float


def _sizes(class_sizes) -> np.ndarray:
    """Concrete positive integer class sizes, ``K >= 2`` (``int64``)."""
    try:
        arr = np.asarray(class_sizes)
    except (TypeError, ValueError) as err:
        raise TypeError(
            f"class_sizes must be a 1-D sequence of integers, got {class_sizes!r}"
        ) from err
    if arr.ndim != 1 or arr.shape[0] < 2:
        raise ValueError(f"class_sizes must be a 1-D sequence of K >= 2 sizes, got {class_sizes!r}")
    is_int = arr.dtype.kind in "iu"
    if not is_int and not (
        arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr))
    ):
        raise ValueError(f"class_sizes must be integers, got {class_sizes!r}")
    if np.any(arr < 1):
        raise ValueError(f"class_sizes must all be >= 1 (no empty class), got {arr.tolist()}")
    return arr.astype(np.int64)


def secular_roots(class_sizes) -> np.ndarray:
    """The roots of ``f(mu) = sum_k n_k / (n_k - mu) = 0`` (float64, ascending), one in each gap
    ``(n_(j), n_(j+1))`` between consecutive distinct sizes, by bisection (``f`` increases from
    ``-inf`` to ``+inf`` on each gap)."""
    n = _sizes(class_sizes).astype(np.float64)
    distinct, mult = np.unique(n, return_counts=True)

    def f(mu):
        return np.sum(mult * distinct / (distinct - mu))

    roots = []
    for lo, hi in zip(distinct[:-1], distinct[1:], strict=True):
        a, b = lo, hi
        for _ in range(200):
            mid = 0.5 * (a + b)
            if mid <= a or mid >= b:
                break
            if f(mid) < 0:
                a = mid
            else:
                b = mid
        roots.append(0.5 * (a + b))
    return np.array(roots, dtype=np.float64)


def centred_spectrum(class_sizes) -> np.ndarray:
    """Eigenvalues (descending, float64) of ``diag(n) - n n^T / N``, the Gram of the centred
    one-hot target in class space (squared singular values of ``(I - 1 1^T/N) Y``), from the
    secular equation: ``0``, each distinct size ``n_j`` with multiplicity ``m_j - 1``, and
    :func:`secular_roots`."""
    n = _sizes(class_sizes)
    distinct, mult = np.unique(n, return_counts=True)
    vals = [0.0] + [float(v) for v, m in zip(distinct, mult, strict=True) for _ in range(m - 1)]
    vals += secular_roots(n).tolist()
    return np.sort(np.array(vals, dtype=np.float64))[::-1]


def _death_levels(n: np.ndarray, mode: str) -> np.ndarray:
    N = float(n.sum())
    if mode == "none":
        return n / N**2
    if mode == "free":
        distinct, mult = np.unique(n, return_counts=True)
        roots = secular_roots(n)
        mu1 = float(roots[-1]) if roots.size else 0.0
        m_of = dict(zip(distinct.tolist(), mult.tolist(), strict=True))
        own = np.array([float(v) if m_of[int(v)] >= 2 else 0.0 for v in n])
        return np.maximum(mu1, own) / N**2
    return np.full(n.shape, np.nan)


def _soft_threshold(A, sqn, tau, d, lH, lW):
    """Soft-threshold the class-space target ``A`` at ``tau``, top ``d`` terms kept."""
    K = A.shape[0]
    P, sig, Qt = jnp.linalg.svd(A)
    kept = (sig > tau) & (jnp.arange(K) < d)
    s = jnp.where(kept, sig - tau, 0.0)
    N = jnp.sum(sqn**2)
    WWT = jnp.sqrt(lH / lW) * (Qt.T * s) @ Qt
    PD = P / sqn[:, None]
    gram = jnp.sqrt(lW / lH) * (PD * s) @ PD.T
    Zbar = (PD * s) @ Qt
    loss = jnp.sum(jnp.where(kept, tau * sig - tau**2 / 2, sig**2 / 2)) / N
    if d < K:
        unique = ~((sig[d] > tau) & jnp.isclose(sig[d], sig[d - 1]))
    else:
        unique = jnp.asarray(True)
    return WWT, gram, Zbar, loss, sig, kept, unique


def _reg_bias(sqn, tau, lb, iters: int):
    """``b`` minimising ``g`` (module docstring) by accelerated gradient descent; returns
    ``(b, ||grad g(b)||)``. A traced ``lambda_b = 0`` gives the free-bias ``b = n/N``."""
    N = jnp.sum(sqn**2)
    D = jnp.diag(sqn)
    positive = lb > 0
    lb = jnp.where(positive, lb, 1.0)

    def grad(b):
        A = D - jnp.outer(sqn, b)
        P, sig, Qt = jnp.linalg.svd(A)
        R = (P * jnp.minimum(sig, tau)) @ Qt
        return lb * b - R.T @ sqn / N

    # Closed-form regimes as the start: every direction kept, or none.
    b_all = tau * sqn / (N * lb)
    b_none = sqn**2 / (N * (1 + lb))
    b0 = jnp.where(jnp.linalg.norm(grad(b_all)) <= jnp.linalg.norm(grad(b_none)), b_all, b_none)
    L, m = 1 + lb, lb
    beta = (jnp.sqrt(L) - jnp.sqrt(m)) / (jnp.sqrt(L) + jnp.sqrt(m))
    eps = jnp.finfo(sqn.dtype).eps
    tol = 16 * eps * (1 + lb)

    def cond(state):
        i, b, _, g = state
        return (i < iters) & (jnp.linalg.norm(g) > tol)

    def body(state):
        i, b, y, _ = state
        b_new = y - grad(y) / L
        y_new = b_new + beta * (b_new - b)
        return i + 1, b_new, y_new, grad(b_new)

    _, b, _, g = jax.lax.while_loop(cond, body, (0, b0, b0, grad(b0)))
    return jnp.where(positive, b, sqn**2 / N), jnp.where(positive, jnp.linalg.norm(g), 0.0)


@full_precision
def optimum(
    class_sizes,
    lambda_H,
    lambda_W,
    feature_dim: int,
    bias="none",
    dtype=None,
    *,
    max_iters: int = 200_000,
) -> ImbalancedOptimum:
    """The exact optimum of the MSE classification UFM with class sizes ``n = class_sizes``
    (see the module docstring for the formulas of every bias mode).

    Args:
        class_sizes: ``K >= 2`` positive integers (concrete).
        lambda_H: the feature regularisation, a scalar ``> 0`` (may be traced).
        lambda_W: the weight regularisation, a scalar ``> 0`` (may be traced).
        feature_dim: ``d >= 1``.
        bias: ``"none"``, ``"free"`` or a number ``lambda_b >= 0`` (as in
            :class:`ufm.ClassificationUFM`).
        dtype: float32 or float64 (default: JAX's default float).
        max_iters: iteration cap of the regularised-bias computation.
    """
    n = _sizes(class_sizes)
    K = n.shape[0]
    d = check_int(feature_dim, "feature_dim", minimum=1)
    dt = float_dtype(dtype)
    lH = positive_scalar(lambda_H, "lambda_H", dt, "the exact optimum")
    lW = positive_scalar(lambda_W, "lambda_W", dt, "the exact optimum")
    mode, lb = bias_option(bias, dt)
    if mode == "reg" and is_concrete(lb) and float(lb) == 0:
        mode = "free"
    nn = jnp.asarray(n, dt)
    sqn = jnp.sqrt(nn)
    N = jnp.sum(nn)
    tau = N * jnp.sqrt(lH * lW)
    zero_st = jnp.zeros((), dt)
    if mode == "none":
        A, b = jnp.diag(sqn), jnp.zeros((K,), dt)
    elif mode == "free":
        b = nn / N
        A = jnp.diag(sqn) - jnp.outer(sqn, b)
    else:
        b, zero_st = _reg_bias(sqn, tau, lb, max_iters)
        A = jnp.diag(sqn) - jnp.outer(sqn, b)
    dd = d if mode != "reg" else K
    WWT, gram, Zbar, loss, sig, kept, unique = _soft_threshold(A, sqn, tau, dd, lH, lW)
    rank = jnp.sum(kept)
    if mode == "reg":
        loss = loss + lb / 2 * jnp.sum(b**2)
        if d < K and is_concrete(rank) and int(rank) > d:
            raise ValueError(
                f"feature_dim = {d} < K = {K} with a regularised bias: the optimum for "
                f"feature_dim >= K has rank {int(rank)} > {d}, and the width-{d} optimum has no "
                "closed form here"
            )
    diag = jnp.diagonal(WWT)
    survives = diag > 1e3 * jnp.finfo(dt).eps * jnp.maximum(jnp.max(diag), jnp.finfo(dt).tiny)
    if mode == "none":
        survives = _none_survives(n, tau, d)
    logits = Zbar + b[None, :]
    death = jnp.asarray(_death_levels(n, mode), dt)
    return ImbalancedOptimum(
        WWT,
        gram,
        logits,
        b,
        loss,
        rank,
        rank == 0,
        tau,
        sig,
        kept,
        survives,
        death,
        unique,
        zero_st,
    )


def _none_survives(n: np.ndarray, tau, d: int):
    """Bias-free survivors: ``sqrt(n_k) > tau`` and ``k`` among the ``d`` largest classes (the
    SVD's order: descending size, ties in index order)."""
    order = np.argsort(-n, kind="stable")
    top = np.zeros(n.shape, bool)
    top[order[:d]] = True
    return (jnp.sqrt(jnp.asarray(n, tau.dtype)) > tau) & jnp.asarray(top)


def class_sizes_of(problem) -> np.ndarray:
    """``n_k`` of a :class:`ufm.ClassificationUFM` (concrete labels), every class nonempty."""
    counts = np.bincount(np.asarray(problem.labels), minlength=problem.num_classes)
    if np.any(counts == 0):
        raise ValueError(f"every class needs a sample; class sizes are {counts.tolist()}")
    return counts


def optimum_of(problem) -> ImbalancedOptimum:
    """:func:`optimum` for an MSE :class:`ufm.ClassificationUFM` with any class sizes."""
    if getattr(problem, "loss", None) != "mse":
        raise ValueError("optimum_of needs an MSE ufm.ClassificationUFM (loss='mse')")
    problem.check_unbatched()
    bias = problem.bias_mode if problem.bias_mode != "reg" else problem.lambda_b
    return optimum(
        class_sizes_of(problem),
        problem.lambda_H,
        problem.lambda_W,
        problem.feature_dim,
        bias,
        problem.dtype,
    )


def minority_collapse_window(K_A: int, n_A: int, K_B: int, n_B: int) -> MinorityCollapseWindow:
    """The window of ``c = lambda_H lambda_W`` in which the ``K_B`` minority classifier rows are
    equal and nonzero, for ``K_A`` majority classes of ``n_A`` samples and ``K_B >= 2`` minority
    classes of ``n_B < n_A``, MSE with a free bias and ``d >= K - 1`` (minority collapse: Fang
    et al., PNAS 2021; MSE: Dang et al., ICML 2023).

    The centred target's Gram ``diag(n) - n n^T/N`` has eigenvalues ``0``, ``n_A`` (multiplicity
    ``K_A - 1``, vectors on the majority summing to zero), ``n_B`` (``K_B - 1``, on the minority)
    and the coupled root of ``K_A n_A/(n_A - mu) + K_B n_B/(n_B - mu) = 0``,
    ``mu_c = K n_A n_B / N`` (``K = K_A + K_B``, ``N = K_A n_A + K_B n_B``; ``n_B < mu_c < n_A``),
    with vector ``K_B 1_A - K_A 1_B``. Every vector but the minority-internal ones is constant on
    the minority, so the minority rows of ``W`` coincide iff ``sqrt(n_B) <= tau = N sqrt(c)``, and
    are nonzero iff the coupled value survives, ``sqrt(mu_c) > tau``:

        n_B / N^2 <= lambda_H lambda_W < K n_A n_B / N^3.
    """
    K_A = check_int(K_A, "K_A", minimum=1)
    K_B = check_int(K_B, "K_B", minimum=2)
    n_A = check_int(n_A, "n_A", minimum=1)
    n_B = check_int(n_B, "n_B", minimum=1)
    if n_B >= n_A:
        raise ValueError(f"n_B must be < n_A (the minority is smaller), got n_A={n_A}, n_B={n_B}")
    K, N = K_A + K_B, K_A * n_A + K_B * n_B
    mu_c = K * n_A * n_B / N
    c_low, c_high = n_B / N**2, mu_c / N**2
    return MinorityCollapseWindow(
        float(c_low), float(c_high), float(np.sqrt(c_low)), float(np.sqrt(c_high)), float(mu_c)
    )
