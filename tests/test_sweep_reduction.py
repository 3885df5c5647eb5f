"""The class-mean reduction of the classification UFM (``ClassificationUFM.reduction``) and the
sweeps that use it: objective, gradients, stopping-test quantities and certificate against the
full problem at the expanded variables (independent code paths: the full problem's own
objective, autodiff and certificate), and a reduced sweep against an unreduced one and the
closed form of ``theory.classification``."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import theory
import ufm
from ufm.problems.classification import ClassMeanUFM

IMBALANCED = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 2, 1, 0])


def _point(problem):
    """A generic point of the reduced problem (not a stationary one)."""
    q = problem.reduction().problem
    v = q.default_init(jax.random.PRNGKey(3), scale=1.0)
    return q, v._replace(b=jnp.array([0.3, -0.2, 0.1]) if problem.has_bias else v.b)


def test_class_sizes_are_a_leaf_and_the_full_problem_comes_back():
    """``n_k`` is counted once, when the reduced problem is built (a leaf, so jit and vmap carry
    it), not inside the objective; ``full()`` gives back the problem's own leaves."""
    p = ufm.ClassificationUFM(IMBALANCED, 3, 0.02, 0.03, 4, loss="mse")
    q = p.reduction().problem
    np.testing.assert_array_equal(q.counts, np.bincount(IMBALANCED))
    assert q.counts.dtype == p.dtype
    leaves = jax.tree_util.tree_leaves(q)
    assert len(leaves) == len(jax.tree_util.tree_leaves(p)) + 1
    assert any(leaf is q.counts for leaf in leaves)
    back = q.full()
    assert type(back) is ufm.ClassificationUFM
    for a, b in zip(jax.tree_util.tree_leaves(back), jax.tree_util.tree_leaves(p), strict=True):
        assert a is b
    # A traced copy (as in a sweep's vmapped chunk) keeps the counts.
    lam = jnp.array([0.01, 0.05])
    sizes = jax.vmap(lambda x: p.replace(lambda_H=x).reduction().problem.counts)(lam)
    np.testing.assert_array_equal(sizes, np.tile(np.bincount(IMBALANCED), (2, 1)))


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["ce", "mse"])
@pytest.mark.parametrize("bias", ["none", "free", 0.4])
def test_reduced_problem_equals_the_full_one_at_the_expanded_point(loss, bias):
    p = ufm.ClassificationUFM(IMBALANCED, 3, 0.02, 0.03, 4, loss=loss, bias=bias)
    red = p.reduction()
    q, v = _point(p)
    assert isinstance(q, ClassMeanUFM) and red.by_construction == ("nc1",)
    full = red.expand(v)
    # Class-collapsed features: h_i = hbar_{y_i}.
    np.testing.assert_array_equal(full.H, np.asarray(v.H)[IMBALANCED])
    np.testing.assert_allclose(q.objective(v), p.objective(full), rtol=1e-14)
    # grad_{hbar_k} = n_k grad_{h_i} for every i of class k; W and b gradients equal.
    gq, gp = jax.grad(q.objective)(v), jax.grad(p.objective)(full)
    counts = np.bincount(IMBALANCED)
    for i, k in enumerate(IMBALANCED):
        np.testing.assert_allclose(gq.H[k], counts[k] * gp.H[i], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(gq.W, gp.W, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(gq.b, gp.b, rtol=1e-12, atol=1e-15)
    # The stopping test's |y| and |grad_y| in the preconditioned variables are the full ones.
    sq, sp = q.precondition_scales(), p.precondition_scales()
    yq = jax.tree_util.tree_map(lambda x, s: x / s, v, sq)
    yp = jax.tree_util.tree_map(lambda x, s: x / s, full, sp)
    np.testing.assert_allclose(optax.tree.norm(yq), optax.tree.norm(yp), rtol=1e-13)
    gyq = jax.tree_util.tree_map(lambda x, s: x * s, gq, sq)
    gyp = jax.tree_util.tree_map(lambda x, s: x * s, gp, sp)
    np.testing.assert_allclose(optax.tree.norm(gyq), optax.tree.norm(gyp), rtol=1e-12)
    # The certificate from K x K quantities equals the full one (a non-stationary point: > 0).
    cq, cp = q.certificate(v), p.certificate(full)
    np.testing.assert_allclose(cq[0], cp[0], rtol=1e-12)
    assert bool(cq[1]) == bool(cp[1])
    # The metrics the reduced problem records are the full problem's.
    mq, mp = q.trajectory_metrics(v), p.trajectory_metrics(full)
    for k in mp:
        np.testing.assert_allclose(mq[k], mp[k], rtol=1e-12, atol=1e-14)


@pytest.mark.slow
def test_reduced_solve_reaches_the_full_solve():
    p = ufm.ClassificationUFM(IMBALANCED, 3, 0.01, 0.02, 4, loss="ce", bias="free")
    red = p.reduction()
    sq, sp = ufm.solve(red.problem, "lbfgs"), ufm.solve(p, "lbfgs")
    assert int(sq.status) == int(sp.status) == ufm.Status.successful
    np.testing.assert_allclose(sq.loss, sp.loss, rtol=1e-9)
    np.testing.assert_allclose(p.objective(red.expand(sq.params)), sq.loss, rtol=1e-13)
    # The full solution is class-collapsed too (strict convexity in each h_i).
    H = np.asarray(sp.params.H)
    for k in range(3):
        assert np.ptp(H[IMBALANCED == k], axis=0).max() < 1e-5 * np.abs(H).max()


def test_preconditioned_momentum_iterates_are_the_class_means_of_the_full_ones():
    p = ufm.ClassificationUFM(IMBALANCED, 3, 0.01, 0.02, 4, loss="ce", bias="free")
    red = p.reduction()
    _, v0 = _point(p)
    solver = ufm.OptaxSolver(optax.sgd, learning_rate=0.05, momentum=0.9)
    kw = {"max_steps": 25, "rtol": 0.0}
    sq = ufm.solve(red.problem, solver, init=v0, **kw)
    sp = ufm.solve(p, solver, init=red.expand(v0), **kw)
    assert int(sq.num_steps) == int(sp.num_steps) == 25
    for a, b in zip(red.expand(sq.params), sp.params, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-13)


K, PER = 3, 4
LAMS = {"lambda_H": [1e-3, 3e-2], "lambda_W": [2e-3, 5e-2]}


@pytest.fixture(scope="module")
def ce_tables():
    labels = theory.classification.balanced_labels(K, PER)
    p = ufm.ClassificationUFM(labels, K, 0.1, 0.1, 4, loss="ce", bias="free")
    kw = {"solver": "lbfgs", "chunk_size": 2}
    return ufm.sweep(p, LAMS, **kw), ufm.sweep(p, LAMS, reduction=False, **kw)


@pytest.mark.slow
def test_reduced_sweep_matches_the_unreduced_sweep_and_the_closed_form(ce_tables):
    red, full = ce_tables
    assert np.all(red["status"] == "successful") and np.all(full["status"] == "successful")
    np.testing.assert_allclose(red["loss"], full["loss"], rtol=1e-9)
    # Against theory.classification (Zhu et al.'s ETF optimum), an independent computation.
    assert np.max(np.abs(red["loss_gap"])) < 1e-9
    assert np.max(red["err_gram_W"]) < 1e-8 and np.max(red["err_class_mean_gram"]) < 1e-8
    np.testing.assert_array_equal(red["rank"], red["rank_theory"])
    # NC1 is 0 by construction on the reduced path: not measured; the others are.
    assert np.all(np.isnan(red["nc1"])) and np.all(np.isfinite(full["nc1"]))
    # At the optimum both paths give collapse (NC2 ~1e-11, NC3 ~1e-20, NC4 = 0): held to the
    # documented float64 accuracy, not to a tolerance that 0 and 1e-5 would both meet.
    for c in ("nc2", "nc3"):
        assert np.max(red[c]) < 1e-8 and np.max(full[c]) < 1e-8, c
        np.testing.assert_allclose(red[c], full[c], rtol=0, atol=1e-9)
    np.testing.assert_array_equal(red["nc4"], full["nc4"])
    assert np.all(red["nc4"] == 0)


def test_reduction_option_checks():
    labels = theory.classification.balanced_labels(K, PER)
    p = ufm.ClassificationUFM(labels, K, 0.1, 0.1, 4, loss="ce", bias="free")
    with pytest.raises(TypeError, match="reduction must be"):
        ufm.sweep(p, LAMS, reduction="yes")
    r = ufm.RegressionUFM(np.arange(8.0).reshape(4, 2), 0.1, 0.1, 3)
    with pytest.raises(ValueError, match="reduction=True needs"):
        ufm.sweep(r, LAMS, solver="lbfgs", reduction=True)
    assert r.reduction() is None
