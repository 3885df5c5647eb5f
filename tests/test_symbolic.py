"""Tests for the exact (sympy) regression-UFM optimum in ``theory.symbolic``."""

from __future__ import annotations

import dataclasses
from fractions import Fraction

import numpy as np
import pytest
import sympy
from conftest import examples
from hypothesis import given, settings
from hypothesis import strategies as st

from theory.symbolic import (
    ExactRegressionOptimum,
    gradient_vanishes_exact,
    objective_exact,
    objective_gradient_exact,
    regression_optimum_exact,
    to_float,
)

# --------------------------------------------------------------------------------------------
# Fixtures: small rational targets with known spectra
# --------------------------------------------------------------------------------------------

# M = 4, n = 2. Centred covariance Sigma = [[5/2, 9/4], [9/4, 7/2]], eigenvalues 3 +- sqrt(85)/4
# (~5.3049 and ~0.6951): an irrational eigen-decomposition.
Y2 = [[0, 0], [1, 2], [3, 1], [4, 5]]
L2_HI = 3 + sympy.sqrt(85) / 4
L2_LO = 3 - sympy.sqrt(85) / 4

# Rational orthogonal matrix (times 3) used to rotate axis-aligned spectra.
_Q3 = sympy.Matrix([[1, 2, 2], [2, 1, -2], [2, -2, 1]])
# Centred, mutually orthogonal columns with squared norms 4, 2, 2.
_Z_ORTH = sympy.Matrix([[1, 1, 0], [1, -1, 0], [-1, 0, 1], [-1, 0, -1]])
# Y3_RAT = Z diag(1, 1, 2) Q + offset: Sigma has rational eigenvalues (18, 9, 9/2) and rational
# eigenvector directions (columns of Q).
Y3_RAT = (
    _Z_ORTH * sympy.diag(1, 1, 2) * _Q3 + sympy.ones(4, 1) * sympy.Matrix([[1, 2, 3]])
).tolist()
# Characteristic polynomial (l - 9)(4 l^2 - 90 l + 81)/4: eigenvalues 45/4 +- 9 sqrt(21)/4 and 9,
# eigenvectors with irrational entries.
Y3_IRR = [[7, 1, 3], [1, 1, -3], [-4, -3, -1], [0, -7, 1]]
# Repeated eigenvalue: Sigma eigenvalues (36, 9, 9); sympy's eigenspace basis is not orthogonal.
_Z_EQ = sympy.Matrix([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]])
Y3_REP = (_Z_EQ * sympy.diag(1, 1, 2) * _Q3).tolist()


def _zero(expr) -> bool:
    """Exact zero test for algebraic numbers: cheap canonical forms, then ``equals``."""
    expanded = sympy.expand(expr)
    if expanded == 0 or sympy.radsimp(expanded) == 0:
        return True
    verdict = expanded.equals(0)
    assert verdict is not None, f"undecidable: {expr}"
    return bool(verdict)


def _check_consistency(opt: ExactRegressionOptimum, targets, lam_h, lam_w, bias=True) -> None:
    """Exact identities that every returned optimum must satisfy."""
    y = sympy.Matrix(targets)
    m, n = y.shape
    lam_h, lam_w = sympy.Rational(lam_h), sympy.Rational(lam_w)
    zero = sympy.zeros

    def is_zero_matrix(a: sympy.Matrix) -> bool:
        return all(_zero(e) for e in a)

    assert opt.W.rows == n and opt.H.shape == (m, opt.W.cols) and opt.b.shape == (n, 1)
    assert is_zero_matrix(opt.W * opt.W.T - opt.WWT)
    assert is_zero_matrix(opt.H * opt.W.T + sympy.ones(m, 1) * opt.b.T - opt.predictions)
    # Balance (Lemma C.1): lambda_H ||H||^2 = M lambda_W ||W||^2.
    fro2 = sum(e**2 for e in opt.H) * lam_h - m * lam_w * sum(e**2 for e in opt.W)
    assert _zero(fro2)
    # Closed-form loss equals the objective evaluated at the returned point.
    value = objective_exact(targets, lam_h, lam_w, opt.H, opt.W, opt.b if bias else None, bias)
    assert _zero(value - opt.loss)
    # Eigen-decomposition is exact and sorted.
    u = opt.eigenvectors
    assert is_zero_matrix(u.T * u - sympy.eye(n))
    assert is_zero_matrix(u * sympy.diag(*opt.eigenvalues) * u.T - opt.Sigma)
    vals = to_float(list(opt.eigenvalues))
    assert np.all(np.diff(vals) <= 0)
    assert opt.rank == int(np.linalg.matrix_rank(to_float(opt.W)))
    if opt.rank == 0:
        assert opt.W == zero(*opt.W.shape) and opt.H == zero(*opt.H.shape)


