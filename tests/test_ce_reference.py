"""The reference owner for cross-entropy with any class sizes and label smoothing:
theory.classification.optimum_of (one entry point, and how each answer is known),
theory.compare against the certified convex optimum, sweep columns and thresholds, and the
width below which theory only gives a lower bound."""

import numpy as np
import pytest

import theory
import ufm
from theory import ce_convex as cc
from theory import classification as tc
from theory import label_smoothing as tls

SIZES = (5, 3, 2, 2)  # N = 12, K = 4: the shapes of tests/test_ce_convex.py's solves
LABELS = np.repeat(np.arange(4, dtype=np.int32), SIZES)


def _problem(bias=0.3, d=3, delta=0.1, lam=3e-3, labels=LABELS):
    return ufm.ClassificationUFM(labels, 4, lam, 2 * lam, d, "ce", bias, label_smoothing=delta)


def test_optimum_of_says_how_the_answer_is_known():
    o = tc.optimum_of(_problem())
    assert o.how.startswith("certified convex computation") and 0 <= o.gap + 1e-14 <= 1e-11
    assert o.exact and o.rank == 3
    balanced = tc.balanced_labels(4, 3)
    ob = tc.optimum_of(_problem(labels=balanced))
    assert ob.how.startswith("closed form") and ob.gap == 0.0 and ob.rank == 3
    ref = tls.optimum(4, 3, 3e-3, 6e-3, 0.1, 3, 0.3)
    assert float(ob.loss) == pytest.approx(float(ref.loss), rel=1e-14)
    np.testing.assert_allclose(ob.WWT, ref.WWT, rtol=1e-13)
    # The convex computation agrees with the balanced closed form.
    oc = cc.optimum_of(_problem(labels=balanced))
    assert abs(oc.loss - float(ob.loss)) <= 1e-11
    # MSE with unequal classes: the soft-thresholding closed form (Dang et al.'s check).
    p = ufm.ClassificationUFM(np.repeat(np.arange(4), (40, 20, 8, 8)), 4, 0.035, 0.035, 8)
    om = tc.optimum_of(p)
    assert om.how.startswith("closed form") and float(om.loss) == pytest.approx(
        0.389674093369, abs=1e-12
    )


def test_compare_holds_an_imbalanced_solution():
    p = _problem()
    sol = ufm.solve(p, "lbfgs")
    cmp = theory.compare(sol, p)
    assert cmp.available and cmp.passed(1e-8), cmp.table(1e-8)
    assert cmp.rank_theory == 3 and set(cmp.metrics) == {"NC1"}
    # W -> 1.01 W: the relative error of W W^T is 1.01^2 - 1 = 0.0201 exactly.
    H, W, b = sol.params
    bad = sol._replace(params=ufm.Params(H, 1.01 * W, b))
    err = theory.compare(bad, p).errors
    assert err["WWT"] == pytest.approx(0.0201, rel=1e-6) and err["class_mean_gram"] < 1e-8
    # The sweep's host-side columns for the same solution (one row).
    ref = theory.reference(p)
    cols = ref.columns(p, sol.params, sol.loss)
    rows = {k: np.array(v)[None] for k, v in cols.items()}
    rows["loss"] = np.array([float(sol.loss)])
    ref.host_columns(p, {"lambda_H": np.array([3e-3])}, rows)
    assert abs(rows["loss_gap"][0]) < 1e-10 and rows["err_gram_W"][0] < 1e-8
    assert rows["err_class_mean_gram"][0] < 1e-8 and rows["rank_theory"][0] == 3


def test_narrow_width_is_refused_with_a_reason():
    with pytest.warns(UserWarning, match="feature_dim"):
        p = _problem(d=2)
    ref = theory.reference(p)
    assert not ref.available and "lower bound" in ref.reason
    o = tc.optimum_of(p)
    assert not o.exact and "lower bound" in o.how
    # Where the optimum's rank fits (the minority rows coincide at larger lambda), it is exact.
    lam = 0.9 * 0.9 * np.sqrt(2) / 12  # above the level (1 - delta) sqrt(2)/N of lambda
    with pytest.warns(UserWarning, match="feature_dim"):
        q = _problem(d=2, lam=lam)
    assert theory.reference(q).available and tc.optimum_of(q).rank <= 2


def test_thresholds_are_the_coincidence_levels():
    ref = theory.reference(_problem())
    (t,) = ref.thresholds(_problem(), ("lambda_H",))
    assert t["value"] == pytest.approx(0.81 * 2 / 144, rel=1e-14)
    assert t["value"] == pytest.approx(cc.coincidence_level(SIZES, 2, 0.1) ** 2, rel=1e-14)
    assert ref.thresholds(_problem(), ("label_smoothing",)) == []


@pytest.mark.slow
def test_sweep_columns():
    res = ufm.sweep(_problem(bias="free"), {"lambda_H": [1e-3, 1e-2, 0.0]}, solver="lbfgs")
    df = res.to_pandas()
    ok = df["lambda_H"] > 0
    assert np.all(np.abs(df.loc[ok, "loss_gap"]) < 1e-10)
    assert np.all(df.loc[ok, "err_gram_W"] < 1e-8)
    assert np.isnan(df.loc[~ok, "loss_theory"]).all()
