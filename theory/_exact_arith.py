r"""Exact arithmetic on real algebraic numbers and rational matrices (sympy), for the exact
closed forms of :mod:`theory.symbolic`.

* input conversion: exact rationals and matrices from ints, :class:`fractions.Fraction`, sympy
  rationals or strings such as ``"1/10"`` (floats are refused: they are not exact);
* exact zero tests and signs of real algebraic numbers (a zero test by ``equals`` /
  minimal polynomial, then a sign from an evaluation accurate enough to be rigorous), so
  comparisons such as ``l_i > c`` are decided without a numeric tolerance;
* the exact eigen-decomposition of a symmetric rational matrix (``sympy.eigenvects`` with exact
  Gram-Schmidt inside each eigenspace, eigenvalues sorted by exact comparison);
* evaluation to float64 at a chosen number of digits (:func:`to_float`).
"""

from __future__ import annotations

import functools
import numbers
from fractions import Fraction
from typing import Any

import numpy as np
import sympy

_X = sympy.Symbol("_x")

# --------------------------------------------------------------------------------------------
# Input conversion
# --------------------------------------------------------------------------------------------


def as_rational(value: Any, name: str) -> sympy.Rational:
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


def as_positive_rational(value: Any, name: str) -> sympy.Rational:
    """An exact rational ``> 0`` (:func:`as_rational`), else a ValueError naming ``name``."""
    q = as_rational(value, name)
    if not q > 0:
        raise ValueError(f"{name} must be > 0, got {q}")
    return q


def as_exact_matrix(value: Any, name: str, *, rational: bool) -> sympy.Matrix:
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
                new_row.append(as_rational(entry, where))
            else:
                if isinstance(entry, (float, np.floating)) or (
                    isinstance(entry, sympy.Basic) and entry.has(sympy.Float)
                ):
                    raise ValueError(f"{name} must have exact entries; {where} = {entry!r}")
                if isinstance(entry, (str, Fraction, numbers.Integral, np.integer)):
                    new_row.append(as_rational(entry, where))
                else:
                    new_row.append(sympy.sympify(entry))
        out.append(new_row)
    return sympy.Matrix(out)


def as_feature_dim(value: Any) -> int:
    """``feature_dim``: a Python or numpy int ``>= 1`` (bools refused)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Integral, np.integer)):
        raise ValueError(f"feature_dim must be an int >= 1, got {value!r}")
    if int(value) < 1:
        raise ValueError(f"feature_dim must be >= 1, got {value}")
    return int(value)


# --------------------------------------------------------------------------------------------
# Exact algebraic-number helpers
# --------------------------------------------------------------------------------------------


def clean(expr: sympy.Expr) -> sympy.Expr:
    """Cheap canonicalisation of an algebraic expression (no nested simplification search)."""
    expr = sympy.sympify(expr)
    if expr.is_Rational:
        return expr
    return sympy.radsimp(sympy.expand(expr))


def exact_sqrt(expr: sympy.Expr) -> sympy.Expr:
    """Exact square root, denested when sympy can."""
    root = sympy.sqrt(expr)
    if root.is_Rational:
        return root
    return sympy.sqrtdenest(root)


def is_exactly_zero(expr: sympy.Expr) -> bool | None:
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


def exact_sign(expr: sympy.Expr, what: str) -> int:
    """Sign (-1, 0, 1) of a real algebraic number, decided exactly (zero test first)."""
    expr = sympy.sympify(expr)
    if expr.is_Rational:
        return int(sympy.sign(expr))
    zero = is_exactly_zero(expr)
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


def exact_compare(a: sympy.Expr, b: sympy.Expr, what: str) -> int:
    """Sign of ``a - b``, decided exactly (:func:`exact_sign`)."""
    return exact_sign(a - b, what)


# --------------------------------------------------------------------------------------------
# Exact eigen-decomposition of a symmetric rational matrix
# --------------------------------------------------------------------------------------------


def real_algebraic(value: sympy.Expr) -> sympy.Expr:
    """Return a manifestly real form of an eigenvalue of a symmetric rational matrix."""
    value = clean(value)
    if not value.has(sympy.I):
        return value
    real = clean(sympy.expand_complex(value))
    if not real.has(sympy.I):
        return real
    raise ValueError(
        "the exact spectrum of Sigma needs complex radicals (casus irreducibilis of an "
        f"irreducible cubic or higher); not supported: eigenvalue {value}"
    )


def gram_schmidt(vectors: list[sympy.Matrix]) -> list[sympy.Matrix]:
    """Exact Gram-Schmidt: orthonormal basis of span(vectors)."""
    basis: list[sympy.Matrix] = []
    for v in vectors:
        w = v
        for u in basis:
            w = w - clean(u.dot(v)) * u
        w = w.applyfunc(clean)
        norm2 = clean(w.dot(w))
        if is_exactly_zero(norm2):
            continue
        inv_norm = clean(1 / exact_sqrt(norm2))
        basis.append(w.applyfunc(lambda entry, k=inv_norm: clean(entry * k)))
    return basis


def symmetric_eigh(sigma: sympy.Matrix) -> tuple[list[sympy.Expr], list[sympy.Matrix]]:
    """Exact eigenvalues (descending) and orthonormal eigenvectors of a symmetric matrix."""
    pairs: list[tuple[sympy.Expr, sympy.Matrix]] = []
    for value, multiplicity, vectors in sigma.eigenvects():
        value = real_algebraic(value)
        vectors = [v.applyfunc(clean) for v in vectors]
        if any(entry.has(sympy.I) for v in vectors for entry in v):
            vectors = [v.applyfunc(lambda e: clean(sympy.expand_complex(e))) for v in vectors]
            if any(entry.has(sympy.I) for v in vectors for entry in v):
                raise ValueError(f"eigenvectors of Sigma for eigenvalue {value} are not real")
        basis = gram_schmidt(vectors)
        if len(basis) != multiplicity:
            raise ValueError(
                f"eigenvalue {value} of the symmetric matrix Sigma has algebraic multiplicity "
                f"{multiplicity} but {len(basis)} independent eigenvectors; sympy failed"
            )
        pairs.extend((value, u) for u in basis)
    if len(pairs) != sigma.rows:
        raise ValueError("sympy did not return a complete eigen-decomposition of Sigma")

    def descending(p: tuple[sympy.Expr, sympy.Matrix], q: tuple[sympy.Expr, sympy.Matrix]) -> int:
        return exact_compare(q[0], p[0], "the difference of two eigenvalues of Sigma")

    pairs.sort(key=functools.cmp_to_key(descending))
    return [p[0] for p in pairs], [p[1] for p in pairs]


# --------------------------------------------------------------------------------------------
# Numeric conversion
# --------------------------------------------------------------------------------------------


def to_float_scalar(expr: Any, digits: int) -> float:
    """A real scalar expression to a float, evaluated to ``digits`` digits first."""
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
                out[i, j] = to_float_scalar(matrix_or_expr[i, j], digits)
        return out
    if isinstance(matrix_or_expr, (list, tuple)):
        return np.array([to_float_scalar(e, digits) for e in matrix_or_expr], dtype=np.float64)
    return np.float64(to_float_scalar(matrix_or_expr, digits))
