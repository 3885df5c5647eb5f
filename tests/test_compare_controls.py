"""Negative controls for ``theory.compare``: a solution at the optimum with one known defect
planted, and every reported error and metric held to its analytic value.

Every problem kind is solved to the documented float64 accuracy first (a relative error of
1e-9 or better in every compared quantity), then one thing is changed: the features or a head
scaled by ``s = 1.01``, ``H`` and ``W`` rebalanced, a bias shifted, one class mean scaled, one
layer of a deep solution scaled, a spread planted inside the classes or off the head's row
space. The value each error must then take follows from its definition in
``theory.Comparison`` (a relative Frobenius error, or ``(L - L*)/|L*|`` for the loss):

* ``G -> s^2 G`` for a Gram of scaled factors, so its relative error is ``s^2 - 1 = 0.0201``;
  a Gram ``G -> D G D`` with ``D = diag(s, 1, ...)`` when one row is scaled.
* Predictions (logits) ``P = A + 1 b^T`` with ``A`` the part through the factors: scaling one
  factor gives ``(s - 1) ||A|| / ||P||``; a bias shift ``delta`` gives
  ``sqrt(M) ||delta|| / ||P||``.
* The loss: at a stationary point ``f'(1) = 0``, and every MSE objective is exactly quadratic in
  the scale of one factor (also through a ReLU, which is positively homogeneous), so
  ``f(s) - f(1) = (s - 1)^2 / 2 * f''(1)`` with ``f''(1) = ||A||^2 / M + lambda ||F||^2`` for the
  scaled factor ``F`` (its penalty written as in the problem's docstring). A bias shift costs
  ``(1 + lambda_b) ||delta||^2 / 2`` (the residual sums to ``-lambda_b b`` over the samples at
  the optimum). Cross-entropy has no such closed form: its loss is transcribed in numpy here.
* Metrics are held to the transcriptions of their definitions in
  ``test_metric_definitions.py``.

The expected values are computed from the solution's own arrays (numpy, float64), not from
``theory``, so a wrong closed form, a wrong error formula or a wrong normalisation all fail.
"""

import jax
import numpy as np
import pytest
from conftest import random_targets
from test_metric_definitions import (
    ref_etf_distance,
    ref_frame_distance,
    ref_nc1,
    ref_nc2,
    ref_nc3,
    ref_nc4,
    ref_nrc1,
    ref_nrc2,
    ref_nrc3,
)

import theory
import ufm
from theory import deep

S = 1.01  # the planted scale
BASE = 1e-9  # every error of the unplanted solutions (float64, away from thresholds)
REL = 1e-6  # planted values are >= 1e-4 with BASE = 1e-9 noise: 1e-6 relative is safe


def _np(x):
    return np.asarray(x, np.float64)


def _plant(sol, **changes):
    return sol._replace(params=sol.params._replace(**changes))


def _check(cmp, expected: dict, table: str = ""):
    """Every reported error equals its expected value: ``rel=REL`` for a planted (nonzero) one,
    ``|err| <= 10 BASE`` for one the defect must leave alone. The keys must match exactly, so
    an error that compare starts or stops reporting is seen here."""
    assert set(cmp.errors) == set(expected), (sorted(cmp.errors), sorted(expected))
    for key, want in expected.items():
        got = cmp.errors[key]
        if want == 0:
            assert abs(got) <= 10 * BASE, f"{key}: {got} should be 0\n{table}"
        else:
            assert got == pytest.approx(want, rel=REL), f"{key}: {got} != {want}\n{table}"


def _check_metrics(cmp, expected: dict):
    assert set(cmp.metrics) == set(expected), (sorted(cmp.metrics), sorted(expected))
    for key, want in expected.items():
        got = cmp.metrics[key]
        if want < 1e-14:
            assert abs(got) < 1e-12, f"{key}: {got} should be 0"
        else:
            assert got == pytest.approx(want, rel=1e-8), f"{key}: {got} != {want}"


def _good(sol, problem):
    cmp = theory.compare(sol, problem)
    assert cmp.passed(BASE), cmp.table(BASE)
    return cmp


# --- regression ---------------------------------------------------------------------------


