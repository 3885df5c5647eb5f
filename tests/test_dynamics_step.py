"""The fast step of the gradient solvers: the regression problem's hand-written linearisation
(``RegressionUFM.linearise`` / ``gradient``) against autodiff, and the loop that uses it against
a plain optax loop on ``jax.grad``."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ufm


def _problem(M=23, n=3, d=5, bias=True):
    Y = np.random.default_rng(1).normal(size=(M, n)) + 0.5
    return ufm.RegressionUFM(Y, 0.03, 0.007, d, bias=bias)


@pytest.mark.parametrize("n, bias", [(3, True), (3, False), (11, True)])
def test_linearise_matches_autodiff(n, bias):
    """Value, gradient and both norms equal autodiff's in the solver's (scaled) variables."""
    p = _problem(n=n, bias=bias)
    fn, y0, _ = ufm.OptaxSolver(optax.sgd, learning_rate=0.1).setup(p, jax.random.PRNGKey(2), None)
    y0 = y0._replace(b=y0.b + 0.25)  # a nonzero bias (ignored by the objective without one)
    f, aux, gnorm, ynorm = fn.linearise(y0)
    g = fn.gradient(y0, aux)
    f_ad, g_ad = jax.value_and_grad(fn)(y0)
    np.testing.assert_allclose(f, f_ad, rtol=1e-13)
    for a, b in zip(g, g_ad, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(gnorm, optax.tree.norm(g_ad), rtol=1e-13)
    np.testing.assert_allclose(ynorm, optax.tree.norm(y0), rtol=1e-13)
    assert float(jnp.abs(jnp.asarray(g.H)).max()) > 0


def _plain_loop(p, tx, steps, key):
    """Hand-written preconditioned optax loop on jax.grad (no ufm loop)."""
    fn, y, to_params = ufm.OptaxSolver(tx).setup(p, key, None)

    def step(_, carry):
        y, state = carry
        u, state = tx.update(jax.grad(fn)(y), state, y)
        return optax.apply_updates(y, u), state

    y, _ = jax.lax.fori_loop(0, steps, step, (y, tx.init(y)))
    return to_params(y)


def _assert_follows_the_plain_loop(tx, steps=20):
    """``steps`` steps of ``ufm.solve`` (``rtol = 0``: the stopping test never passes) equal
    the plain loop's."""
    p = _problem()
    key = jax.random.PRNGKey(3)
    zero = jnp.zeros(())
    sol = ufm.solve(p, tx, key=key, rtol=zero, max_steps=steps)
    assert int(sol.status) == ufm.Status.max_steps_reached and int(sol.num_steps) == steps
    ref = _plain_loop(p, tx, steps, key)
    for a, b in zip(sol.params, ref, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(sol.loss, p.objective(ref), rtol=1e-12)


@pytest.mark.parametrize("tx", [optax.sgd(0.3, momentum=0.9), optax.adam(0.01)])
def test_fast_loop_follows_the_plain_optax_trajectory(tx):
    _assert_follows_the_plain_loop(tx)


def test_the_loop_uses_the_problems_linearisation(monkeypatch):
    """The trajectory test above would pass on the generic autodiff path too: count the calls
    (at trace time; max_steps = 13, static, is used by no other test, so the solve is traced)."""
    calls = {"linearise": 0, "gradient": 0}
    for name in calls:
        real = getattr(ufm.RegressionUFM, name)

        def counted(self, *a, _real=real, _name=name):
            calls[_name] += 1
            return _real(self, *a)

        monkeypatch.setattr(ufm.RegressionUFM, name, counted)
    ufm.solve(_problem(), optax.sgd(0.3, momentum=0.9), max_steps=13)
    assert calls["linearise"] >= 2 and calls["gradient"] >= 1, calls  # at y_0 and in the body
    calls.update(linearise=0, gradient=0)
    ufm.solve(_problem(), "lbfgs", max_steps=13)  # line searches keep the generic path
    assert calls == {"linearise": 0, "gradient": 0}


def test_zero_update_after_some_steps_is_stalled():
    """The learning rate drops to 0 after 3 steps: the 4th update is zero."""
    tx = optax.sgd(optax.piecewise_constant_schedule(0.1, {3: 0.0}))
    sol = ufm.solve(_problem(), tx, max_steps=50)
    assert int(sol.status) == ufm.Status.stalled and int(sol.num_steps) == 4


@pytest.mark.parametrize("zero_at", [0, 1, 3])
def test_a_single_zero_update_is_not_a_stall(zero_at):
    """The learning rate is 0 for one update only (the first, as in a warm-up from 0; the
    second, right after the probe that follows the first step; the fourth): the iterate pauses
    for at most one step and moves on. The run follows the plain optax trajectory to the end."""
    _assert_follows_the_plain_loop(
        optax.sgd(lambda count: jnp.where(count == zero_at, 0.0, 0.3), momentum=0.9)
    )


def test_two_zero_updates_stall_within_the_budget_only():
    """One nonzero update, then a learning rate of 0: stalled after the one step applied; with a
    budget of one step, the run used it all (the updates beyond it do not count)."""
    tx = optax.sgd(lambda count: jnp.where(count == 0, 0.1, 0.0))
    p = _problem()
    sol = ufm.solve(p, tx, max_steps=20)
    assert int(sol.status) == ufm.Status.stalled and int(sol.num_steps) == 1
    sol = ufm.solve(p, tx, max_steps=1)
    assert int(sol.status) == ufm.Status.max_steps_reached and int(sol.num_steps) == 1


def test_vmapped_stalled_instance_beside_a_running_one():
    """One instance stalls after its first step (learning rate 0) while the other runs on: the
    stalled one stops at 1 step, the other matches its single solve."""
    p = _problem()

    def run(lr):
        return ufm.solve(
            p, ufm.OptaxSolver(optax.sgd, learning_rate=lr, momentum=0.9), max_steps=30
        )

    batch = jax.vmap(run)(jnp.array([0.0, 0.2]))
    assert int(batch.status[0]) == ufm.Status.stalled and int(batch.num_steps[0]) == 1
    one = run(jnp.array(0.2))
    assert int(one.status) != ufm.Status.stalled
    assert int(batch.status[1]) == int(one.status)
    assert int(batch.num_steps[1]) == int(one.num_steps)
    np.testing.assert_allclose(batch.params.H[1], one.params.H, rtol=1e-12, atol=1e-14)


def test_vmapped_learning_rates_match_single_solves():
    p = _problem()
    lrs = jnp.array([0.05, 0.2])

    def run(lr):
        return ufm.solve(
            p, ufm.OptaxSolver(optax.sgd, learning_rate=lr, momentum=0.9), max_steps=30
        )

    batch = jax.vmap(run)(lrs)
    for i, lr in enumerate(lrs):
        one = run(lr)
        np.testing.assert_allclose(batch.params.H[i], one.params.H, rtol=1e-12, atol=1e-14)
        assert int(batch.status[i]) == int(one.status)
        np.testing.assert_allclose(batch.grad_norm[i], one.grad_norm, rtol=1e-12)