# --------------------------------------------------------------------------------------------
# Gradient vanishes exactly at the exact optimum
# --------------------------------------------------------------------------------------------


def test_full_rank_2x2_irrational_spectrum():
    lam_h, lam_w = "1/10", "1/5"  # c = 1/50 < l_min ~ 0.695
    opt = regression_optimum_exact(Y2, lam_h, lam_w, 2)
    assert opt.rank == 2
    assert opt.c == sympy.Rational(1, 50)
    assert _zero(opt.eigenvalues[0] - L2_HI)
    assert _zero(opt.eigenvalues[1] - L2_LO)
    assert opt.b == sympy.Matrix([2, 2])
    assert gradient_vanishes_exact(opt, Y2, lam_h, lam_w)
    _check_consistency(opt, Y2, lam_h, lam_w)
    # Full-rank regime: WW^T = sqrt(lH/lW) (Sigma^{1/2} - sqrt(c) I), paper's loss formula.
    c = opt.c
    sqrt_sigma = opt.eigenvectors * sympy.diag(*[sympy.sqrt(v) for v in opt.eigenvalues])
    sqrt_sigma = sqrt_sigma * opt.eigenvectors.T
    target = sympy.sqrt(sympy.Rational(1, 2)) * (sqrt_sigma - sympy.sqrt(c) * sympy.eye(2))
    assert all(_zero(e) for e in opt.WWT - target)
    paper_loss = sympy.sqrt(c) * (sympy.sqrt(L2_HI) + sympy.sqrt(L2_LO)) - 2 * c / 2
    assert _zero(opt.loss - paper_loss)


def test_rank_one_2x2_c_between_eigenvalues():
    lam_h, lam_w = 1, 2  # c = 2, between ~0.695 and ~5.30
    opt = regression_optimum_exact(Y2, lam_h, lam_w, 2)
    assert opt.rank == 1
    assert opt.W[:, 1] == sympy.zeros(2, 1) and opt.H[:, 1] == sympy.zeros(4, 1)
    assert gradient_vanishes_exact(opt, Y2, lam_h, lam_w)
    _check_consistency(opt, Y2, lam_h, lam_w)
    expected = sympy.sqrt(2 * L2_HI) - 1 + L2_LO / 2
    assert _zero(opt.loss - expected)


def test_zero_solution_when_c_above_largest_eigenvalue():
    lam_h, lam_w = 3, 2  # c = 6 > l_max ~ 5.30
    opt = regression_optimum_exact(Y2, lam_h, lam_w, 2)
    assert opt.rank == 0
    assert opt.W == sympy.zeros(2, 2) and opt.H == sympy.zeros(4, 2)
    assert opt.WWT == sympy.zeros(2, 2)
    assert opt.b == sympy.Matrix([2, 2])  # ybar
    assert opt.loss == sympy.Rational(1, 2) * opt.Sigma.trace()
    assert gradient_vanishes_exact(opt, Y2, lam_h, lam_w)
    _check_consistency(opt, Y2, lam_h, lam_w)


def test_3x3_rational_spectrum():
    lam_h, lam_w = "1/2", "1/2"  # c = 1/4 < 9/2
    opt = regression_optimum_exact(Y3_RAT, lam_h, lam_w, 3)
    assert opt.eigenvalues == (18, 9, sympy.Rational(9, 2))
    assert opt.rank == 3
    assert gradient_vanishes_exact(opt, Y3_RAT, lam_h, lam_w)
    _check_consistency(opt, Y3_RAT, lam_h, lam_w)


