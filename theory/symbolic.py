r"""Exact (sympy) closed form of the regression Unconstrained Feature Model optimum.

Source
------
Andriopoulos, Dong, Guo, Zhao, Ross, "The Prevalence of Neural Collapse in Neural Multivariate
Regression", NeurIPS 2024 (arXiv 2409.04180), eq. (1) and Theorem 4.1, together with the
general-regime extension derived for this project (``/work/shared/THEORY.md``, section 1):
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

import functools
import numbers
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
import sympy

__all__ = [
    "ExactRegressionOptimum",
    "gradient_vanishes_exact",
    "objective_exact",
    "objective_gradient_exact",
    "regression_optimum_exact",
    "to_float",
]

_X = sympy.Symbol("_x")


# --------------------------------------------------------------------------------------------
# Input conversion
# --------------------------------------------------------------------------------------------


def _as_rational(value: Any, name: str) -> sympy.Rational:
    """Convert ``value`` to an exact sympy Rational or raise ValueError naming ``name``."""
    if isinstance(value, bool) or isinstance(value, np.bool_):
        raise ValueError(f"{name} must be a rational number, got a bool ({value!r})")
    if isinstance(value, (float, np.floating, sympy.Float)):
        raise ValueError(
            f"{name} must be exact (int, fractions.Fraction, sympy.Rational or a string such as "
            f"'1/10'); floats are rejected, got {value!r}"
        )
    if isinstance(value, sympy.Basic):
        if value.has(sympy.Float):
            raise ValueError(f"{name} must be exact; got a sympy Float ({value!r})")
        if isinstance(value, sympy.Rational):
            return value
        raise ValueError(f"{name} must be a rational number, got {value!r}")
    if isinstance(value, Fraction):
        return sympy.Rational(value.numerator, value.denominator)
    if isinstance(value, (numbers.Integral, np.integer)):
        return sympy.Integer(int(value))
    if isinstance(value, str):
        try:
            parsed = sympy.Rational(value.strip())
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{name} could not be parsed as a rational number: {value!r}") from exc
        if "." in value or "e" in value.lower():
            raise ValueError(
                f"{name} must be written as an exact fraction such as '1/10', got {value!r}"
            )
        return parsed
    raise ValueError(f"{name} must be a rational number, got {type(value).__name__} {value!r}")


def _as_positive_rational(value: Any, name: str) -> sympy.Rational:
    q = _as_rational(value, name)
    if not q > 0:
        raise ValueError(f"{name} must be > 0, got {q}")
    return q


def _as_exact_matrix(value: Any, name: str, *, rational: bool) -> sympy.Matrix:
    """Convert a 2-D array-like to a sympy Matrix of exact entries (rational if requested)."""
    if isinstance(value, np.ndarray):
        if value.ndim != 2:
            raise ValueError(f"{name} must be 2-D, got an array of shape {value.shape}")
        if np.issubdtype(value.dtype, np.floating) or np.issubdtype(
            value.dtype, np.complexfloating
        ):
            raise ValueError(f"{name} must have exact entries; got a {value.dtype} array")
        rows = value.tolist()
    elif isinstance(value, sympy.MatrixBase):
        rows = value.tolist()
    else:
        try:
            rows = [list(row) for row in value]
        except TypeError as exc:
            raise ValueError(f"{name} must be a 2-D array-like (list of rows)") from exc
    if not rows or not rows[0]:
        raise ValueError(f"{name} must be non-empty")
    width = len(rows[0])
    if any(len(row) != width for row in rows):
        raise ValueError(f"{name} must be rectangular (all rows of the same length)")
    out = []
    for i, row in enumerate(rows):
        new_row = []
        for j, entry in enumerate(row):
            where = f"{name}[{i}][{j}]"
            if rational:
                new_row.append(_as_rational(entry, where))
            else:
                if isinstance(entry, (float, np.floating)) or (
                    isinstance(entry, sympy.Basic) and entry.has(sympy.Float)
                ):
                    raise ValueError(f"{name} must have exact entries; {where} = {entry!r}")
                if isinstance(entry, (str, Fraction, numbers.Integral, np.integer)):
                    new_row.append(_as_rational(entry, where))
                else:
                    new_row.append(sympy.sympify(entry))
        out.append(new_row)
    return sympy.Matrix(out)


def _as_feature_dim(value: Any) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Integral, np.integer)):
        raise ValueError(f"feature_dim must be an int >= 1, got {value!r}")
    if int(value) < 1:
        raise ValueError(f"feature_dim must be >= 1, got {value}")
    return int(value)


# --------------------------------------------------------------------------------------------
# Exact algebraic-number helpers
# --------------------------------------------------------------------------------------------


def _clean(expr: sympy.Expr) -> sympy.Expr:
    """Cheap canonicalisation of an algebraic expression (no nested simplification search)."""
    expr = sympy.sympify(expr)
    if expr.is_Rational:
        return expr
    return sympy.radsimp(sympy.expand(expr))


def _sqrt(expr: sympy.Expr) -> sympy.Expr:
    """Exact square root, denested when sympy can."""
    root = sympy.sqrt(expr)
    if root.is_Rational:
        return root
    return sympy.sqrtdenest(root)


def _is_exactly_zero(expr: sympy.Expr) -> bool | None:
    """Exact zero test of a (real or complex) algebraic number; None if undecidable."""
    expr = sympy.sympify(expr)
    if expr.has(sympy.Float):
        raise ValueError(f"refusing to zero-test an inexact expression: {expr}")
    if expr.is_Rational:
        return expr == 0
    expanded = sympy.expand(expr)
    if expanded == 0:
        return True
    if expanded.is_Rational:
        return False
    if sympy.radsimp(expanded) == 0:
        return True
    if sympy.simplify(expanded) == 0:
        return True
    # ``equals`` is exact for algebraic numbers (it uses minimal polynomials internally).
    verdict = expanded.equals(0)
    if verdict is not None:
        return bool(verdict)
    try:
        return sympy.minimal_polynomial(expanded, _X) == _X
    except (NotImplementedError, sympy.polys.polyerrors.PolynomialError):
        return None


def _exact_sign(expr: sympy.Expr, what: str) -> int:
    """Sign (-1, 0, 1) of a real algebraic number, decided exactly (zero test first)."""
    expr = sympy.sympify(expr)
    if expr.is_Rational:
        return int(sympy.sign(expr))
    zero = _is_exactly_zero(expr)
    if zero is None:
        raise ValueError(f"sympy could not decide whether {what} is zero: {expr}")
    if zero:
        return 0
    # Known non-zero: a sufficiently accurate evaluation gives the sign rigorously.
    if expr.is_positive:
        return 1
    if expr.is_negative:
        return -1
    for digits in (30, 60, 120, 240, 480):
        value = sympy.N(expr, digits, chop=False)
        re, im = value.as_real_imag()
        if abs(im) > abs(re) and abs(im) > sympy.Float(10) ** (5 - digits):
            raise ValueError(f"{what} is not real: {expr}")
        if re != 0 and abs(re) > sympy.Float(10) ** (5 - digits):
            return 1 if re > 0 else -1
    raise ValueError(f"sympy could not decide the sign of {what}: {expr}")


def _compare(a: sympy.Expr, b: sympy.Expr, what: str) -> int:
    return _exact_sign(a - b, what)


# --------------------------------------------------------------------------------------------
# Exact eigen-decomposition of a symmetric rational matrix
# --------------------------------------------------------------------------------------------


def _real_algebraic(value: sympy.Expr) -> sympy.Expr:
    """Return a manifestly real form of an eigenvalue of a symmetric rational matrix."""
    value = _clean(value)
    if not value.has(sympy.I):
        return value
    real = _clean(sympy.expand_complex(value))
    if not real.has(sympy.I):
        return real
    raise ValueError(
        "the exact spectrum of Sigma needs complex radicals (casus irreducibilis of an "
        f"irreducible cubic or higher); not supported: eigenvalue {value}"
    )


def _gram_schmidt(vectors: list[sympy.Matrix]) -> list[sympy.Matrix]:
    """Exact Gram-Schmidt: orthonormal basis of span(vectors)."""
    basis: list[sympy.Matrix] = []
    for v in vectors:
        w = v
        for u in basis:
            w = w - _clean(u.dot(v)) * u
        w = w.applyfunc(_clean)
        norm2 = _clean(w.dot(w))
        if _is_exactly_zero(norm2):
            continue
        inv_norm = _clean(1 / _sqrt(norm2))
        basis.append(w.applyfunc(lambda entry, k=inv_norm: _clean(entry * k)))
    return basis


def _symmetric_eigh(sigma: sympy.Matrix) -> tuple[list[sympy.Expr], list[sympy.Matrix]]:
    """Exact eigenvalues (descending) and orthonormal eigenvectors of a symmetric matrix."""
    pairs: list[tuple[sympy.Expr, sympy.Matrix]] = []
    for value, multiplicity, vectors in sigma.eigenvects():
        value = _real_algebraic(value)
        vectors = [v.applyfunc(_clean) for v in vectors]
        if any(entry.has(sympy.I) for v in vectors for entry in v):
            vectors = [v.applyfunc(lambda e: _clean(sympy.expand_complex(e))) for v in vectors]
            if any(entry.has(sympy.I) for v in vectors for entry in v):
                raise ValueError(f"eigenvectors of Sigma for eigenvalue {value} are not real")
        basis = _gram_schmidt(vectors)
        if len(basis) != multiplicity:
            raise ValueError(
                f"eigenvalue {value} of the symmetric matrix Sigma has algebraic multiplicity "
                f"{multiplicity} but {len(basis)} independent eigenvectors; sympy failed"
            )
        pairs.extend((value, u) for u in basis)
    if len(pairs) != sigma.rows:
        raise ValueError("sympy did not return a complete eigen-decomposition of Sigma")

    def descending(p: tuple[sympy.Expr, sympy.Matrix], q: tuple[sympy.Expr, sympy.Matrix]) -> int:
        return _compare(q[0], p[0], "the difference of two eigenvalues of Sigma")

    pairs.sort(key=functools.cmp_to_key(descending))
    return [p[0] for p in pairs], [p[1] for p in pairs]


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
    y = _as_exact_matrix(targets, "targets", rational=True)
    lam_h = _as_positive_rational(lambda_H, "lambda_H")
    lam_w = _as_positive_rational(lambda_W, "lambda_W")
    d = _as_feature_dim(feature_dim)
    m, n = y.shape
    c = lam_h * lam_w
    sqrt_c = sympy.sqrt(c)

    centred, ybar, sigma = _target_moments(y, bool(bias))
    eigenvalues, eigenvectors = _symmetric_eigh(sigma)

    n_above = 0
    for value in eigenvalues:
        if _compare(value, c, "an eigenvalue of Sigma minus c = lambda_H * lambda_W") > 0:
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
            root = _sqrt(value)  # sqrt(l_i)
            gap = _clean(root - sqrt_c)  # sqrt(l_i) - sqrt(c) > 0
            amp = _sqrt(gap)  # sqrt(sqrt(l_i) - sqrt(c))
            outer = (u * u.T).applyfunc(_clean)
            W[:, i] = (u * (ratio_quarter * amp)).applyfunc(_clean)
            # H e_i = sqrt(lW/lH) Yc Sigma^{+1/2} W e_i = (lW/lH)^{1/4} amp / sqrt(l_i) * Yc u_i
            h_scale = _clean(inv_quarter * amp / root)
            H[:, i] = (centred * u).applyfunc(lambda e, s=h_scale: _clean(e * s))
            WWT += outer * _clean(ratio_half * gap)
            proj_sum += outer * _clean(1 - sqrt_c / root)
            loss += _clean(sqrt_c * root) - c / 2
        else:
            loss += value / 2
    WWT = WWT.applyfunc(_clean)
    predictions = (centred * proj_sum.applyfunc(_clean)).applyfunc(_clean) + sympy.ones(
        m, 1
    ) * ybar.T
    predictions = predictions.applyfunc(_clean)
    U = sympy.Matrix.hstack(*eigenvectors)

    return ExactRegressionOptimum(
        Sigma=sigma,
        eigenvalues=tuple(eigenvalues),
        WWT=WWT,
        W=W,
        H=H,
        b=ybar,
        predictions=predictions,
        loss=_clean(loss),
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
    y = _as_exact_matrix(targets, "targets", rational=True)
    lam_h = _as_positive_rational(lambda_H, "lambda_H")
    lam_w = _as_positive_rational(lambda_W, "lambda_W")
    h = _as_exact_matrix(H, "H", rational=False)
    w = _as_exact_matrix(W, "W", rational=False)
    m, n = y.shape
    if h.rows != m:
        raise ValueError(f"H must have M = {m} rows (samples first), got shape {h.shape}")
    if w.shape != (n, h.cols):
        raise ValueError(f"W must have shape (n, d) = ({n}, {h.cols}), got {w.shape}")
    if b is None:
        b_col = sympy.zeros(n, 1)
    else:
        if isinstance(b, sympy.MatrixBase):
            b_col = _as_exact_matrix(b.reshape(len(b), 1), "b", rational=False)
        else:
            b_col = _as_exact_matrix(
                [[e] for e in np.asarray(b, dtype=object).ravel()], "b", rational=False
            )
        if b_col.shape != (n, 1):
            raise ValueError(f"b must have n = {n} entries, got {b_col.rows}")
    if not bias and any(_is_exactly_zero(e) is not True for e in b_col):
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
    return _clean(value)


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
            verdict = _is_exactly_zero(entry)
            if verdict is None:
                raise ValueError(f"sympy could not decide whether an entry of {name} is 0: {entry}")
            if not verdict:
                return False
    return True


# --------------------------------------------------------------------------------------------
# Numeric conversion
# --------------------------------------------------------------------------------------------


def _to_float_scalar(expr: Any, digits: int) -> float:
    value = sympy.N(sympy.sympify(expr), digits)
    re, im = value.as_real_imag()
    re_f, im_f = float(re), float(im)
    if abs(im_f) > 10.0 ** (5 - digits) * max(1.0, abs(re_f)):
        raise ValueError(f"expression is not real: {expr} ~ {re_f} + {im_f}i")
    return re_f


def to_float(matrix_or_expr: Any, digits: int = 30) -> np.ndarray | np.float64:
    """Evaluate a sympy matrix (-> float64 array of the same shape) or scalar (-> np.float64).

    The evaluation is done with ``digits`` significant digits before rounding to float64.
    """
    if isinstance(matrix_or_expr, sympy.MatrixBase):
        rows, cols = matrix_or_expr.shape
        out = np.empty((rows, cols), dtype=np.float64)
        for i in range(rows):
            for j in range(cols):
                out[i, j] = _to_float_scalar(matrix_or_expr[i, j], digits)
        return out
    if isinstance(matrix_or_expr, (list, tuple)):
        return np.array([_to_float_scalar(e, digits) for e in matrix_or_expr], dtype=np.float64)
    return np.float64(_to_float_scalar(matrix_or_expr, digits))
