"""The reference owner with unequal classes: theory.compare, theory.classification.optimum_of
and the sweep's closed-form columns hold MSE solutions with any class sizes against
theory.imbalanced_mse, and cross-entropy with unequal classes against the certified convex
computation of theory.ce_convex."""

import numpy as np
import pytest

import theory
import ufm
from theory import classification as tc

SIZES = (40, 20, 8, 8)  # Dang et al., ICML 2023: lambda_H = lambda_W = 0.035, d = 8


def _problem(bias, loss="mse", sizes=SIZES, lam=0.035):
    labels = np.repeat(np.arange(len(sizes), dtype=np.int32), sizes)
    return ufm.ClassificationUFM(labels, len(sizes), lam, lam, feature_dim=8, loss=loss, bias=bias)


@pytest.mark.slow
@pytest.mark.parametrize("bias", ["none", "free", 0.5])
def test_compare_passes_at_the_optimum_and_measures_a_planted_defect(bias):
    p = _problem(bias)
    sol = ufm.solve(p)
    cmp = theory.compare(sol, p)
    assert cmp.available and cmp.passed(1e-8), cmp.table(1e-8)
    assert set(cmp.metrics) == {"NC1"}
    # W -> 1.01 W: the relative error of W W^T is 1.01^2 - 1 = 0.0201 exactly.
    H, W, b = sol.params
    bad = sol._replace(params=ufm.Params(H, 1.01 * W, b))
    err = theory.compare(bad, p).errors
    assert err["WWT"] == pytest.approx(0.0201, rel=1e-6)
    assert err["class_mean_gram"] < 1e-8


@pytest.mark.parametrize("bias, expected", [("none", 0.389674093369), ("free", 0.265882848880)])
def test_optimum_of_any_class_sizes(bias, expected):
    assert float(tc.optimum_of(_problem(bias)).loss) == pytest.approx(expected, abs=1e-12)


def test_cross_entropy_with_unequal_classes_is_certified():
    p = _problem("free", loss="ce")
    ref = theory.reference(p)
    assert ref.available and ref.convex
    opt = tc.optimum_of(p)
    assert opt.how.startswith("certified convex computation") and opt.gap <= 1e-11


@pytest.mark.slow
def test_sweep_columns_and_death_thresholds():
    # Bias-free classes of n_k die at lambda_H lambda_W = n_k / N^2 (N = 76): 8 / 76^2 = 1.4e-3
    # lies between the two lambdas^2 below, so the small classes die in the second row only.
    p = _problem("none")
    table = ufm.sweep(p, {"lambda_H": [0.02, 0.05]})
    assert np.all(table["status"] == "successful"), table["status"]
    assert np.max(np.abs(table["loss_gap"])) < 1e-10
    assert np.max(table["err_gram_W"]) < 1e-8 and np.max(table["err_class_mean_gram"]) < 1e-8
    assert list(table["rank_theory"]) == [4, 2]
    np.testing.assert_array_equal(table["rank"], table["rank_theory"])
    levels = theory.reference(p).thresholds(p, ("lambda_H",))
    assert [t["value"] for t in levels] == pytest.approx([n / 76**2 for n in (40, 20, 8)])
