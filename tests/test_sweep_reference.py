"""The sweep's closed-form columns come from the problem's ``theory.reference``, and every NaN
column of a table is explained in its metadata."""

from __future__ import annotations

import numpy as np
import pytest

import theory
import ufm
from ufm._cli.check import default_targets

LAMS = [0.05, 0.5]


@pytest.fixture(scope="module")
def regression():
    return ufm.RegressionUFM(default_targets(3, 40, 0), 0.1, 0.1, 6)


@pytest.mark.slow
def test_nxn_path_explains_the_metrics_it_does_not_measure(regression):
    t = ufm.sweep(regression, {"lambda_H": LAMS}, progress=False)
    notes = t.meta["nan_columns"]
    assert set(notes) == {"nrc1", "nrc2"} and all("n x n path" in v for v in notes.values())
    assert np.all(np.isnan(t["nrc1"])) and np.all(np.isfinite(t["nrc3"]))
    assert t.meta["dtype"] == "float64"
    # The thresholds are the reference's.
    ref = theory.reference(regression)
    assert t.meta["thresholds"] == ref.thresholds(regression, ("lambda_H",))
    with pytest.warns(DeprecationWarning, match="path="):
        full = ufm.sweep(regression, {"lambda_H": LAMS}, progress=False, reduced=False)
    assert full.meta["nan_columns"] == {} and np.all(np.isfinite(full["nrc1"]))
    np.testing.assert_allclose(full["loss_theory"], t["loss_theory"], rtol=1e-12)


@pytest.mark.slow
def test_a_zero_lambda_row_is_nan_and_said_so(regression):
    t = ufm.sweep(regression, {"lambda_H": [0.0, 0.1]}, solver="lbfgs", progress=False)
    assert np.isnan(t["loss_theory"][0]) and t["rank_theory"][0] == -1
    assert np.isfinite(t["loss_theory"][1]) and t["rank_theory"][1] >= 0
    assert "lambda_H or lambda_W is 0" in t.meta["nan_rows"]


@pytest.mark.slow
def test_classification_columns_name_the_class_mean_gram():
    labels = np.repeat(np.arange(3), 2)
    p = ufm.ClassificationUFM(labels, 3, 1e-2, 1e-2, 4, loss="mse", bias="free")
    t = ufm.sweep(p, {"lambda_H": LAMS}, progress=False)
    assert "err_class_mean_gram" in t.names and "err_gram_H" not in t.names
    assert np.max(t["err_class_mean_gram"]) < 1e-7


@pytest.mark.slow
def test_deep_relu_outside_the_closed_form_is_nan_with_the_reason():
    labels = np.repeat(np.arange(3), 2)
    p = ufm.DeepUFM.from_labels(labels, 3, 5e-3, 5e-3, (4, 4, 4), "relu")
    t = ufm.sweep(p, {"lambda_H": [5e-3]}, solver="lbfgs", max_steps=50, progress=False)
    reason = theory.reference(p).reason
    assert "L = 3 >= 3" in reason
    assert np.isnan(t["loss_theory"][0]) and t["rank_theory"][0] == -1 and t["rank"][0] >= 0
    assert t.meta["nan_columns"]["loss_theory"] == reason
    assert "err_gram_H" in t.meta["nan_columns"]
