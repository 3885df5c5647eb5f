"""Classification UFM (MSE with no/free/regularised bias, cross-entropy) against the closed
forms of theory.classification; NC metrics; statuses; bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import examples
from hypothesis import given, settings
from hypothesis import strategies as st

import theory
import ufm
from theory import classification as tc


def _lam_for_kappa(kappa, K, n, ratio=1.0):
    """``(lambda_H, lambda_W)`` with ``K sqrt(n lambda_W lambda_H) = kappa`` and the given
    ``lambda_H / lambda_W``."""
    c = (kappa / K) ** 2 / n  # lambda_W lambda_H
    lW = np.sqrt(c / ratio)
    return ratio * lW, lW


# Every loss x bias mode x regime: kappa below/above 1, and for a regularised bias (lambda_b =
# 0.3, ETF threshold 0.3/1.3 = 0.23) the mixture (kappa < 0.23), the pure ETF and the zero optimum.
CASES = [
    ("mse", "none", 0.3),
    ("mse", "none", 1.5),
    ("mse", "free", 0.3),
    ("mse", "free", 1.5),
    ("mse", 0.3, 0.1),
    ("mse", 0.3, 0.6),
    ("mse", 0.3, 1.5),
    ("ce", "none", 0.5),
    ("ce", "free", 0.3),
    ("ce", "free", 1.5),
    ("ce", 0.3, 0.1),
    ("ce", 0.3, 0.6),
]


# (K, n per class, d above the smallest feature_dim the closed form needs): two classes, one
# sample per class, d at the minimum. Few shapes, so that the cases of one loss and bias mode
# share their compiled programs; the lambdas vary freely.
SHAPES = ((2, 3, 1), (3, 2, 0), (4, 1, 2))


@st.composite
def problems(draw, loss, bias, kappa):
    K, n, extra = draw(st.sampled_from(SHAPES))
    need = K if (loss == "mse" and bias != "free") else K - 1
    d = need + extra
    ratio = draw(st.sampled_from([0.25, 1.0, 4.0]) | st.floats(0.25, 4.0))
    lH, lW = _lam_for_kappa(kappa, K, n, ratio)
    return ufm.ClassificationUFM(tc.balanced_labels(K, n), K, lH, lW, d, loss=loss, bias=bias)


@pytest.mark.slow
@pytest.mark.parametrize("loss, bias, kappa", CASES)
@settings(max_examples=examples(3))
@given(data=st.data())
def test_default_solver_matches_closed_form(loss, bias, kappa, data):
    p = data.draw(problems(loss, bias, kappa))
    sol = ufm.solve(p)
    cmp = theory.compare(sol, p)
    assert cmp.passed(1e-8), f"{p}\n{cmp.table(1e-8)}"


@pytest.mark.slow
@pytest.mark.parametrize("loss, bias, kappa", [c for c in CASES if c[0] == "mse"])
@settings(max_examples=examples(2))
@given(data=st.data())
def test_lbfgs_all_variables_matches_closed_form_mse(loss, bias, kappa, data):
    p = data.draw(problems(loss, bias, kappa))
    sol = ufm.solve(p, "lbfgs", key=jax.random.PRNGKey(1))
    cmp = theory.compare(sol, p)
    assert cmp.passed(1e-8), f"{p}\n{cmp.table(1e-8)}"


@pytest.mark.slow
def test_saddle_at_zero_init_is_reported_for_both_losses():
    y = tc.balanced_labels(3, 4)
    for loss in ("mse", "ce"):
        for d in (2, 4):  # d = K - 1 (rank of W at 0 is below d) and d > K
            p = ufm.ClassificationUFM(y, 3, 0.01, 0.01, d, loss=loss, bias="free")
            zeros = ufm.Params(jnp.zeros((12, d)), jnp.zeros((3, d)), jnp.zeros(3))
            sol = ufm.solve(p, "lbfgs", init=zeros)
            assert int(sol.status) == ufm.Status.saddle, (loss, d)
            assert int(ufm.solve(p).status) == ufm.Status.successful


@pytest.mark.slow
def test_invalid_values_under_tracing_are_reported():
    good = jnp.asarray(tc.balanced_labels(3, 2))

    def run(labels, lam):
        p = ufm.ClassificationUFM(labels, 3, lam, 0.01, 4, loss="mse", bias="free")
        return ufm.solve(p, "lbfgs", max_steps=200).status

    status = jax.vmap(run)(
        jnp.stack([good, good.at[0].set(5), good, jnp.zeros_like(good)]),
        jnp.array([0.01, 0.01, -0.01, 0.01]),
    )
    assert int(status[0]) == ufm.Status.successful
    assert np.all(np.asarray(status[1:]) == ufm.Status.invalid_input)


@pytest.mark.slow
def test_vmap_over_lambda_b():
    y = tc.balanced_labels(3, 4)
    lbs = jnp.array([0.05, 0.5, 5.0])
    batch = ufm.stack([ufm.ClassificationUFM(y, 3, 0.01, 0.01, 4, bias=float(lb)) for lb in lbs])
    sols = jax.vmap(ufm.solve)(batch)
    for i, lb in enumerate(lbs):
        opt = tc.optimum(3, 4, 0.01, 0.01, "mse", float(lb))
        assert float(sols.loss[i]) == pytest.approx(float(opt.loss), rel=1e-10)


@pytest.mark.slow
def test_regularised_bias_interpolates_between_frame_and_etf():
    K, n = 4, 5
    y = tc.balanced_labels(K, n)
    kappa = 0.2
    lH, lW = _lam_for_kappa(kappa, K, n)
    for lb, etf in ((0.1, True), (1.0, False), (1e4, False)):  # ETF iff kappa >= lb/(1+lb)
        p = ufm.ClassificationUFM(y, K, lH, lW, 6, bias=lb)
        sol = ufm.solve(p)
        assert theory.compare(sol, p).passed(1e-8)
        WWT = sol.params.W @ sol.params.W.T
        mean_dir = float(jnp.sum(WWT)) / K  # 1^T W W^T 1 / K: 0 for an ETF
        assert (abs(mean_dir) < 1e-8) == etf
    # lambda_b -> inf: the orthogonal frame of the bias-free model.
    big = ufm.ClassificationUFM(y, K, lH, lW, 6, bias=1e8)
    frame = ufm.ClassificationUFM(y, K, lH, lW, 6, bias="none")
    Wb, Wf = ufm.solve(big).params.W, ufm.solve(frame).params.W
    np.testing.assert_allclose(Wb @ Wb.T, Wf @ Wf.T, atol=1e-6)


def test_cross_entropy_scale_closed_form_and_root_finder_agree():
    for K in (2, 3, 7):
        for s in (1e-4, 0.01, 0.1, 0.99 / K, 1.0 / K, 0.5):
            t_closed = float(tc.ce_scale(K, s))
            t_root = float(tc.ce_scale_root(K, s))
            assert t_closed == pytest.approx(t_root, rel=1e-10, abs=1e-12)
            # t* minimises F: no grid point does better.
            grid = np.linspace(0, max(3 * t_closed, 1.0), 20001)
            F = np.asarray(tc.ce_objective(jnp.asarray(grid), K, s))
            assert float(tc.ce_objective(t_closed, K, s)) <= F.min() + 1e-12


@pytest.mark.slow
def test_zero_solution_above_threshold():
    K, n = 3, 4
    y = tc.balanced_labels(K, n)
    for loss, f0 in (("mse", 0.5), ("ce", np.log(3))):
        lH, lW = _lam_for_kappa(1.5, K, n)
        p = ufm.ClassificationUFM(y, K, lH, lW, 4, loss=loss)
        opt = tc.optimum_of(p)
        assert bool(opt.zero) and float(opt.loss) == pytest.approx(f0, rel=1e-12)
        sol = ufm.solve(p, "lbfgs")
        assert float(jnp.linalg.norm(sol.params.W)) < 1e-8  # measured 3.5e-10, 8.7e-11
        assert theory.compare(sol, p).passed(1e-8)


@pytest.mark.slow
def test_zero_regularisation_mse_interpolates_without_collapse():
    r = tc.zero_regularisation_check(3, 6, 8, "mse")
    assert r.loss[0] < 1e-12
    assert r.nc1[0] > 1e-2  # within-class spread survives in the null space of W


@pytest.mark.slow
def test_zero_regularisation_ce_has_no_minimiser():
    r = tc.zero_regularisation_check(3, 4, 5, "ce", budgets=(50, 500, 5000))
    assert np.all(np.diff(r.loss) < 0) and r.loss[-1] < 1e-2
    assert np.all(np.diff(r.norm) > 0)  # norms keep growing: no finite minimiser
    # log growth: the norm increases by a similar amount per decade of steps.
    assert r.norm[-1] - r.norm[-2] > 0.3 * (r.norm[-2] - r.norm[-3])


@pytest.mark.slow
def test_imbalanced_classes_have_a_certified_optimum():
    y = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2])
    p = ufm.ClassificationUFM(y, 3, 1e-3, 1e-3, 4, loss="ce", bias="free")
    sol = ufm.solve(p)
    assert int(sol.status) == ufm.Status.successful
    opt = tc.optimum_of(p)
    assert opt.how.startswith("certified convex computation") and opt.gap <= 1e-11
    assert abs(float(sol.loss) - opt.loss) <= 1e-8 * opt.loss


@pytest.mark.slow
def test_vmap_over_lambdas_and_keys_compiles_once():
    y = tc.balanced_labels(3, 4)

    def batch(lams):
        return ufm.stack([ufm.ClassificationUFM(y, 3, lam, lam, 4, loss="ce") for lam in lams])

    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    run = jax.vmap(lambda p, k: ufm.solve(p, key=k))
    run(batch([1e-3, 1e-2, 3e-2]), keys)
    from test_solve import _CompileCounter

    with _CompileCounter() as c:
        sols = run(batch([2e-3, 2e-2, 4e-2]), keys)
        jax.block_until_ready(sols)
    assert c.count == 0
    for i, lam in enumerate([2e-3, 2e-2, 4e-2]):
        opt = tc.optimum(3, 4, lam, lam, "ce")
        assert float(sols.loss[i]) == pytest.approx(float(opt.loss), rel=1e-10)


@pytest.mark.slow
def test_float32_and_trajectory():
    y = tc.balanced_labels(4, 5)
    p = ufm.ClassificationUFM(y, 4, 5e-3, 5e-3, 6, loss="ce", bias="free", dtype=jnp.float32)
    sol = ufm.solve(p, record_every=5)
    assert sol.params.H.dtype == jnp.float32 and int(sol.status) == 0
    assert theory.compare(sol, p).passed(1e-4)
    tr = sol.trajectory.valid()
    assert set(tr) == {"step", "loss", "nc1", "nc2", "nc3", "nc4"}
    assert tr["nc1"][-1] < 1e-6 < tr["nc1"][0]


def test_diverging_run_is_nonfinite():
    y = tc.balanced_labels(3, 4)
    p = ufm.ClassificationUFM(y, 3, 1e-3, 1e-3, 4, loss="mse", bias="free")
    sol = ufm.solve(p, optax.sgd(1e4), max_steps=500)
    assert int(sol.status) == ufm.Status.nonfinite


def test_exact_solver_rejects_cross_entropy():
    p = ufm.ClassificationUFM(tc.balanced_labels(3, 2), 3, 1e-2, 1e-2, 4, loss="ce")
    with pytest.raises(TypeError, match="the exact solver needs an MSE problem"):
        ufm.solve(p, "exact")


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(labels=[0, 1, 3]), ValueError, "labels must lie in \\[0, num_classes\\)"),
        (dict(labels=[0, -1, 2]), ValueError, "labels must lie in"),
        (dict(labels=[0, 0, 2]), ValueError, "classes \\[1\\] of num_classes = 3 have none"),
        (dict(labels=[0.0, 1.0, 2.0]), TypeError, "labels must be integers"),
        (dict(labels=[[0, 1, 2]]), ValueError, "labels must be a 1-D integer array"),
        (dict(num_classes=1, labels=[0, 0]), ValueError, "num_classes must be an int >= 2"),
        (dict(loss="hinge"), ValueError, "loss must be one of \\('mse', 'ce'\\)"),
        (dict(bias="learned"), ValueError, "bias must be 'none', 'free' or a number"),
        (dict(bias=-1.0), ValueError, "bias \\(lambda_b\\) must be a finite number >= 0"),
        (dict(lambda_H=-1e-3), ValueError, "lambda_H must be a finite number >= 0"),
        (dict(feature_dim=0), ValueError, "feature_dim must be an int >= 1"),
        (dict(bias=None), TypeError, "bias must be 'none', 'free' or a number"),
    ],
)
def test_bad_input(kwargs, exc, match):
    args = dict(labels=[0, 1, 2], num_classes=3, lambda_H=1e-3, lambda_W=1e-3, feature_dim=4)
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        ufm.ClassificationUFM(**args)


@pytest.mark.slow
def test_small_feature_dim_warns_and_still_solves():
    y = tc.balanced_labels(4, 3)
    with pytest.warns(UserWarning, match="feature_dim = 2 < 3"):
        p = ufm.ClassificationUFM(y, 4, 1e-3, 1e-3, 2, loss="ce", bias="free")
    assert np.isfinite(float(ufm.solve(p).loss))
    with pytest.warns(UserWarning, match="feature_dim = 3 < 4"):
        ufm.ClassificationUFM(y, 4, 1e-3, 1e-3, 3, loss="mse", bias="none")
    with pytest.warns(UserWarning, match="feature_dim = 3 < 4"):
        ufm.ClassificationUFM(y, 4, 1e-3, 1e-3, 3, loss="mse", bias=0.5)
