"""The fast step of the gradient solvers: the regression problem's hand-written linearisation
(``RegressionUFM.linearise`` / ``gradient``) against autodiff, and the loop that uses it against
a plain optax loop on ``jax.grad``; the ``stalled`` test of optax optimisers (a fixed point of
the whole step) on the hand-written path (regression, classification) and on the generic
autodiff one (deep)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ufm


def _problem(M=23, n=3, d=5, bias=True):
    Y = np.random.default_rng(1).normal(size=(M, n)) + 0.5
    return ufm.RegressionUFM(Y, 0.03, 0.007, d, bias=bias)


_LABELS = np.repeat(np.arange(3), 4)
_PROBLEMS = {
    "regression": _problem,
    "ce": lambda: ufm.ClassificationUFM(_LABELS, 3, 0.01, 0.01, 4, loss="ce"),
    "deep": lambda: ufm.DeepUFM(np.eye(3)[_LABELS], 0.01, 0.01, [4, 4]),
}


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


def _assert_params_close(params, ref):
    for a, b in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(ref), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-13)


def _assert_follows_the_plain_loop(tx, steps=20, p=None):
    """``steps`` steps of ``ufm.solve`` (``rtol = 0``: the stopping test never passes) equal
    the plain loop's."""
    p = _problem() if p is None else p
    key = jax.random.PRNGKey(3)
    zero = jnp.zeros(())
    sol = ufm.solve(p, tx, key=key, rtol=zero, max_steps=steps)
    assert int(sol.status) == ufm.Status.max_steps_reached and int(sol.num_steps) == steps
    ref = _plain_loop(p, tx, steps, key)
    _assert_params_close(sol.params, ref)
    np.testing.assert_allclose(sol.loss, p.objective(ref), rtol=1e-12)


@pytest.mark.parametrize("tx", [optax.sgd(0.3, momentum=0.9), optax.adam(0.01)])
def test_fast_loop_follows_the_plain_optax_trajectory(tx):
    _assert_follows_the_plain_loop(tx)


@pytest.mark.slow
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


def _stop_past(threshold, side, lr=0.2):
    """Stateless gradient descent whose update is exactly zero once ``||g||`` is no longer on
    ``side`` (+1 above, -1 below) of ``threshold``: a fixed point away from any optimum."""

    def update(g, state, params=None):
        live = side * (optax.tree.norm(g) - threshold) > 0
        return jax.tree_util.tree_map(lambda x: jnp.where(live, -lr * x, 0.0), g), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["regression", "ce"])
def test_a_fixed_point_after_some_steps_is_stalled(kind):
    """The update becomes zero once the gradient norm crosses a threshold set between the 5th
    and 6th iterates' (computed here by a plain loop): the 6th update is zero (a step that
    leaves the iterate unchanged), the test after it finds the fixed point, and the run ends
    stalled after 6 steps at the plain loop's 5th iterate."""
    p = _PROBLEMS[kind]()
    key = jax.random.PRNGKey(3)
    fn, y, _ = ufm.OptaxSolver(optax.sgd(0.2)).setup(p, key, None)
    norms = []
    for _ in range(6):
        g = jax.grad(fn)(y)
        norms.append(float(optax.tree.norm(g)))
        y = optax.apply_updates(y, jax.tree_util.tree_map(lambda x: -0.2 * x, g))
    threshold = (norms[4] + norms[5]) / 2
    side = np.sign(norms[0] - threshold)
    assert all(side * (np.array(norms[:5]) - threshold) > 0), norms  # the first crossing
    assert side * (norms[5] - threshold) < 0, norms
    sol = ufm.solve(p, _stop_past(threshold, side), key=key, max_steps=50)
    assert int(sol.status) == ufm.Status.stalled and int(sol.num_steps) == 6
    _assert_params_close(sol.params, _plain_loop(p, optax.sgd(0.2), 5, key))


@pytest.mark.parametrize("zero_at", [0, 1, 3])
def test_a_single_zero_update_is_not_a_stall(zero_at):
    """The learning rate is 0 for one update only (the first, as in a warm-up from 0; the
    second, right after the probe that follows the first step; the fourth): the iterate pauses
    for at most one step and moves on. The run follows the plain optax trajectory to the end."""
    _assert_follows_the_plain_loop(
        optax.sgd(lambda count: jnp.where(count == zero_at, 0.0, 0.3), momentum=0.9)
    )


_WARMUP = optax.adam(optax.warmup_cosine_decay_schedule(0.0, 0.01, 4, 100))
_MULTI = optax.MultiSteps(optax.adam(0.01), every_k_schedule=3).gradient_transformation()
_EVERY = optax.chain(optax.sgd(0.05, momentum=0.9), optax.apply_every(3))