@pytest.fixture(scope="module", params=[True, False], ids=["bias", "no_bias"])
def regression(request):
    Y = random_targets(np.random.default_rng(0), 30, 3)
    p = ufm.RegressionUFM(Y, 0.05, 0.05, 5, bias=request.param)
    sol = ufm.solve(p)
    cmp = _good(sol, p)
    assert cmp.rank_theory == 3  # every direction kept: the Grams are nonzero
    return p, sol, cmp


def _regression_parts(p, sol):
    H, W, b = (_np(x) for x in sol.params)
    A = H @ W.T
    P = A + (b if p.bias else 0.0)
    return H, W, b, A, P


def _regression_metrics(p, H, W):
    Y, c = _np(p.targets), float(p.lambda_H * p.lambda_W)
    return {
        "NRC1": ref_nrc1(H, 3, center=p.bias),
        "NRC2": ref_nrc2(H, W),
        "NRC3(gamma=c)": ref_nrc3(W, Y, c, center=p.bias),
    }


def _bias_error(p, value):
    return {"bias": value} if p.bias else {}


@pytest.mark.slow
def test_regression_scaled_features(regression):
    p, sol, good = regression
    H, W, b, A, P = _regression_parts(p, sol)
    M, lW, L = H.shape[0], float(p.lambda_W), good.loss_theory
    cmp = theory.compare(_plant(sol, H=S * H), p)
    gap = (S - 1) ** 2 / 2 * (np.sum(A**2) / M + lW * np.sum(W**2))  # lH|H|^2/M = lW|W|^2
    expected = {
        "WWT": 0,
        "feature_gram": S**2 - 1,
        "predictions": (S - 1) * np.linalg.norm(A) / np.linalg.norm(P),
        "loss": gap / L,
        **_bias_error(p, 0),
    }
    _check(cmp, expected, cmp.table())
    assert expected["predictions"] > 1e-3 and expected["loss"] > 1e-5
    _check_metrics(cmp, _regression_metrics(p, S * H, W))  # scale-free: still 0
    assert not cmp.passed(1e-3)


def test_regression_scaled_head(regression):
    p, sol, good = regression
    H, W, b, A, P = _regression_parts(p, sol)
    M, lW, L = H.shape[0], float(p.lambda_W), good.loss_theory
    cmp = theory.compare(_plant(sol, W=S * W), p)
    gap = (S - 1) ** 2 / 2 * (np.sum(A**2) / M + lW * np.sum(W**2))
    expected = {
        "WWT": S**2 - 1,
        "feature_gram": 0,
        "predictions": (S - 1) * np.linalg.norm(A) / np.linalg.norm(P),
        "loss": gap / L,
        **_bias_error(p, 0),
    }
    _check(cmp, expected, cmp.table())
    _check_metrics(cmp, _regression_metrics(p, H, S * W))


def test_regression_rebalanced_factors_keep_the_predictions(regression):
    """``H -> t H``, ``W -> W / t``: the same predictions, both Grams off, the penalty up by
    ``lambda_W ||W||^2 (t - 1/t)^2 / 2``."""
    p, sol, good = regression
    H, W, b, A, P = _regression_parts(p, sol)
    t, lW, L = S, float(p.lambda_W), good.loss_theory
    cmp = theory.compare(_plant(sol, H=t * H, W=W / t), p)
    expected = {
        "WWT": 1 - t**-2,
        "feature_gram": t**2 - 1,
        "predictions": 0,
        "loss": lW * np.sum(W**2) * (t - 1 / t) ** 2 / 2 / L,
        **_bias_error(p, 0),
    }
    _check(cmp, expected, cmp.table())


def test_regression_rotation_is_no_defect(regression):
    """``H -> H Q``, ``W -> W Q`` for an orthogonal ``Q``: the same solution (no false alarm)."""
    p, sol, _ = regression
    H, W, b, A, P = _regression_parts(p, sol)
    Q = np.linalg.qr(np.random.default_rng(1).normal(size=(5, 5)))[0]
    cmp = theory.compare(_plant(sol, H=H @ Q, W=W @ Q), p)
    _check(cmp, {"WWT": 0, "feature_gram": 0, "predictions": 0, "loss": 0, **_bias_error(p, 0)})
    assert cmp.passed(10 * BASE)


