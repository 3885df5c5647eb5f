r"""Exact (sympy) closed form of the regression Unconstrained Feature Model optimum.

Source
------
Andriopoulos, Dong, Guo, Zhao, Ross, "The Prevalence of Neural Collapse in Neural Multivariate
Regression", NeurIPS 2024 (arXiv 2409.04180), eq. (1) and Theorem 4.1, together with the
general-regime extension derived for this project (``docs/theory.md``, section 1):
rank-deficient covariance, ``c`` above some eigenvalues, ``n > d`` and the bias-free variant.

Problem (samples-first API convention)
--------------------------------------
Targets ``Y`` of shape ``(M, n)``, features ``H`` ``(M, d)``, weights ``W`` ``(n, d)``, bias
``b`` ``(n,)``.  The objective is

.. math::

    L(H, W, b) = \frac{1}{2M}\|H W^T + 1 b^T - Y\|_F^2
                 + \frac{\lambda_H}{2M}\|H\|_F^2 + \frac{\lambda_W}{2}\|W\|_F^2 .

With ``bias=True`` the bias is free (unregularised), ``b^* = \bar y`` and
``\Sigma = \frac1M (Y - \bar y)^T (Y - \bar y)`` (divided by ``M``, not ``M - 1``).
With ``bias=False`` the bias is absent (``b = 0``), ``Y`` is not centred and
``\Sigma = Y^T Y / M`` is the uncentred second moment; everything else is identical.

Closed form
-----------
Let ``c = \lambda_H \lambda_W`` and ``\Sigma = U \operatorname{diag}(l_1 \ge \dots \ge l_n) U^T``.
Eigen-direction ``i`` survives iff ``l_i > c``; at most ``d`` directions fit, so the rank is
``r = \min(d, \#\{i : l_i > c\})``.  Then

* ``W W^T = \sqrt{\lambda_H/\lambda_W}\, \sum_{i \le r} (\sqrt{l_i} - \sqrt{c})\, u_i u_i^T``
  (``= \sqrt{\lambda_H/\lambda_W} (\Sigma^{1/2} - \sqrt c I)_+`` when ``r`` is not capped by
  ``d``);
* ``W = (\lambda_H/\lambda_W)^{1/4}\, U_r
  \operatorname{diag}(\sqrt{\sqrt{l_i} - \sqrt c})_{i\le r}\, R`` with ``R`` the first ``r`` rows
  of ``I_d`` (any ``R`` with orthonormal rows is optimal);
* ``H = \sqrt{\lambda_W/\lambda_H}\, (Y - \bar y)\, \Sigma^{+1/2} W`` with ``\Sigma^{+1/2}`` the
  pseudo-inverse square root (use ``Y`` instead of ``Y - \bar y`` when ``bias=False``);
* predictions ``H W^T + 1 b^T = (Y - \bar y) \sum_{i \le r} (1 - \sqrt{c / l_i}) u_i u_i^T
  + 1 \bar y^T``;
* optimal loss ``L^* = \sum_{i \le r} (\sqrt{c\, l_i} - c/2) + \sum_{i > r} l_i / 2``.

When an eigenvalue equals ``c`` exactly it is dropped (both branches of ``L^*`` agree there).
When ``n > d`` and ``l_d = l_{d+1} > c`` the minimiser is not unique; one of them is returned.

Everything is computed in exact arithmetic: the eigen-decomposition uses ``sympy.eigenvects``
with exact Gram-Schmidt inside each eigenspace, the ordering of the eigenvalues and the
comparisons ``l_i > c`` are exact comparisons of real algebraic numbers (a zero test by
minimal polynomial, then a sign), and ``gradient_vanishes_exact`` proves ``\nabla L = 0``
symbolically without any numeric tolerance.  Spectra that sympy can only express with complex
radicals (an irreducible cubic with three real roots, "casus irreducibilis") are rejected with
an explicit error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import sympy

from ._exact_arith import (
    as_exact_matrix,
    as_feature_dim,
    as_positive_rational,
    clean,
    exact_compare,
    exact_sqrt,
    is_exactly_zero,
    symmetric_eigh,
    to_float,
)

__all__ = [
    "ExactRegressionOptimum",
    "gradient_vanishes_exact",
    "objective_exact",
    "objective_gradient_exact",
    "regression_optimum_exact",
    "to_float",
]


# --------------------------------------------------------------------------------------------
# The exact optimum
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExactRegressionOptimum:
    """Exact global minimiser of the regression UFM (all entries are sympy expressions).

    Attributes:
        Sigma: ``(n, n)`` target covariance (centred if ``bias=True``, else ``Y^T Y / M``).
        eigenvalues: eigenvalues of ``Sigma`` in descending order (exact).
        WWT: ``(n, n)`` Gram matrix ``W W^T`` of the optimal weights.
        W: ``(n, d)`` optimal weights (with ``R`` = first ``r`` rows of ``I_d``).
        H: ``(M, d)`` optimal features.
        b: ``(n, 1)`` optimal bias (``ybar``, or zeros when ``bias=False``).
        predictions: ``(M, n)`` optimal predictions ``H W^T + 1 b^T``.
        loss: optimal value of the objective.
        rank: ``r = min(d, #{i : l_i > c})``.
        c: ``lambda_H * lambda_W``.
        eigenvectors: ``(n, n)`` orthonormal eigenvectors of ``Sigma`` (columns, same order).
    """

    Sigma: sympy.Matrix
    eigenvalues: tuple[sympy.Expr, ...]
    WWT: sympy.Matrix
    W: sympy.Matrix
    H: sympy.Matrix
    b: sympy.Matrix
    predictions: sympy.Matrix
    loss: sympy.Expr
    rank: int
    c: sympy.Rational
    eigenvectors: sympy.Matrix


def _target_moments(
    targets: sympy.Matrix, bias: bool
) -> tuple[sympy.Matrix, sympy.Matrix, sympy.Matrix]:
    """Return (centred-or-raw targets, bias column, Sigma)."""
    m, n = targets.shape
    if bias:
        ybar = sympy.Matrix([sum(targets[:, j]) / m for j in range(n)])
        centred = targets - sympy.ones(m, 1) * ybar.T
    else:
        ybar = sympy.zeros(n, 1)
        centred = targets
    sigma = (centred.T * centred) / m
    return centred, ybar, sigma


def regression_optimum_exact(
    targets: Any,
    lambda_H: Any,
    lambda_W: Any,
    feature_dim: int,
    bias: bool = True,
) -> ExactRegressionOptimum:
    """Exact closed-form global minimiser of the regression UFM objective.

    Args:
        targets: ``(M, n)`` targets with rational entries (ints, ``Fraction``, sympy Rationals or
            strings such as ``"1/3"``); floats are rejected.
        lambda_H: feature regularisation, rational > 0 (floats rejected).
        lambda_W: weight regularisation, rational > 0 (floats rejected).
        feature_dim: feature dimension ``d >= 1``.
        bias: whether the model has a free (unregularised) bias.

    Returns:
        An :class:`ExactRegressionOptimum`.

    Raises:
        ValueError: invalid input, or sympy cannot decide an eigenvalue ordering/comparison or
            express the spectrum of ``Sigma`` with real radicals.
    """
    y = as_exact_matrix(targets, "targets", rational=True)
    lam_h = as_positive_rational(lambda_H, "lambda_H")
    lam_w = as_positive_rational(lambda_W, "lambda_W")
    d = as_feature_dim(feature_dim)
    m, n = y.shape
    c = lam_h * lam_w
    sqrt_c = sympy.sqrt(c)

    centred, ybar, sigma = _target_moments(y, bool(bias))
    eigenvalues, eigenvectors = symmetric_eigh(sigma)

    n_above = 0
    for value in eigenvalues:
        if exact_compare(value, c, "an eigenvalue of Sigma minus c = lambda_H * lambda_W") > 0:
            n_above += 1
        else:
            break
    r = min(d, n_above)

    ratio = lam_h / lam_w
    ratio_quarter = ratio ** sympy.Rational(1, 4)  # (lambda_H / lambda_W)^(1/4)
    inv_quarter = 1 / ratio_quarter  # (lambda_W / lambda_H)^(1/4)
    ratio_half = sympy.sqrt(ratio)

    W = sympy.zeros(n, d)
    H = sympy.zeros(m, d)
    WWT = sympy.zeros(n, n)
    proj_sum = sympy.zeros(n, n)  # sum_{i<=r} (1 - sqrt(c/l_i)) u_i u_i^T
    loss = sympy.Integer(0)
    for i, (value, u) in enumerate(zip(eigenvalues, eigenvectors, strict=True)):
        if i < r:
            root = exact_sqrt(value)  # sqrt(l_i)
            gap = clean(root - sqrt_c)  # sqrt(l_i) - sqrt(c) > 0
            amp = exact_sqrt(gap)  # sqrt(sqrt(l_i) - sqrt(c))
            outer = (u * u.T).applyfunc(clean)
            W[:, i] = (u * (ratio_quarter * amp)).applyfunc(clean)
            # H e_i = sqrt(lW/lH) Yc Sigma^{+1/2} W e_i = (lW/lH)^{1/4} amp / sqrt(l_i) * Yc u_i
            h_scale = clean(inv_quarter * amp / root)
            H[:, i] = (centred * u).applyfunc(lambda e, s=h_scale: clean(e * s))
            WWT += outer * clean(ratio_half * gap)
            proj_sum += outer * clean(1 - sqrt_c / root)
            loss += clean(sqrt_c * root) - c / 2
        else:
            loss += value / 2
    WWT = WWT.applyfunc(clean)
    predictions = (centred * proj_sum.applyfunc(clean)).applyfunc(clean) + sympy.ones(m, 1) * ybar.T
    predictions = predictions.applyfunc(clean)
    U = sympy.Matrix.hstack(*eigenvectors)

    return ExactRegressionOptimum(
        Sigma=sigma,
        eigenvalues=tuple(eigenvalues),
        WWT=WWT,
        W=W,
        H=H,
        b=ybar,
        predictions=predictions,
        loss=clean(loss),
        rank=r,
        c=c,
        eigenvectors=U,
    )


# --------------------------------------------------------------------------------------------
# Objective, gradient and the exact first-order check
# --------------------------------------------------------------------------------------------


def _parse_point(
    targets: Any, lambda_H: Any, lambda_W: Any, H: Any, W: Any, b: Any, bias: bool
) -> tuple[sympy.Matrix, sympy.Rational, sympy.Rational, sympy.Matrix, sympy.Matrix, sympy.Matrix]:
    y = as_exact_matrix(targets, "targets", rational=True)
    lam_h = as_positive_rational(lambda_H, "lambda_H")
    lam_w = as_positive_rational(lambda_W, "lambda_W")
    h = as_exact_matrix(H, "H", rational=False)
    w = as_exact_matrix(W, "W", rational=False)
    m, n = y.shape
    if h.rows != m:
        raise ValueError(f"H must have M = {m} rows (samples first), got shape {h.shape}")
    if w.shape != (n, h.cols):
        raise ValueError(f"W must have shape (n, d) = ({n}, {h.cols}), got {w.shape}")
    if b is None:
        b_col = sympy.zeros(n, 1)
    else:
        if isinstance(b, sympy.MatrixBase):
            b_col = as_exact_matrix(b.reshape(len(b), 1), "b", rational=False)
        else:
            b_col = as_exact_matrix(
                [[e] for e in np.asarray(b, dtype=object).ravel()], "b", rational=False
            )
        if b_col.shape != (n, 1):
            raise ValueError(f"b must have n = {n} entries, got {b_col.rows}")
    if not bias and any(is_exactly_zero(e) is not True for e in b_col):
        raise ValueError("b must be None or zero when bias=False")
    return y, lam_h, lam_w, h, w, b_col


def objective_exact(
    targets: Any, lambda_H: Any, lambda_W: Any, H: Any, W: Any, b: Any = None, bias: bool = True
) -> sympy.Expr:
    """Exact value of the regression UFM objective ``L(H, W, b)`` (``b`` ignored if None)."""
    y, lam_h, lam_w, h, w, b_col = _parse_point(targets, lambda_H, lambda_W, H, W, b, bias)
    m = y.rows
    e = h * w.T + sympy.ones(m, 1) * b_col.T - y
    fro2 = lambda a: sum(x**2 for x in a)  # noqa: E731
    value = fro2(e) / (2 * m) + lam_h / (2 * m) * fro2(h) + lam_w / 2 * fro2(w)
    return clean(value)


def objective_gradient_exact(
    targets: Any,
    lambda_H: Any,
    lambda_W: Any,
    H: Any,
    W: Any,
    b: Any,
    bias: bool = True,
) -> tuple[sympy.Matrix, sympy.Matrix, sympy.Matrix | None]:
    """Exact gradients ``(dL/dH, dL/dW, dL/db)`` of the objective at ``(H, W, b)``.

    With ``E = H W^T + 1 b^T - Y``: ``dL/dH = (E W + lambda_H H) / M``,
    ``dL/dW = E^T H / M + lambda_W W`` and ``dL/db = E^T 1 / M`` (an ``(n, 1)`` column).
    With ``bias=False`` there is no bias variable: ``b`` must be None or zero and the third
    entry of the result is None.  Entries are expanded but not simplified.
    """
    y, lam_h, lam_w, h, w, b_col = _parse_point(targets, lambda_H, lambda_W, H, W, b, bias)
    m = y.rows
    e = h * w.T + sympy.ones(m, 1) * b_col.T - y
    grad_h = ((e * w + lam_h * h) / m).applyfunc(sympy.expand)
    grad_w = (e.T * h / m + lam_w * w).applyfunc(sympy.expand)
    grad_b = (e.T * sympy.ones(m, 1) / m).applyfunc(sympy.expand) if bias else None
    return grad_h, grad_w, grad_b


def gradient_vanishes_exact(
    optimum: ExactRegressionOptimum,
    targets: Any,
    lambda_H: Any,
    lambda_W: Any,
    bias: bool = True,
) -> bool:
    """True iff every entry of the gradient at ``optimum`` is exactly zero.

    Each entry is simplified symbolically (expand / radsimp / ``sympy.simplify``, then
    ``expr.equals(0)``, then a minimal-polynomial test); no numeric tolerance is used.

    Raises:
        ValueError: if sympy cannot decide whether some entry is zero.
    """
    b = optimum.b if bias else None
    grads = objective_gradient_exact(targets, lambda_H, lambda_W, optimum.H, optimum.W, b, bias)
    for name, grad in zip(("dL/dH", "dL/dW", "dL/db"), grads, strict=True):
        if grad is None:
            continue
        for entry in grad:
            verdict = is_exactly_zero(entry)
            if verdict is None:
                raise ValueError(f"sympy could not decide whether an entry of {name} is 0: {entry}")
            if not verdict:
                return False
    return True
