"""Statuses that print their names, a ``Solution`` repr that explains itself, and the
``no_progress`` stopping rule for nonsmooth objectives."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import theory
import ufm
from ufm._iterate import iterate

_Y = np.random.default_rng(0).normal(size=(20, 3))


def _problem():
    return ufm.RegressionUFM(_Y, 1e-2, 1e-2, 4)


def test_codes_keep_their_values_and_print_their_names():
    codes = {s.name: int(s) for s in ufm.Status}
    assert codes == {
        "successful": 0,
        "max_steps_reached": 1,
        "nonfinite": 2,
        "stalled": 3,
        "saddle": 4,
        "invalid_input": 5,
        "no_progress": 6,
    }
    for s in ufm.Status:
        assert str(s) == s.name and f"{s}" == s.name and f"{s:>20}".strip() == s.name
        assert s.message.startswith(s.summary) and s.summary


def test_single_solution_prints_status_loss_steps_and_message():
    sol = ufm.solve(_problem())
    assert sol.status_name == "successful"
    assert sol.status_counts() == {"successful": 1}
    # The status leaf stays an int32 array that compares with the enum.
    assert sol.status.dtype == jnp.int32 and sol.status.shape == ()
    assert bool(sol.status == ufm.Status.successful) and int(sol.status) == 0
    text = repr(sol)
    assert text.startswith("Solution(status=successful, loss=")
    assert f"num_steps={int(sol.num_steps)}" in text and "message='converged'" in text
    assert f"{float(sol.loss):.10g}" in text


@pytest.mark.slow
def test_batched_solution_counts_each_status():
    p = _problem()
    rtols = jnp.array([1e-10, 0.0, 1e-10])
    sols = jax.vmap(lambda r: ufm.solve(p, "lbfgs", rtol=r, max_steps=300))(rtols)
    codes = np.asarray(sols.status).tolist()
    assert codes[0] == codes[2] == ufm.Status.successful
    other = ufm.Status(codes[1])  # rtol = 0: the test never holds
    assert other in (ufm.Status.max_steps_reached, ufm.Status.stalled)
    expected = "{successful: 2, " + other.name + ": 1}"
    assert sols.status_name == expected
    assert sols.status_counts() == {"successful": 2, other.name: 1}
    text = repr(sols)
    assert "batch=(3,)" in text and expected in text
    # Still a pytree of arrays: tree_map and indexing work as before.
    first = jax.tree_util.tree_map(lambda x: x[0], sols)
    assert first.status_name == "successful"


@pytest.mark.slow
def test_repr_of_a_traced_solution_is_the_plain_one():
    seen = []

    @jax.jit
    def run(p):
        sol = ufm.solve(p, "lbfgs", max_steps=30)
        seen.append(repr(sol))
        return sol

    sol = run(_problem())
    assert seen and seen[0].startswith("Solution(params=")
    assert isinstance(sol, ufm.Solution) and sol.status_name in {
        "successful",
        "max_steps_reached",
    }


def _restarts(losses, statuses, best):
    return ufm.Restarts(
        jnp.asarray(losses), jnp.asarray(statuses, jnp.int32), jnp.zeros(len(losses)), best
    )


def test_restart_rates_count_what_their_names_say():
    # Two stationary restarts stuck above the best loss: stationary, but not the best.
    r = _restarts([0.0507, 0.057, 0.058, 0.0507 * (1 + 1e-9), np.nan], [0, 0, 0, 6, 2], 0)
    assert float(r.stationary_rate) == pytest.approx(3 / 5)
    assert float(r.best_loss_rate()) == pytest.approx(2 / 5)
    assert float(r.best_loss_rate(rtol=1e-12)) == pytest.approx(1 / 5)
    assert float(r.best_loss_rate(rtol=0.2)) == pytest.approx(4 / 5)
    # Against a given reference loss (e.g. a closed form), below it counts too.
    assert float(r.rate_within(0.0508, 1e-6)) == pytest.approx(2 / 5)
    assert float(r.rate_within(0.04, 1e-6)) == 0.0
    with pytest.warns(DeprecationWarning, match="stationary_rate"):
        assert float(r.success_rate) == float(r.stationary_rate)
    text = repr(r)
    assert "{successful: 3, nonfinite: 1, no_progress: 1}" in text and "num_steps=" in text


def test_restart_rates_under_a_batch_axis():
    losses = jnp.array([[1.0, 2.0, 1.0], [3.0, 3.0, 5.0]])
    r = ufm.Restarts(losses, jnp.zeros((2, 3), jnp.int32), jnp.zeros((2, 3)), jnp.array([0, 1]))
    np.testing.assert_allclose(r.best_loss_rate(), [2 / 3, 2 / 3])
    np.testing.assert_allclose(r.rate_within(jnp.array([2.0, 1.0])), [1.0, 0.0])
    np.testing.assert_allclose(r.stationary_rate, [1.0, 1.0])


@pytest.mark.slow
def test_solve_with_restarts_reports_steps_and_rates():
    sol = ufm.solve(_problem(), "lbfgs", restarts=3)
    r = sol.restarts
    assert r.num_steps.shape == (3,) and np.all(np.asarray(r.num_steps) > 0)
    assert float(r.stationary_rate) == 1.0 and float(r.best_loss_rate(1e-8)) == 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        repr(sol)  # no deprecated name on the way


# -- the no-progress rule ------------------------------------------------------------------


def _kink(y):
    """``|y_0| + (y_1 - 1)^2 + 1``: minimised at (0, 1), where the gradient does not vanish."""
    return jnp.abs(y[0]) + (y[1] - 1.0) ** 2 + 1.0


def _run(fn, y0, window, max_steps=2000):
    return iterate(
        fn,
        optax.lbfgs(),
        y0,
        max_steps=max_steps,
        rtol=jnp.asarray(1e-10),
        atol=jnp.asarray(0.0),
        reuse_linesearch_value=True,
        progress_window=window,
    )


def test_a_run_at_a_kink_ends_no_progress_with_a_settled_loss():
    y0 = jnp.array([0.7, -0.4])
    *_, steps_off, status_off, _ = _run(_kink, y0, None)
    assert int(status_off) != ufm.Status.successful  # the stationarity test cannot hold
    y, f, _, steps, status, _ = _run(_kink, y0, 20)
    assert int(status) == ufm.Status.no_progress
    assert int(steps) < int(steps_off) or int(status_off) == ufm.Status.stalled
    assert int(steps) % 20 == 0
    # Settled: at the minimum to the stated relative accuracy, never reported successful.
    assert float(f) - 1.0 <= 1e-10 * float(f)


def test_a_smooth_run_keeps_its_iterates_and_status_with_the_rule_on():
    """Where the gradient shrinks, the stationarity test ends the run first: the same iterate,
    steps and status as without the rule."""

    def quad(y):
        return jnp.sum(jnp.arange(1.0, 6.0) * (y - 0.3) ** 2) + 2.0

    y0 = jnp.linspace(-1.0, 1.0, 5)
    off = _run(quad, y0, None)
    on = _run(quad, y0, 3)
    assert int(off[4]) == int(on[4]) == ufm.Status.successful
    assert int(off[3]) == int(on[3])
    np.testing.assert_array_equal(off[0], on[0])


def test_which_problems_are_smooth():
    labels = np.repeat(np.arange(3), 2)
    relu = ufm.DeepUFM.from_labels(labels, 3, 0.01, 0.01, (4, 4), "relu")
    linear = ufm.DeepUFM.from_labels(labels, 3, 0.01, 0.01, (4, 4), "linear")
    one = ufm.DeepUFM.from_labels(labels, 3, 0.01, 0.01, (4,), "relu")
    assert not relu.smooth and linear.smooth and one.smooth


@pytest.mark.slow
def test_relu_restarts_stop_before_the_budget_and_keep_the_optimum():
    """The deep ReLU example of the README: every restart ends well within the 5,000-step
    budget, none at a kink ends ``successful``, and the best loss is the closed form's."""
    labels = np.repeat(np.arange(4), 100)
    p = ufm.DeepUFM.from_labels(labels, 4, 5e-3, 5e-3, widths=(32, 32), activation="relu")
    sol = ufm.solve(p, "lbfgs", restarts=8)
    r = sol.restarts
    statuses = np.asarray(r.statuses)
    assert set(statuses.tolist()) <= {ufm.Status.successful, ufm.Status.no_progress}
    assert int(np.max(np.asarray(r.num_steps))) < 1000
    assert int(sol.status) == ufm.Status.successful
    opt = theory.deep.optimum_from_labels(labels, 4, 5e-3, 5e-3, (32, 32), "relu")
    assert abs(float(sol.loss) - opt.loss) <= 1e-12 * opt.loss
    # A restart that stopped for lack of progress is never below the best loss.
    assert np.all(np.asarray(r.losses) >= float(sol.loss))