def test_regression_shifted_bias():
    Y = random_targets(np.random.default_rng(0), 30, 3)
    p = ufm.RegressionUFM(Y, 0.05, 0.05, 5)
    sol = ufm.solve(p)
    good = _good(sol, p)
    H, W, b, A, P = _regression_parts(p, sol)
    delta = np.array([0.01, -0.02, 0.005])
    M, L = H.shape[0], good.loss_theory
    cmp = theory.compare(_plant(sol, b=b + delta), p)
    expected = {
        "WWT": 0,
        "feature_gram": 0,
        "predictions": np.sqrt(M) * np.linalg.norm(delta) / np.linalg.norm(P),
        "bias": np.linalg.norm(delta) / np.linalg.norm(b),
        "loss": np.sum(delta**2) / 2 / L,
    }
    _check(cmp, expected, cmp.table())


def test_regression_one_output_scaled(regression):
    """Row 0 of ``W`` scaled: ``W W^T -> D W W^T D``; NRC3 sees the shape change, NRC1 and
    NRC2 (the row space is the same) do not."""
    p, sol, good = regression
    H, W, b, A, P = _regression_parts(p, sol)
    M, lW, L = H.shape[0], float(p.lambda_W), good.loss_theory
    D = np.diag([S, 1.0, 1.0])
    G = W @ W.T
    cmp = theory.compare(_plant(sol, W=D @ W), p)
    gap = (S - 1) ** 2 / 2 * (np.sum(A[:, 0] ** 2) / M + lW * np.sum(W[0] ** 2))
    expected = {
        "WWT": np.linalg.norm(D @ G @ D - G) / np.linalg.norm(G),
        "feature_gram": 0,
        "predictions": (S - 1) * np.linalg.norm(A[:, 0]) / np.linalg.norm(P),
        "loss": gap / L,
        **_bias_error(p, 0),
    }
    _check(cmp, expected, cmp.table())
    mets = _regression_metrics(p, H, D @ W)
    assert mets["NRC3(gamma=c)"] > 1e-6 and mets["NRC1"] < 1e-20 and mets["NRC2"] < 1e-20
    _check_metrics(cmp, mets)


def test_regression_features_off_the_heads_row_space(regression):
    """``H -> H + 1 v^T`` with ``v`` orthogonal to the rows of ``W`` (d = 5 > n = 3): the same
    predictions; the Gram gains ``||v||^2`` on every entry (``H v = 0``), an error of
    ``||1 1^T||_F ||v||^2 = M ||v||^2``; NRC2 (and NRC1 of the centred features, which the shift
    leaves alone) is ``mean_i ||v||^2 / (||h_i||^2 + ||v||^2)``."""
    p, sol, good = regression
    H, W, b, A, P = _regression_parts(p, sol)
    M, lH, L = H.shape[0], float(p.lambda_H), good.loss_theory
    v = 0.05 * np.linalg.svd(W)[2][-1]  # a unit direction in W's null space, scaled
    Hp = H + v
    cmp = theory.compare(_plant(sol, H=Hp), p)
    expected = {
        "WWT": 0,
        "feature_gram": M * np.sum(v**2) / np.linalg.norm(H.T @ H),  # ||H H^T|| = ||H^T H||
        "predictions": 0,
        "loss": lH * np.sum(v**2) / 2 / L,  # lH/(2M) ||1 v^T||^2; the cross term is H v = 0
        **_bias_error(p, 0),
    }
    _check(cmp, expected, cmp.table())
    nrc2 = np.mean(np.sum(v**2) / (np.sum(H**2, axis=1) + np.sum(v**2)))
    mets = _regression_metrics(p, Hp, W)
    assert mets["NRC2"] == pytest.approx(nrc2, rel=1e-10)
    if p.bias:
        assert mets["NRC1"] == pytest.approx(nrc2, rel=1e-10)
    _check_metrics(cmp, mets)


