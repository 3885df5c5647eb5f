"""The exact solver with fewer features than outputs (``d < n``, ``ufm/_exact.py``).

There ``K = A A^T + rho I`` has ``n - d`` eigenvalues ``rho`` beside ones of order ``||A||^2``;
with lambdas of 1e-10 and targets of size 1e6 its Cholesky factorisation fails. Where
``||A||^2 / rho >= 0.01 / eps`` the reduced objective goes through ridge solutions instead
(below it, ``K`` is formed: the ridge form's residual ``V - A X`` would floor the gradient
when the rank-``d`` model explains all the variance). Checked here: both forms against an
independent numpy computation of the ``K`` form where it is accurate, and solves in both
regimes against the closed form of :mod:`theory`, on the full and the sweep paths."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import theory
import ufm
from ufm import _exact
from ufm._types import MSEData


def _targets(scale=1.0):
    rng = np.random.default_rng(0)
    return rng.standard_normal((50, 3)) @ np.diag([3.0, 2.0, 1.0]) * scale


def _k_form(A, Sigma_diag, mean, rho, lam_W, bias, lam_b=0.0):
    """``F(A)`` of ``ufm/_exact.py``'s docstring with ``K`` formed, in numpy (float64)."""
    n = A.shape[0]
    K = A @ A.T + rho * np.eye(n)
    if bias == "none":
        b = np.zeros(n)
    elif bias == "free":
        b = mean
    else:
        b = rho * np.linalg.solve(rho * np.eye(n) + lam_b * K, mean)
    z = mean - b
    val = (
        0.5 * rho * (np.trace(np.linalg.solve(K, np.diag(Sigma_diag))) + z @ np.linalg.solve(K, z))
    )
    val += 0.5 * lam_W * np.sum(A**2)
    if bias == "reg":
        val += 0.5 * lam_b * b @ b
    return val


@pytest.mark.parametrize("form", ["ridge", "K"])
@pytest.mark.parametrize("bias", ["none", "free", "reg"])
@pytest.mark.parametrize("r", [1, 2])
def test_thin_form_equals_the_k_form(form, bias, r, monkeypatch):
    """Value and gradient at random ``A (3, r)`` with moderate ``rho``, where ``K`` is well
    conditioned, with either form forced: both equal the numpy ``K`` form (value to 1e-13,
    gradient against its central differences to 1e-7)."""
    monkeypatch.setattr(_exact, "_k_is_safe", lambda A, rho: jnp.asarray(form == "K"))
    rng = np.random.default_rng(r)
    w = np.array([0.5, 2.0, 7.0])
    mean = np.array([0.3, -1.0, 2.0])
    rho, lam_W, lam_b = 0.2, 0.05, 0.7
    red = _exact.Reduced(jnp.diag(w), jnp.asarray(mean), jnp.eye(r, 4), None)
    data = MSEData(None, rho, lam_W, lam_b if bias == "reg" else 0.0, bias, 4)
    A = rng.standard_normal((3, r))
    val, grad = jax.value_and_grad(_exact.reduced_objective)(jnp.asarray(A), red, data)
    ref = _k_form(A, w, mean, rho, lam_W, bias, lam_b)
    np.testing.assert_allclose(val, ref, rtol=1e-13)
    h = 1e-6
    fd = np.zeros_like(A)
    for idx in np.ndindex(A.shape):
        e = np.zeros_like(A)
        e[idx] = h
        fd[idx] = (
            _k_form(A + e, w, mean, rho, lam_W, bias, lam_b)
            - _k_form(A - e, w, mean, rho, lam_W, bias, lam_b)
        ) / (2 * h)
    np.testing.assert_allclose(grad, fd, rtol=1e-7, atol=1e-9)


@pytest.mark.slow
@pytest.mark.parametrize("d", [1, 2])
def test_tiny_lambdas_and_large_targets_solve_to_the_closed_form(d):
    """``d < n = 3``, lambdas 1e-10, targets of size 1e6 (the Cholesky form failed here):
    ``successful`` at the closed form's loss, predictions and rank. (``W W^T`` is not held:
    ``f`` cannot tell the split between ``H`` and ``W`` there, README under ``successful``.)"""
    Y = _targets(1e6)
    p = ufm.RegressionUFM(Y, 1e-10, 1e-10, d)
    sol = ufm.solve(p)
    assert int(sol.status) == ufm.Status.successful, sol.message
    opt = theory.regression.optimum(Y, 1e-10, 1e-10, d)
    np.testing.assert_allclose(sol.loss, opt.loss, rtol=1e-12)
    cmp = theory.compare(sol, p)
    assert cmp.errors["predictions"] < 1e-10, cmp.errors
    assert cmp.rank_theory == cmp.rank_solution == d


@pytest.mark.slow
@pytest.mark.parametrize("d", [1, 2])
def test_thin_solves_hold_the_documented_gram_accuracy_at_unit_scale(d):
    Y = _targets()
    p = ufm.RegressionUFM(Y, 1e-4, 1e-4, d)
    sol = ufm.solve(p)
    assert int(sol.status) == ufm.Status.successful, sol.message
    cmp = theory.compare(sol, p)
    assert max(cmp.errors["WWT"], cmp.errors["feature_gram"]) < 1e-8, cmp.errors


@pytest.mark.slow
@pytest.mark.parametrize("d", [1, 2])
def test_rank_deficient_targets_that_d_features_explain(d):
    """Rank-1 targets x 1e6 with ``d >= 1 = rank`` and moderate lambdas: the fit is complete,
    so the penalty is all of ``f`` and the Gram matrices are determined. The ridge form alone
    ended ``max_steps_reached`` here (its residual ``V - A X`` floored the gradient); the
    ``K`` form, used below its bound, reaches the closed form."""
    z = np.random.default_rng(0).standard_normal(30)
    Y = np.outer(z, [1.0, 2.0, -1.0]) * 1e6
    p = ufm.RegressionUFM(Y, 1e-2, 1e-1, d, bias=False)
    sol = ufm.solve(p)
    assert int(sol.status) == ufm.Status.successful, sol.message
    cmp = theory.compare(sol, p)
    assert max(cmp.errors["WWT"], cmp.errors["feature_gram"], abs(cmp.errors["loss"])) < 1e-8


@pytest.mark.slow
def test_the_sweep_path_agrees_in_the_same_corner():
    """``ufm.sweep``'s ``n x n`` path (nothing of size N): every point ``successful`` at the
    closed-form loss, for lambdas 1e-10 and 1e-6 with ``d = 2 < n``."""
    Y = _targets(1e6)
    p = ufm.RegressionUFM(Y, 1e-10, 1e-10, 2)
    table = ufm.sweep(p, {"lambda_H": [1e-10, 1e-6], "lambda_W": [1e-10, 1e-6]})
    assert list(table["status"]) == ["successful"] * 4, list(table["status"])
    for lh, lw, loss in zip(table["lambda_H"], table["lambda_W"], table["loss"], strict=True):
        ref = theory.regression.optimum(Y, lh, lw, 2).loss
        np.testing.assert_allclose(loss, ref, rtol=1e-11)