@pytest.mark.parametrize(
    "kind, tx",
    [
        ("regression", _MULTI),
        ("regression", _EVERY),
        ("ce", _WARMUP),
        ("ce", _MULTI),
        ("deep", _WARMUP),
        ("deep", _EVERY),
    ],
)
@pytest.mark.slow
def test_zero_updates_while_the_state_moves_are_not_a_stall(kind, tx):
    """A warm-up from a learning rate of 0, ``MultiSteps`` and ``apply_every`` emit zero
    updates while their state moves on (these ended ``stalled`` after one step before): the run
    follows the plain optax loop, on the hand-written path and the generic one."""
    _assert_follows_the_plain_loop(tx, steps=12, p=_PROBLEMS[kind]())


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["ce", "deep"])
def test_zero_learning_rate_stalls(kind):
    """Plain SGD at a learning rate of 0 has no state: its first step is a fixed point. Adam at
    0 is none (its step counter moves): it uses the budget. Cross-entropy takes the
    hand-written path, the deep problem the generic one."""
    p = _PROBLEMS[kind]()
    sol = ufm.solve(p, optax.sgd(0.0), max_steps=20)
    assert int(sol.status) == ufm.Status.stalled and int(sol.num_steps) == 1
    sol = ufm.solve(p, optax.adam(0.0), max_steps=20)
    assert int(sol.status) == ufm.Status.max_steps_reached and int(sol.num_steps) == 20


def test_a_state_that_only_flips_the_sign_of_zero_is_no_fixed_point():
    """The state flips between -0.0 and 0.0 and the update moves the iterate only when the sign
    bit is set: equal by value, different bit patterns, so no fixed point (the run follows the
    plain loop to the end)."""

    def init(params):
        return jnp.array(-0.0)

    def update(g, sign, params=None):
        move = jnp.signbit(sign)
        return jax.tree_util.tree_map(lambda x: jnp.where(move, -0.1 * x, 0.0), g), -sign

    _assert_follows_the_plain_loop(optax.GradientTransformation(init, update), steps=6)


def test_momentum_at_learning_rate_0_stalls_once_its_state_settles():
    """SGD with momentum at a learning rate of 0: the iterate never moves and the momentum
    converges, in floating point, to a fixed value after t steps (found here by a plain loop).
    The tests that find no fixed point put off the next one by doubling gaps, so the run ends
    stalled after between t - 1 and 2 t + 1 steps."""
    p = _problem()
    key = jax.random.PRNGKey(3)
    tx = optax.sgd(0.0, momentum=0.9)
    fn, y, _ = ufm.OptaxSolver(tx).setup(p, key, None)
    g = jax.grad(fn)(y)
    state, settled = tx.init(y), None
    for t in range(1, 2000):
        _, new = tx.update(g, state, y)
        if all(
            bool(jnp.all(a == b))
            for a, b in zip(
                jax.tree_util.tree_leaves(new), jax.tree_util.tree_leaves(state), strict=True
            )
        ):
            settled = t  # the t-th update leaves the state as it was: t - 1 steps changed it
            break
        state = new
    assert settled is not None and settled > 100
    sol = ufm.solve(p, tx, key=key, max_steps=5000)
    assert int(sol.status) == ufm.Status.stalled
    assert settled - 1 <= int(sol.num_steps) <= 2 * settled + 1, (settled, int(sol.num_steps))


def test_a_fixed_point_stalls_within_the_budget_only():
    """A learning rate of 0 without optimiser state: stalled after the first step; with a
    budget of one step, the run used it all (the step beyond it does not count)."""
    p = _problem()
    sol = ufm.solve(p, optax.sgd(0.0), max_steps=20)
    assert int(sol.status) == ufm.Status.stalled and int(sol.num_steps) == 1
    sol = ufm.solve(p, optax.sgd(0.0), max_steps=1)
    assert int(sol.status) == ufm.Status.max_steps_reached and int(sol.num_steps) == 1


@pytest.mark.slow
def test_vmapped_stalled_instance_beside_a_running_one():
    """One instance stalls after its first step (learning rate 0, no state) while the other runs
    on: the stalled one stops at 1 step, the other matches its single solve."""
    p = _problem()

    def run(lr):
        return ufm.solve(p, ufm.OptaxSolver(optax.sgd, learning_rate=lr), max_steps=30)

    batch = jax.vmap(run)(jnp.array([0.0, 0.2]))
    assert int(batch.status[0]) == ufm.Status.stalled and int(batch.num_steps[0]) == 1
    one = run(jnp.array(0.2))
    assert int(one.status) != ufm.Status.stalled
    assert int(batch.status[1]) == int(one.status)
    assert int(batch.num_steps[1]) == int(one.num_steps)
    np.testing.assert_allclose(batch.params.H[1], one.params.H, rtol=1e-12, atol=1e-14)


def _delayed_adam(learning_rate, delay):
    return optax.adam(lambda count: jnp.where(count < delay, 0.0, learning_rate))


@pytest.mark.slow
def test_vmapped_delayed_warm_ups_match_single_solves():
    """Learning rate 0 for the first ``delay`` steps (traced, per instance): each zero step
    leaves the iterate unchanged and calls for a fixed-point test, which the instance waits for
    while the others run on (at most 64 steps, ``_iterate._CHUNK``). Over 150 steps every
    instance ends as its single solve does, to rounding."""
    p = _problem()

    def run(delay):
        tx = ufm.OptaxSolver(_delayed_adam, learning_rate=0.01, delay=delay)
        return ufm.solve(p, tx, rtol=jnp.zeros(()), max_steps=150)

    delays = jnp.array([0.0, 3.0, 70.0])
    batch = jax.vmap(run)(delays)
    for i, delay in enumerate(delays):
        one = run(delay)
        assert int(batch.status[i]) == int(one.status) == ufm.Status.max_steps_reached
        assert int(batch.num_steps[i]) == int(one.num_steps) == 150
        np.testing.assert_allclose(batch.params.H[i], one.params.H, rtol=1e-12, atol=1e-14)


@pytest.mark.slow
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