def test_regression_zero_optimum_scales():
    """Above the threshold (``c = 2 lambda_1(Sigma)``) the closed form is ``H = W = 0`` and the
    Gram errors are divided by their natural scales: ``sqrt(lambda_H/lambda_W) sqrt(lambda_1)``
    for ``W W^T`` and ``M sqrt(lambda_1) sqrt(lambda_W/lambda_H)`` for ``H H^T``."""
    Y = random_targets(np.random.default_rng(2), 20, 3)
    Yc = Y - Y.mean(axis=0)
    lam1 = np.linalg.eigvalsh(Yc.T @ Yc / 20)[-1]
    lH, lW = 2.0 * np.sqrt(2 * lam1), np.sqrt(2 * lam1) / 2.0  # c = 2 lambda_1, ratio 2
    p = ufm.RegressionUFM(Y, lH, lW, 4)
    sol = ufm.solve(p)
    good = _good(sol, p)
    assert good.rank_theory == 0
    L = good.loss_theory
    assert L == pytest.approx(np.sum(Yc**2) / 40, rel=1e-12)
    H, W, b = (_np(x) for x in sol.params)
    assert np.max(np.abs(H)) < 1e-9 and np.max(np.abs(W)) < 1e-9
    zH, zW = np.zeros_like(H), np.zeros_like(W)  # the exact zero optimum, plus one defect
    rng = np.random.default_rng(3)
    E, F = 0.1 * rng.normal(size=(3, 4)), 0.1 * rng.normal(size=(20, 4))
    ratio = np.sqrt(lH / lW)
    cmp = theory.compare(_plant(sol, H=zH, W=E), p)
    expected = {
        "WWT": np.linalg.norm(E @ E.T) / (ratio * np.sqrt(lam1)),
        "feature_gram": 0,
        "predictions": 0,  # H = 0
        "bias": 0,
        "loss": lW * np.sum(E**2) / 2 / L,
    }
    _check(cmp, expected, cmp.table())
    assert cmp.rank_solution == 3 and not cmp.passed(1e-3)
    cmp = theory.compare(_plant(sol, H=F, W=zW), p)
    expected.update(
        WWT=0,
        feature_gram=np.linalg.norm(F @ F.T) / (20 * np.sqrt(lam1) / ratio),
        loss=lH * np.sum(F**2) / 40 / L,
    )
    _check(cmp, expected, cmp.table())
    _check_metrics(cmp, {"||H||_F/sqrt(M) at zero optimum": np.linalg.norm(F) / np.sqrt(20)})


# --- classification -----------------------------------------------------------------------

K, PER, D = 4, 3, 6
CLASSIFICATION = [("mse", "none"), ("mse", "free"), ("mse", 0.5), ("ce", "free"), ("ce", "none")]


@pytest.fixture(scope="module", params=CLASSIFICATION, ids=str)
def classification(request):
    loss, bias = request.param
    y = theory.classification.balanced_labels(K, PER)
    p = ufm.ClassificationUFM(y, K, 5e-3, 5e-3, D, loss=loss, bias=bias)
    sol = ufm.solve(p)
    cmp = _good(sol, p)
    assert cmp.rank_theory >= K - 1
    return p, sol, cmp


def _parts(p, sol):
    """Class means, the head, the effective bias (centred for a free CE bias) and the logits of
    the class means, ``A`` without and ``Z = A + b`` with the bias."""
    H, W, b = (_np(x) for x in sol.params)
    y = _np(p.labels).astype(int)
    mu = np.stack([H[y == c].mean(axis=0) for c in range(K)])
    b_eff = b if p.has_bias else np.zeros(K)
    if p.loss == "ce" and p.bias_mode == "free":
        b_eff = b_eff - b_eff.mean()
    A = mu @ W.T
    return H, W, b, y, mu, b_eff, A, A + b_eff


def _lambda_b(p):
    return float(p.lambda_b) if p.bias_mode == "reg" else 0.0


