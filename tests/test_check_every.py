"""``OptaxSolver(..., check_every=k)``: the stopping test after every k-th step only.

The steps between tests skip the norms (and the objective, where the optimiser does not read
it), nothing else: the trajectory must be the one of a test after every step, the run must
stop at the first test that passes, and every status (successful, nonfinite, stalled,
max_steps_reached) must still be reported, on the fast path (regression) and the generic one
(cross-entropy), under ``jax.vmap`` and with recording."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ufm

_LABELS = np.repeat(np.arange(3), 4)
_PROBLEMS = {
    "regression": lambda: ufm.RegressionUFM(
        np.random.default_rng(1).normal(size=(23, 3)) + 0.5, 0.03, 0.007, 5
    ),
    "ce": lambda: ufm.ClassificationUFM(_LABELS, 3, 0.01, 0.01, 4, loss="ce"),
}
_KEY = jax.random.PRNGKey(3)


def _solve(p, k, *, tx=optax.sgd, max_steps=23, **kw):
    hyper = kw.pop("hyper", {"learning_rate": 0.2, "momentum": 0.9})
    return ufm.solve(
        p, ufm.OptaxSolver(tx, check_every=k, **hyper), key=_KEY, max_steps=max_steps, **kw
    )


def _assert_same(a, b):
    assert np.isfinite(float(a.loss)) and np.isfinite(float(a.grad_norm))
    for u, v in zip(
        jax.tree_util.tree_leaves(a.params), jax.tree_util.tree_leaves(b.params), strict=True
    ):
        np.testing.assert_allclose(u, v, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(a.loss, b.loss, rtol=1e-12)
    np.testing.assert_allclose(a.grad_norm, b.grad_norm, rtol=1e-10)
    assert int(a.num_steps) == int(b.num_steps)
    assert int(a.status) == int(b.status)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["regression", "ce"])
def test_the_trajectory_is_the_tested_one(kind):
    """23 steps (not a multiple of 5) with a test that never passes: the same iterate, loss and
    gradient norm as with a test after every step."""
    p = _PROBLEMS[kind]()
    zero = jnp.zeros(())
    every = _solve(p, 1, rtol=zero)
    fifth = _solve(p, 5, rtol=zero)
    assert int(fifth.status) == ufm.Status.max_steps_reached and int(fifth.num_steps) == 23
    _assert_same(fifth, every)


@pytest.mark.slow
def test_an_optimiser_that_reads_the_value_gets_it_on_every_step():
    """Polyak's step size uses ``f(y) - f*`` on every step: a stale value between tests would
    change the trajectory."""
    p = _PROBLEMS["regression"]()
    zero = jnp.zeros(())
    hyper = {"max_learning_rate": 1e3, "scaling": 0.05}
    every = _solve(p, 1, tx=optax.polyak_sgd, hyper=hyper, rtol=zero)
    fifth = _solve(p, 5, tx=optax.polyak_sgd, hyper=hyper, rtol=zero)
    _assert_same(fifth, every)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["regression", "ce"])
def test_the_run_stops_at_the_first_test_that_passes(kind):
    """Gradient descent converges at step ``s`` with a test after every step; with a test
    every 7th step it stops at the first multiple of 7 from ``s`` on (the test holds from ``s``
    on here, checked), at the same trajectory's iterate there."""
    p = _PROBLEMS[kind]()
    hyper = {"learning_rate": 0.5}
    rtol = jnp.asarray(1e-6)
    every = _solve(p, 1, hyper=hyper, rtol=rtol, max_steps=3000)
    s = int(every.num_steps)
    assert int(every.status) == ufm.Status.successful and s > 20
    seventh = _solve(p, 7, hyper=hyper, rtol=rtol, max_steps=3000)
    n = int(seventh.num_steps)
    assert int(seventh.status) == ufm.Status.successful
    assert n % 7 == 0 and s <= n < s + 7, (s, n)
    # The same iterate as the every-step trajectory at step n, whose test holds there too.
    at_n = _solve(p, 1, hyper=hyper, rtol=jnp.zeros(()), max_steps=n)
    for u, v in zip(
        jax.tree_util.tree_leaves(seventh.params),
        jax.tree_util.tree_leaves(at_n.params),
        strict=True,
    ):
        np.testing.assert_allclose(u, v, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(seventh.grad_norm, at_n.grad_norm, rtol=1e-10)


def test_a_divergence_is_reported_at_the_next_test():
    p = _PROBLEMS["regression"]()
    sol = _solve(p, 5, hyper={"learning_rate": 1e3}, max_steps=100)
    assert int(sol.status) == ufm.Status.nonfinite and int(sol.num_steps) == 5


def test_a_fixed_point_is_stalled_at_the_first_test():
    p = _PROBLEMS["regression"]()
    sol = _solve(p, 5, hyper={"learning_rate": 0.0}, max_steps=100)
    assert int(sol.status) == ufm.Status.stalled and int(sol.num_steps) == 5


@pytest.mark.slow
def test_records_fall_on_tested_steps():
    """Recording every 10 steps with a test every 4th: a test at each record point too, and the
    records equal those of a test after every step."""
    p = _PROBLEMS["regression"]()
    zero = jnp.zeros(())
    every = _solve(p, 1, rtol=zero, record_every=10)
    fourth = _solve(p, 4, rtol=zero, record_every=10)
    np.testing.assert_array_equal(fourth.trajectory.step, [0, 10, 20, 23])
    np.testing.assert_array_equal(fourth.trajectory.step, every.trajectory.step)
    np.testing.assert_allclose(fourth.trajectory.loss, every.trajectory.loss, rtol=1e-12)
    _assert_same(fourth, every)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["regression", "ce"])
def test_vmapped_learning_rates_match_single_solves(kind):
    """Under ``jax.vmap`` one instance converges early and waits while the other runs on."""
    p = _PROBLEMS[kind]()

    def run(lr):
        return _solve(p, 6, hyper={"learning_rate": lr}, rtol=jnp.asarray(1e-6), max_steps=2400)

    lrs = jnp.array([0.5, 0.05])
    batch = jax.vmap(run)(lrs)
    for i, lr in enumerate(lrs):
        one = run(lr)
        assert int(batch.num_steps[i]) == int(one.num_steps)
        assert int(batch.num_steps[i]) % 6 == 0
        assert int(batch.status[i]) == int(one.status)
        np.testing.assert_allclose(batch.params.H[i], one.params.H, rtol=1e-12, atol=1e-14)
    assert int(batch.status[0]) == ufm.Status.successful
    assert int(batch.num_steps[0]) < int(batch.num_steps[1])


@pytest.mark.parametrize("bad", [0, -3, True, 2.5, "4", 2**30 + 1])
def test_check_every_must_be_a_positive_int(bad):
    with pytest.raises((TypeError, ValueError), match="check_every"):
        ufm.OptaxSolver(optax.sgd, learning_rate=0.1, check_every=bad)


def test_solvers_with_a_line_search_test_every_step():
    assert ufm.LBFGS().check_every == 1 and ufm.Exact().check_every == 1
    assert "check_every=3" in repr(ufm.OptaxSolver(optax.sgd, learning_rate=0.1, check_every=3))
