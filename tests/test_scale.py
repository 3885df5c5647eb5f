"""A ``successful`` status means the closed form's accuracy at every scale of data and
regularisation (issue: no silent wrong answers, class 1).

The stopping test of ``ufm/_iterate.py`` is scale-free, so these properties hold over lambdas
from 1e-14 to 1e3 and targets scaled from 1e-6 to 1e6. The documented accuracy (README,
"Statuses"): relative Gram-matrix errors <= 1e-8 in float64 and <= 1e-4 in float32, the loss
within 1e-8 (float64) of the closed form.
"""

import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import theory
import ufm

ACCURACY = {np.float64: 1e-8, np.float32: 1e-4}
GRAMS = ("WWT", "feature_gram", "class_mean_gram")

_Y = np.random.default_rng(0).normal(size=(60, 3)) @ np.random.default_rng(1).normal(size=(3, 3))


def _assert_promise(sol, problem, dtype):
    cmp = theory.compare(sol, problem)
    if cmp.status != "successful":
        return cmp.status
    tol = ACCURACY[dtype]
    for k in GRAMS:
        if k in cmp.errors:
            assert abs(cmp.errors[k]) <= tol, (k, cmp.errors, problem)
    if dtype == np.float64:
        assert abs(cmp.errors["loss"]) <= tol, (cmp.errors, problem)
    return cmp.status


@settings(max_examples=16)
@given(
    log_scale=st.floats(-6, 6),
    log_lh=st.floats(-14, 3),
    log_lw=st.floats(-14, 3),
    bias=st.booleans(),
    dtype=st.sampled_from((np.float64, np.float32)),
)
def test_exact_regression_successful_means_accurate(log_scale, log_lh, log_lw, bias, dtype):
    Y = (10.0**log_scale * (_Y + 1.0)).astype(dtype)
    p = ufm.RegressionUFM(Y, 10.0**log_lh, 10.0**log_lw, 5, bias=bias)
    status = _assert_promise(ufm.solve(p), p, dtype)
    if dtype == np.float64:
        # float64 has the room: every such instance converges.
        assert status == "successful"


@pytest.mark.parametrize("lam", [1e-14, 1e-12, 1e-8, 1e-3, 1e3])
@pytest.mark.parametrize("scale", [1e-6, 1.0, 1e6])
def test_issue_instance_small_lambda(lam, scale):
    """The reported instance: (M, n, d) = (100, 3, 8), lambda_H = lambda_W = lambda; the old
    absolute tolerance stopped at a relative W W^T error of 5e-4 at lambda = 1e-12."""
    rng = np.random.default_rng(0)
    Y = scale * (rng.normal(size=(100, 3)) @ rng.normal(size=(3, 3)) + 1.0)
    p = ufm.RegressionUFM(Y, lam, lam, 8)
    assert _assert_promise(ufm.solve(p), p, np.float64) == "successful"


@pytest.mark.parametrize("lam", [1e-12, 1e-8, 1e-2])
@pytest.mark.parametrize("bias", ["none", "free"])
def test_exact_classification_small_lambda(lam, bias):
    labels = np.repeat(np.arange(3), 5)
    p = ufm.ClassificationUFM(labels, 3, lam, lam, 4, loss="mse", bias=bias)
    assert _assert_promise(ufm.solve(p), p, np.float64) == "successful"


def test_gradient_solver_never_claims_success_wrongly():
    """L-BFGS from the papers' N(0, 0.1^2) init is badly scaled for targets of size 1e6 or
    lambdas of 1e-12: it may not converge, but a successful status must still be accurate."""
    statuses = []
    for scale, lam in [(1e6, 1e-1), (1.0, 1e-12), (1e-6, 1e-4), (1.0, 1e-1)]:
        p = ufm.RegressionUFM(scale * (_Y + 1.0), lam, lam, 5)
        sol = ufm.solve(p, "lbfgs", max_steps=400)
        statuses.append(_assert_promise(sol, p, np.float64))
    assert statuses[-1] == "successful"


def test_zero_optimal_value_needs_atol():
    """At zero regularisation the optimal value is 0 and no relative test holds: the default
    tolerance ends at max_steps, an explicit atol (units of the objective) converges."""
    p = ufm.RegressionUFM(_Y, 0.0, 0.0, 5, bias=False)
    assert int(ufm.solve(p, "lbfgs", max_steps=300).status) == ufm.Status.max_steps_reached
    sol = ufm.solve(p, "lbfgs", max_steps=300, atol=1e-12)
    assert int(sol.status) == ufm.Status.successful and float(sol.loss) < 1e-20
    jax.block_until_ready(sol)