def _objective(p, H, W, b):
    """The classification objective, transcribed (see ``ufm.ClassificationUFM``)."""
    y = _np(p.labels).astype(int)
    Z = H @ W.T + (b if p.has_bias else 0.0)
    if p.loss == "mse":
        data = np.sum((Z - np.eye(K)[y]) ** 2) / (2 * len(y))
    else:
        m = Z.max(axis=1)
        lse = m + np.log(np.sum(np.exp(Z - m[:, None]), axis=1))
        data = np.mean(lse - Z[np.arange(len(y)), y])
    pen = float(p.lambda_H) * np.sum(H**2) / 2 + float(p.lambda_W) * np.sum(W**2) / 2
    return data + pen + _lambda_b(p) * np.sum(b**2) / 2


def _loss_error(p, sol, L, quadratic, **planted):
    """The planted loss error: ``quadratic`` (the analytic MSE value) for MSE, the transcribed
    objective's change for CE (and, for MSE, held to the analytic value as well)."""
    H, W, b = (_np(x) for x in sol.params)
    new = {"H": H, "W": W, "b": b, **planted}
    change = _objective(p, **new) - _objective(p, H, W, b)
    if p.loss == "mse":
        assert change == pytest.approx(quadratic, rel=1e-8)
        return quadratic / L
    return change / L


def _classification_metrics(p, H, W, b_eff):
    y = _np(p.labels).astype(int)
    out = {
        "NC1": ref_nc1(H, y, K),
        "NC2 (ETF distance, centred means)": ref_nc2(H, W, y, K)["etf_means"],
        "NC3 (uncentred means)": ref_nc3(H, W, y, K, center=False),
        "NC4": ref_nc4(H, W, b_eff, y, K),
    }
    if p.loss == "mse" and p.bias_mode == "none":
        out["orthogonal-frame distance W W^T"] = ref_frame_distance(W @ W.T)
    elif p.bias_mode != "reg":
        out["ETF distance W W^T"] = ref_etf_distance(W @ W.T)
    return out


def _has_bias(p, value):
    return {"bias": value} if p.has_bias else {}


@pytest.mark.slow
def test_classification_scaled_features(classification):
    p, sol, good = classification
    H, W, b, y, mu, b_eff, A, Z = _parts(p, sol)
    lH, L = float(p.lambda_H), good.loss_theory
    quad = (S - 1) ** 2 / 2 * (np.sum(A**2) / K + lH * PER * np.sum(mu**2))
    cmp = theory.compare(_plant(sol, H=S * H), p)
    expected = {
        "WWT": 0,
        "class_mean_gram": S**2 - 1,
        "logits": (S - 1) * np.linalg.norm(A) / np.linalg.norm(Z),
        "loss": _loss_error(p, sol, L, quad, H=S * H),
        **_has_bias(p, 0),
    }
    _check(cmp, expected, cmp.table())
    _check_metrics(cmp, _classification_metrics(p, S * H, W, b_eff))


@pytest.mark.slow
def test_classification_scaled_head(classification):
    p, sol, good = classification
    H, W, b, y, mu, b_eff, A, Z = _parts(p, sol)
    lW, L = float(p.lambda_W), good.loss_theory
    quad = (S - 1) ** 2 / 2 * (np.sum(A**2) / K + lW * np.sum(W**2))
    cmp = theory.compare(_plant(sol, W=S * W), p)
    expected = {
        "WWT": S**2 - 1,
        "class_mean_gram": 0,
        "logits": (S - 1) * np.linalg.norm(A) / np.linalg.norm(Z),
        "loss": _loss_error(p, sol, L, quad, W=S * W),
        **_has_bias(p, 0),
    }
    _check(cmp, expected, cmp.table())
    _check_metrics(cmp, _classification_metrics(p, H, S * W, b_eff))