def test_3x3_irrational_eigenvectors_each_regime():
    for (lam_h, lam_w), rank in [(("1/10", "1/10"), 3), ((1, 2), 2), ((3, 3), 1), ((5, 5), 0)]:
        opt = regression_optimum_exact(Y3_IRR, lam_h, lam_w, 3)
        assert opt.rank == rank
        assert gradient_vanishes_exact(opt, Y3_IRR, lam_h, lam_w)
        _check_consistency(opt, Y3_IRR, lam_h, lam_w)


def test_eigenvalue_equal_to_c_is_dropped():
    # Spectrum (18, 9, 9/2) and c = 9 exactly: the tie must be decided exactly, not kept.
    opt = regression_optimum_exact(Y3_RAT, 3, 3, 3)
    assert opt.rank == 1
    assert gradient_vanishes_exact(opt, Y3_RAT, 3, 3)
    # kept: sqrt(c l_1) - c/2; dropped: l_2/2 + l_3/2 = 9/2 + 9/4
    expected = (
        sympy.sqrt(9 * 18) - sympy.Rational(9, 2) + sympy.Rational(9, 2) + sympy.Rational(9, 4)
    )
    assert _zero(opt.loss - expected)


def test_repeated_eigenvalue_gram_schmidt():
    opt = regression_optimum_exact(Y3_REP, "1/3", "1/3", 3)
    assert opt.eigenvalues == (36, 9, 9)
    assert opt.rank == 3
    assert gradient_vanishes_exact(opt, Y3_REP, "1/3", "1/3")
    _check_consistency(opt, Y3_REP, "1/3", "1/3")


def test_bias_false_uses_uncentred_second_moment():
    lam_h, lam_w = "1/4", "1/3"
    opt = regression_optimum_exact(Y2, lam_h, lam_w, 2, bias=False)
    y = sympy.Matrix(Y2)
    assert opt.Sigma == y.T * y / 4
    assert opt.b == sympy.zeros(2, 1)
    assert opt.rank == 2
    assert gradient_vanishes_exact(opt, Y2, lam_h, lam_w, bias=False)
    _check_consistency(opt, Y2, lam_h, lam_w, bias=False)
    # The bias-free optimum is not a critical point of the model with a free bias.
    assert not gradient_vanishes_exact(opt, Y2, lam_h, lam_w, bias=True)


def test_more_outputs_than_features():
    lam_h, lam_w = "1/10", "1/10"  # both eigenvalues above c, but d = 1 caps the rank
    opt = regression_optimum_exact(Y2, lam_h, lam_w, 1)
    assert opt.W.shape == (2, 1) and opt.H.shape == (4, 1)
    assert opt.rank == 1
    assert gradient_vanishes_exact(opt, Y2, lam_h, lam_w)
    _check_consistency(opt, Y2, lam_h, lam_w)
    c = opt.c
    expected = sympy.sqrt(c * L2_HI) - c / 2 + L2_LO / 2
    assert _zero(opt.loss - expected)


def test_rank_deficient_sigma_uses_pseudo_inverse():
    targets = [[0, 0], [2, 4], [1, 2]]  # centred targets are collinear: Sigma has eigenvalue 0
    opt = regression_optimum_exact(targets, "1/10", "1/10", 2)
    assert opt.eigenvalues[1] == 0
    assert opt.rank == 1
    assert gradient_vanishes_exact(opt, targets, "1/10", "1/10")
    _check_consistency(opt, targets, "1/10", "1/10")


def test_single_output():
    targets = [[1], [2], [6]]
    opt = regression_optimum_exact(targets, "1/2", "1/3", 2)
    assert opt.eigenvalues == (sympy.Rational(14, 3),)
    assert opt.rank == 1
    assert gradient_vanishes_exact(opt, targets, "1/2", "1/3")
    _check_consistency(opt, targets, "1/2", "1/3")


@pytest.mark.slow
@settings(max_examples=examples(8))
@given(
    targets=st.lists(st.lists(st.integers(-3, 3), min_size=2, max_size=2), min_size=2, max_size=4),
    lam_h=st.fractions(min_value=Fraction(1, 20), max_value=3, max_denominator=20),
    lam_w=st.fractions(min_value=Fraction(1, 20), max_value=3, max_denominator=20),
    d=st.integers(1, 3),
    bias=st.booleans(),
)
def test_property_random_small_problems(targets, lam_h, lam_w, d, bias):
    opt = regression_optimum_exact(targets, lam_h, lam_w, d, bias=bias)
    assert gradient_vanishes_exact(opt, targets, lam_h, lam_w, bias=bias)
    value = objective_exact(targets, lam_h, lam_w, opt.H, opt.W, opt.b if bias else None, bias)
    assert _zero(value - opt.loss)