@pytest.mark.slow
def test_classification_one_class_mean_scaled(classification):
    """Every sample of class 0 scaled: ``mu mu^T -> D mu mu^T D``, row 0 of the logits scaled;
    NC1 stays 0 (the class is still collapsed), NC2 and NC3 move."""
    p, sol, good = classification
    H, W, b, y, mu, b_eff, A, Z = _parts(p, sol)
    lH, L = float(p.lambda_H), good.loss_theory
    Hp = np.where((y == 0)[:, None], S * H, H)
    Dm = np.diag([S] + [1.0] * (K - 1))
    G = mu @ mu.T
    quad = (S - 1) ** 2 / 2 * (np.sum(A[0] ** 2) / K + lH * PER * np.sum(mu[0] ** 2))
    cmp = theory.compare(_plant(sol, H=Hp), p)
    expected = {
        "WWT": 0,
        "class_mean_gram": np.linalg.norm(Dm @ G @ Dm - G) / np.linalg.norm(G),
        "logits": (S - 1) * np.linalg.norm(A[0]) / np.linalg.norm(Z),
        "loss": _loss_error(p, sol, L, quad, H=Hp),
        **_has_bias(p, 0),
    }
    _check(cmp, expected, cmp.table())
    mets = _classification_metrics(p, Hp, W, b_eff)
    assert mets["NC1"] < 1e-14 and mets["NC2 (ETF distance, centred means)"] > 1e-4
    assert mets["NC3 (uncentred means)"] > 1e-6
    _check_metrics(cmp, mets)


@pytest.mark.slow
@pytest.mark.parametrize(
    "classification", [c for c in CLASSIFICATION if c[1] != "none"], indirect=True, ids=str
)
def test_classification_shifted_bias(classification):
    """``b -> b + delta`` with ``sum(delta) = 0``: the logits move by ``delta`` in every row.
    A constant shift changes nothing for CE with a free bias (its optimal ``b`` is any multiple
    of ``1``, so compare centres it)."""
    p, sol, good = classification
    assert p.has_bias
    H, W, b, y, mu, b_eff, A, Z = _parts(p, sol)
    L = good.loss_theory
    delta = np.array([0.01, -0.02, 0.005, 0.005])
    ref_b = np.linalg.norm(b_eff)
    if p.loss == "ce":
        assert ref_b < 10 * BASE  # the closed form's centred b is 0: divided by the logits' size
        bias_err = np.linalg.norm(delta) / max(np.linalg.norm(Z) / np.sqrt(K), 1.0)
    else:
        assert ref_b > 1e-2
        bias_err = np.linalg.norm(delta) / ref_b
    quad = (1 + _lambda_b(p)) * np.sum(delta**2) / 2
    cmp = theory.compare(_plant(sol, b=b + delta), p)
    expected = {
        "WWT": 0,
        "class_mean_gram": 0,
        "logits": np.sqrt(K) * np.linalg.norm(delta) / np.linalg.norm(Z),
        "bias": bias_err,
        "loss": _loss_error(p, sol, L, quad, b=b + delta),
    }
    _check(cmp, expected, cmp.table())
    if p.loss == "ce":
        cmp = theory.compare(_plant(sol, b=b + 0.3), p)
        _check(cmp, {k: 0 for k in expected})
        assert cmp.passed(10 * BASE)


@pytest.mark.slow
def test_classification_within_class_spread(classification):
    """``H -> H + E`` with zero class sums in ``E``: the class means (so the Grams and logits)
    are unchanged, NC1 takes its defined value. With ``E`` orthogonal to the head's row space
    NC1 stays 0 (``Sigma_B^+`` sees only the span of the means, which the head's rows span at
    the optimum) and only the loss, ``lambda_H ||E||^2 / 2``, sees the spread."""
    p, sol, good = classification
    H, W, b, y, mu, b_eff, A, Z = _parts(p, sol)
    lH, L = float(p.lambda_H), good.loss_theory
    rng = np.random.default_rng(4)
    E = 0.05 * rng.normal(size=H.shape)
    E -= np.stack([E[y == c].mean(axis=0) for c in range(K)])[y]  # zero class sums
    for name, spread in (("within the head's span", E), ("off it", None)):
        if spread is None:
            Vt = np.linalg.svd(W)[2]
            null = Vt[np.linalg.matrix_rank(W) :]
            assert null.shape[0] >= 1  # d = 6 > rank(W)
            spread = E @ null.T @ null
        quad = np.sum((spread @ W.T) ** 2) / (2 * K * PER) + lH * np.sum(spread**2) / 2
        cmp = theory.compare(_plant(sol, H=H + spread), p)
        expected = {
            "WWT": 0,
            "class_mean_gram": 0,
            "logits": 0,
            "loss": _loss_error(p, sol, L, quad, H=H + spread),
            **_has_bias(p, 0),
        }
        _check(cmp, expected, f"{name}\n{cmp.table()}")
        mets = _classification_metrics(p, H + spread, W, b_eff)
        if name == "off it":
            assert mets["NC1"] < 1e-14
        else:
            assert mets["NC1"] > 1e-4
        _check_metrics(cmp, mets)


# --- deep ---------------------------------------------------------------------------------

DK, DPER, WIDTHS = 3, 2, (4, 4)


def _deep_lambda(ratio, L=2, N=DK * DPER, per=DPER):
    """Equal lambdas placing kappa at ``ratio * kappa_P^crit`` (below it: a nonzero optimum)."""
    P = L + 1
    return ratio * deep.kappa_crit(P) / (N * np.sqrt(per) ** (2.0 / P - 2.0))


@pytest.fixture(scope="module", params=["linear", "relu", "linear-bias"])
def deep_case(request):
    labels = np.repeat(np.arange(DK), DPER)
    if request.param == "linear-bias":
        rng = np.random.default_rng(1)
        Y = rng.normal(size=(8, 3)) @ rng.normal(size=(3, 3)) + 2.0
        p = ufm.DeepUFM(Y, 0.01, 0.01, WIDTHS, "linear", bias=True)
    else:
        lam = _deep_lambda(0.7)
        p = ufm.DeepUFM.from_labels(labels, DK, lam, lam, WIDTHS, request.param)
    sol = ufm.solve(p, "lbfgs", restarts=8, key=jax.random.PRNGKey(0))
    cmp = theory.compare(sol, p)
    assert cmp.rank_theory > 0 and cmp.passed(1e-8), cmp.table(1e-8)
    return p, sol, cmp


def _forward(p, H, Ws, b):
    """Layer features ``X_1 = H``, ``X_{l+1} = sigma(X_l W_l^T)`` and ``Z = X_L W_L^T + b``."""
    act = (lambda x: np.maximum(x, 0.0)) if p.activation == "relu" else (lambda x: x)
    Xs = [H]
    for W in Ws[:-1]:
        Xs.append(act(Xs[-1] @ W.T))
    Z = Xs[-1] @ Ws[-1].T + (b if p.bias else 0.0)
    return Xs, Z


def _deep_expected(p, sol, L, planted, loss_change):
    """Expected errors of ``planted = (H, Ws, b)`` against the solution's own layers."""
    H, Ws, b = _np(sol.params.H), [_np(W) for W in sol.params.Ws], _np(sol.params.b)
    Xs, Z = _forward(p, H, Ws, b)
    Xp, Zp = _forward(p, *planted)
    out = {
        "WWT": np.linalg.norm(planted[1][-1] @ planted[1][-1].T - Ws[-1] @ Ws[-1].T)
        / np.linalg.norm(Ws[-1] @ Ws[-1].T),
        "predictions": np.linalg.norm(Zp - Z) / np.linalg.norm(Z),
        "loss": loss_change / L,
    }
    for layer, (X, Xq) in enumerate(zip(Xs, Xp, strict=True), start=1):
        if layer == 1 and p.activation == "relu":
            continue  # the first layer's Gram is not unique for ReLU: not reported
        G = X @ X.T
        out[f"feature_gram_{layer}"] = np.linalg.norm(Xq @ Xq.T - G) / np.linalg.norm(G)
    if p.bias:
        out["bias"] = np.linalg.norm(planted[2] - b) / np.linalg.norm(b)
    return {k: (0 if abs(v) < 1e-14 else v) for k, v in out.items()}