# --------------------------------------------------------------------------------------------
# Negative controls
# --------------------------------------------------------------------------------------------


def test_perturbed_weights_are_not_critical():
    lam_h, lam_w = "1/10", "1/5"
    opt = regression_optimum_exact(Y2, lam_h, lam_w, 2)
    bumped = opt.W.copy()
    bumped[0, 0] = bumped[0, 0] + sympy.Rational(1, 1000)
    perturbed = dataclasses.replace(opt, W=bumped)
    assert not gradient_vanishes_exact(perturbed, Y2, lam_h, lam_w)
    # A perturbation of the bias is also detected.
    perturbed_b = dataclasses.replace(opt, b=opt.b + sympy.Matrix([sympy.Rational(1, 7), 0]))
    assert not gradient_vanishes_exact(perturbed_b, Y2, lam_h, lam_w)


def test_saddle_has_vanishing_gradient_but_higher_loss():
    # Dropping a kept direction gives another critical point (a strict saddle): the gradient test
    # alone cannot tell, the exact loss comparison does.
    lam_h, lam_w = "1/10", "1/5"
    opt = regression_optimum_exact(Y2, lam_h, lam_w, 2)
    for col in range(2):
        w, h = opt.W.copy(), opt.H.copy()
        w[:, col] = sympy.zeros(2, 1)
        h[:, col] = sympy.zeros(4, 1)
        saddle = dataclasses.replace(opt, W=w, H=h)
        assert gradient_vanishes_exact(saddle, Y2, lam_h, lam_w)
        gap = objective_exact(Y2, lam_h, lam_w, h, w, opt.b) - opt.loss
        assert _zero(gap) is False and gap.is_positive


def test_gradient_formula_matches_sympy_differentiation():
    lam_h, lam_w = sympy.Rational(1, 3), sympy.Rational(2, 5)
    m, n, d = 3, 2, 2
    targets = [[1, 0], [2, -1], [0, 3]]
    hs = sympy.Matrix(m, d, sympy.symbols(f"h0:{m * d}"))
    ws = sympy.Matrix(n, d, sympy.symbols(f"w0:{n * d}"))
    bs = sympy.Matrix(sympy.symbols(f"b0:{n}"))
    y = sympy.Matrix(targets)
    e = hs * ws.T + sympy.ones(m, 1) * bs.T - y
    loss = (
        sum(x**2 for x in e) / (2 * m)
        + lam_h / (2 * m) * sum(x**2 for x in hs)
        + lam_w / 2 * sum(x**2 for x in ws)
    )
    gh, gw, gb = objective_gradient_exact(targets, lam_h, lam_w, hs, ws, bs)
    assert all(sympy.expand(gh[i] - sympy.diff(loss, hs[i])) == 0 for i in range(m * d))
    assert all(sympy.expand(gw[i] - sympy.diff(loss, ws[i])) == 0 for i in range(n * d))
    assert all(sympy.expand(gb[i] - sympy.diff(loss, bs[i])) == 0 for i in range(n))
    _, _, gb_none = objective_gradient_exact(targets, lam_h, lam_w, hs, ws, None, bias=False)
    assert gb_none is None


# --------------------------------------------------------------------------------------------
# Agreement with the numeric (JAX) closed form
# --------------------------------------------------------------------------------------------

_NUMERIC_CASES = [
    (Y2, "1/10", "1/5", 2, True),
    (Y2, 1, 2, 2, True),
    (Y2, 3, 2, 2, True),
    (Y2, "1/4", "1/3", 2, False),
    (Y2, "1/10", "1/10", 1, True),
    (Y3_IRR, "1/10", "1/10", 3, True),
    (Y3_IRR, 1, 2, 3, True),
    (Y3_RAT, "1/2", "1/2", 2, True),
]