@pytest.mark.slow
@pytest.mark.parametrize("factor", [0, 1, 2], ids=["H", "W1", "W2"])
def test_deep_one_factor_scaled(deep_case, factor):
    """One factor scaled by ``s``: the Grams downstream of it by ``s^2`` (linear, or ReLU by
    positive homogeneity), the predictions by ``(s - 1) ||Z - 1 b^T|| / ||Z||``, the loss by
    ``(s - 1)^2 / 2 (||Z - 1 b^T||^2 / N + lambda_F ||F||^2)``."""
    p, sol, good = deep_case
    H, Ws, b = _np(sol.params.H), [_np(W) for W in sol.params.Ws], _np(sol.params.b)
    factors = [H, *Ws]
    lambdas = [float(p.lambda_H), *np.broadcast_to(_np(p.lambda_W), (len(Ws),))]
    A = _forward(p, H, Ws, b)[0][-1] @ Ws[-1].T
    N = H.shape[0]
    change = (S - 1) ** 2 / 2 * (np.sum(A**2) / N + lambdas[factor] * np.sum(factors[factor] ** 2))
    factors[factor] = S * factors[factor]
    planted = (factors[0], factors[1:], b)
    expected = _deep_expected(p, sol, good.loss_theory, planted, change)
    # The analytic values these reduce to.
    assert expected["predictions"] == pytest.approx(
        (S - 1) * np.linalg.norm(A) / np.linalg.norm(A + (b if p.bias else 0.0)), rel=1e-10
    )
    for layer in (1, 2):
        key = f"feature_gram_{layer}"
        if key in expected:
            assert expected[key] == (0 if layer <= factor else pytest.approx(S**2 - 1, rel=1e-10))
    assert expected["WWT"] == (pytest.approx(S**2 - 1, rel=1e-10) if factor == 2 else 0)
    psol = _plant(sol, H=planted[0], Ws=tuple(planted[1]))
    cmp = theory.compare(psol, p)
    _check(cmp, expected, cmp.table())


@pytest.mark.slow
@pytest.mark.parametrize("deep_case", ["linear-bias"], indirect=True)
def test_deep_shifted_bias(deep_case):
    """The deep linear model with a bias, ``b -> b + delta``: the predictions move by
    ``sqrt(N) ||delta||``, the loss by ``||delta||^2 / 2``."""
    p, sol, good = deep_case
    H, Ws, b = _np(sol.params.H), [_np(W) for W in sol.params.Ws], _np(sol.params.b)
    delta = np.array([0.01, -0.02, 0.005])
    planted = (H, Ws, b + delta)
    expected = _deep_expected(p, sol, good.loss_theory, planted, np.sum(delta**2) / 2)
    Z = _forward(p, H, Ws, b)[1]
    assert expected["bias"] == pytest.approx(np.linalg.norm(delta) / np.linalg.norm(b), rel=1e-12)
    assert expected["predictions"] == pytest.approx(
        np.sqrt(H.shape[0]) * np.linalg.norm(delta) / np.linalg.norm(Z), rel=1e-10
    )
    cmp = theory.compare(_plant(sol, b=planted[2]), p)
    _check(cmp, expected, cmp.table())


@pytest.mark.slow
@pytest.mark.parametrize("deep_case", ["linear", "relu"], indirect=True)
def test_deep_within_class_spread(deep_case):
    """A spread with zero class sums in ``H``: the layers' Grams and the loss as transcribed,
    the largest layer-wise NC1 as its definition gives."""
    p, sol, good = deep_case
    H, Ws, b = _np(sol.params.H), [_np(W) for W in sol.params.Ws], _np(sol.params.b)
    y = _np(p.labels).astype(int)
    E = 0.01 * np.random.default_rng(5).normal(size=H.shape)
    E -= np.stack([E[y == c].mean(axis=0) for c in range(DK)])[y]
    Hp = H + E
    lW = np.broadcast_to(_np(p.lambda_W), (len(Ws),))

    def objective(H1):
        Z = _forward(p, H1, Ws, b)[1]
        pen = float(p.lambda_H) * np.sum(H1**2) + np.sum(lW * [np.sum(W**2) for W in Ws])
        return np.sum((Z - _np(p.targets)) ** 2) / (2 * H.shape[0]) + pen / 2

    expected = _deep_expected(p, sol, good.loss_theory, (Hp, Ws, b), objective(Hp) - objective(H))
    cmp = theory.compare(_plant(sol, H=Hp), p)
    _check(cmp, expected, cmp.table())
    nc1 = max(ref_nc1(X, y, DK) for X in _forward(p, Hp, Ws, b)[0])
    assert nc1 > 1e-6
    assert cmp.metrics["max NC1 over layers"] == pytest.approx(nc1, rel=1e-8)