@pytest.mark.parametrize(("targets", "lam_h", "lam_w", "d", "bias"), _NUMERIC_CASES)
def test_numeric_closed_form_matches_exact(targets, lam_h, lam_w, d, bias):
    from theory import regression

    exact = regression_optimum_exact(targets, lam_h, lam_w, d, bias=bias)
    num = regression.optimum(
        np.asarray(targets, dtype=np.float64),
        float(Fraction(str(lam_h))),
        float(Fraction(str(lam_w))),
        d,
        bias=bias,
    )
    tol = {"atol": 1e-12, "rtol": 1e-12}
    np.testing.assert_allclose(np.asarray(num.WWT), to_float(exact.WWT), **tol)
    np.testing.assert_allclose(np.asarray(num.predictions), to_float(exact.predictions), **tol)
    np.testing.assert_allclose(np.asarray(num.bias), to_float(exact.b).ravel(), **tol)
    np.testing.assert_allclose(float(num.loss), to_float(exact.loss), **tol)
    assert int(num.rank) == exact.rank


# --------------------------------------------------------------------------------------------
# Input validation and helpers
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [0.1, np.float64(0.1), sympy.Float("0.1"), "0.1"])
def test_float_lambda_rejected(bad):
    with pytest.raises(ValueError, match="lambda_H"):
        regression_optimum_exact(Y2, bad, 1, 2)
    with pytest.raises(ValueError, match="lambda_W"):
        regression_optimum_exact(Y2, 1, bad, 2)


@pytest.mark.parametrize("bad", [0, -1, "-1/10", Fraction(-1, 3), sympy.Rational(-2, 7)])
def test_nonpositive_lambda_rejected(bad):
    with pytest.raises(ValueError, match="lambda_H"):
        regression_optimum_exact(Y2, bad, 1, 2)
    with pytest.raises(ValueError, match="lambda_W"):
        regression_optimum_exact(Y2, 1, bad, 2)


@pytest.mark.parametrize(
    "bad",
    [
        [[0.5, 1], [1, 2]],
        np.array([[0.0, 1.0], [1.0, 2.0]]),
        [[sympy.Float(1), 0], [1, 2]],
        [[sympy.sqrt(2), 0], [1, 2]],
    ],
)
def test_inexact_targets_rejected(bad):
    with pytest.raises(ValueError, match="targets"):
        regression_optimum_exact(bad, 1, 1, 2)


def test_bad_feature_dim_rejected():
    for bad in (0, -1, 1.0, True):
        with pytest.raises(ValueError, match="feature_dim"):
            regression_optimum_exact(Y2, 1, 1, bad)


def test_exact_inputs_accepted_in_all_forms():
    ref = regression_optimum_exact(Y2, "1/10", "1/5", 2)
    for lam_h, lam_w in [
        (Fraction(1, 10), Fraction(1, 5)),
        (sympy.Rational(1, 10), sympy.Rational(1, 5)),
    ]:
        other = regression_optimum_exact(
            [[Fraction(v) for v in row] for row in Y2], lam_h, lam_w, np.int64(2)
        )
        assert other.loss == ref.loss and other.WWT == ref.WWT


def test_bias_false_rejects_nonzero_bias():
    with pytest.raises(ValueError, match="bias=False"):
        objective_gradient_exact(Y2, 1, 1, sympy.zeros(4, 2), sympy.zeros(2, 2), [1, 0], False)


def test_casus_irreducibilis_raises_clear_error():
    # Irreducible cubic characteristic polynomial with three real roots: no real radicals.
    targets = [[0, 0, 0], [1, 2, 0], [3, 1, 1], [4, 5, -1], [2, 2, 3]]
    with pytest.raises(ValueError, match="complex radicals"):
        regression_optimum_exact(targets, 1, 1, 3)


def test_to_float_shapes_and_precision():
    x = to_float(sympy.Matrix([[sympy.sqrt(2), 1], [sympy.Rational(1, 3), 0]]))
    assert x.dtype == np.float64 and x.shape == (2, 2)
    np.testing.assert_array_equal(x, np.array([[np.sqrt(2.0), 1.0], [1.0 / 3.0, 0.0]]))
    s = to_float(sympy.sqrt(3) - sympy.sqrt(2))
    assert isinstance(s, np.float64)
    np.testing.assert_allclose(s, np.sqrt(3.0) - np.sqrt(2.0), rtol=1e-15)
