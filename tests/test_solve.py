"""Solvers against the closed form, statuses, jit/vmap/no-recompilation, float32, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import CompileCounter as _CompileCounter
from conftest import random_targets, regime_examples, regression_problems
from hypothesis import given

import theory
import ufm


@pytest.mark.slow
@given(regression_problems())
@regime_examples(large=True)
def test_exact_solver_matches_closed_form(problem):
    sol = ufm.solve(problem)
    cmp = theory.compare(sol, problem)
    # README: successful float64 solves away from the thresholds are within 1e-9.
    assert cmp.passed(1e-8), cmp.table(1e-8)


@pytest.mark.slow
@given(regression_problems())
@regime_examples()
def test_lbfgs_all_variables_matches_closed_form(problem):
    sol = ufm.solve(problem, "lbfgs", key=jax.random.PRNGKey(3))
    cmp = theory.compare(sol, problem)
    assert cmp.passed(1e-8), cmp.table(1e-8)


def _problem(M=60, n=3, d=8, lam=0.05, seed=0, dtype=np.float64, bias=True):
    Y = random_targets(np.random.default_rng(seed), M, n).astype(dtype)
    return ufm.RegressionUFM(Y, lam, lam, d, bias=bias)


@pytest.mark.slow
def test_momentum_and_adam_reach_closed_form():
    p = _problem()
    sol = ufm.solve(p, optax.sgd(0.1, momentum=0.9), max_steps=20_000)
    assert int(sol.status) == ufm.Status.successful
    assert theory.compare(sol, p).passed(1e-8)
    # Adam with a constant learning rate hovers around the optimum at a distance set by the
    # learning rate, so it is held to a coarse accuracy only.
    sol = ufm.solve(p, optax.adam(1e-2), max_steps=3_000, rtol=1e-4)
    assert theory.compare(sol, p).errors["WWT"] < 1e-2


def test_diverging_learning_rate_is_nonfinite_not_successful():
    p = _problem()
    sol = ufm.solve(p, optax.sgd(50.0, momentum=0.9), max_steps=2_000)
    assert int(sol.status) == ufm.Status.nonfinite
    assert "lower the learning rate" in sol.message
    assert not bool(sol.succeeded)


@pytest.mark.slow
def test_max_steps_reached_and_throw():
    p = _problem()
    sol = ufm.solve(p, "lbfgs", max_steps=3)
    assert int(sol.status) == ufm.Status.max_steps_reached and int(sol.num_steps) == 3
    with pytest.raises(RuntimeError, match="max_steps_reached"):
        ufm.solve(p, "lbfgs", max_steps=3, throw=True)
    assert int(ufm.solve(p, throw=True).status) == 0


def test_zero_learning_rate_reports_stalled():
    sol = ufm.solve(_problem(), optax.sgd(0.0), max_steps=50)
    assert int(sol.status) == ufm.Status.stalled and int(sol.num_steps) == 1


def test_unpreconditioned_option_runs_the_objective_as_written():
    """precondition=False must be plain GD on (H, W, b): one step equals a hand-written step."""
    p = _problem(M=10, d=4)
    init = ufm.Params(
        *(
            jnp.asarray(x)
            for x in (
                np.random.default_rng(0).normal(size=(10, 4)),
                np.random.default_rng(1).normal(size=(3, 4)),
                np.zeros(3),
            )
        )
    )
    lr = 0.01
    sol = ufm.solve(p, ufm.OptaxSolver(optax.sgd(lr), precondition=False), init=init, max_steps=1)
    g = jax.grad(p.objective)(init)
    expected = jax.tree_util.tree_map(lambda x, gx: x - lr * gx, init, g)
    for a, b in zip(sol.params, expected, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)
    sol_pc = ufm.solve(p, optax.sgd(lr), init=init, max_steps=1)
    # Preconditioned: H moves M times further (gradient wrt H/sqrt(M), mapped back).
    np.testing.assert_allclose(sol_pc.params.H - init.H, 10 * (expected.H - init.H), rtol=1e-12)


def test_compile_counter_counts():
    with _CompileCounter() as c:
        jax.jit(lambda x: x * 3.0 + 1.0)(jnp.ones(7))
    assert c.count >= 1


@pytest.mark.slow
def test_vmap_over_problems_and_keys_compiles_once():
    Y = random_targets(np.random.default_rng(0), 50, 3)

    def batch(lams):
        return ufm.stack([ufm.RegressionUFM(Y, lam, 2 * lam, 6) for lam in lams])

    run = jax.vmap(lambda p, k: ufm.solve(p, key=k))
    sols = run(batch([0.01, 0.1, 0.5]), jax.random.split(jax.random.PRNGKey(0), 3))
    with _CompileCounter() as c:
        sols2 = run(batch([0.02, 0.2, 0.7]), jax.random.split(jax.random.PRNGKey(1), 3))
        jax.block_until_ready(sols2)
    assert c.count == 0, f"second call with new lambdas and keys compiled {c.count} times"
    assert sols.status.shape == (3,) and np.all(np.asarray(sols2.status) == 0)
    assert not np.allclose(sols.loss, sols2.loss)
    for i, lam in enumerate([0.02, 0.2, 0.7]):
        p = ufm.RegressionUFM(Y, lam, 2 * lam, 6)
        opt = theory.regression.optimum_of(p)
        np.testing.assert_allclose(sols2.loss[i], opt.loss, rtol=1e-10)
        W = sols2.params.W[i]
        np.testing.assert_allclose(W @ W.T, opt.WWT, atol=1e-8 * np.linalg.norm(opt.WWT) + 1e-12)
    # Unbatched calls with new lambdas reuse one executable too.
    ufm.solve(ufm.RegressionUFM(Y, 0.3, 0.3, 6))
    with _CompileCounter() as c:
        ufm.solve(ufm.RegressionUFM(Y, 0.4, 0.1, 6), key=jax.random.PRNGKey(9))
    assert c.count == 0


@pytest.mark.slow
def test_vmap_over_keys_only_and_jit_of_solve():
    p = _problem()
    keys = jax.random.split(jax.random.PRNGKey(5), 4)
    sols = jax.vmap(lambda k: ufm.solve(p, "lbfgs", key=k))(keys)
    assert np.all(np.asarray(sols.status) == 0)
    np.testing.assert_allclose(sols.loss, sols.loss[0], rtol=1e-10)
    assert not np.allclose(sols.params.H[0], sols.params.H[1])  # different minimisers (rotations)
    jitted = jax.jit(lambda p: ufm.solve(p).loss)
    np.testing.assert_allclose(jitted(p), theory.regression.optimum_of(p).loss, rtol=1e-12)


@pytest.mark.slow
def test_learning_rate_sweep_under_vmap_compiles_once_and_leaks_nothing():
    p = _problem()

    def sweep(lrs):
        return jax.vmap(
            lambda lr: ufm.solve(
                p, ufm.OptaxSolver(optax.sgd, learning_rate=lr, momentum=0.9), max_steps=300
            )
        )(lrs)

    sols = sweep(jnp.array([1e-3, 1e-2, 1e-1, 100.0]))
    status = np.asarray(sols.status)
    assert status[-1] == ufm.Status.nonfinite
    assert np.all(status[:3] != ufm.Status.nonfinite)
    assert float(sols.loss[2]) < float(sols.loss[1]) < float(sols.loss[0])
    with _CompileCounter() as c:
        again = sweep(jnp.array([2e-3, 2e-2, 5e-2, 50.0]))
        jax.block_until_ready(again)
    assert c.count == 0
    with jax.checking_leaks():  # the traced learning rates do not escape into a static cache
        sweep(jnp.array([3e-3, 3e-2]))
    # The sweep matches one-at-a-time solves with a ready optimiser.
    one = ufm.solve(p, optax.sgd(2e-2, momentum=0.9), max_steps=300)
    np.testing.assert_allclose(again.loss[1], one.loss, rtol=1e-12)


@pytest.mark.slow
def test_bad_values_under_vmap_end_nonfinite_not_successful():
    Y = random_targets(np.random.default_rng(0), 30, 2)

    def run(lam_W):
        return ufm.solve(ufm.RegressionUFM(Y, 0.1, lam_W, 4), "exact").status

    status = np.asarray(jax.vmap(run)(jnp.array([0.1, 0.0, -0.5, np.nan])))
    # lambda_W = 0 is a valid problem (the gradient solvers take it) that the exact solver
    # cannot solve (an eager call raises); traced, it fails at step 0 with a NaN objective.
    # A negative or NaN lambda is an invalid problem, found at run time.
    S = ufm.Status
    assert status.tolist() == [S.successful, S.nonfinite, S.invalid_input, S.invalid_input]


@pytest.mark.slow
def test_saddle_is_never_reported_as_success():
    """W = H = 0 is a stationary point (a strict saddle below the threshold): the global-
    optimality certificate turns the would-be success into status saddle."""
    p = _problem(M=40, d=6)
    zeros = ufm.Params(jnp.zeros((40, 6)), jnp.zeros((3, 6)), jnp.zeros(3))
    for solver in ("exact", "lbfgs"):
        sol = ufm.solve(p, solver, init=zeros)
        assert int(sol.status) == ufm.Status.saddle, solver
        assert float(sol.loss) > float(theory.regression.optimum_of(p).loss) + 1e-3
    # Above the threshold W = 0 is the global minimum: successful.
    big = ufm.RegressionUFM(p.targets, 10.0, 10.0, 6)
    assert int(ufm.solve(big, "lbfgs", init=zeros).status) == ufm.Status.successful
    # A rank-1 start of the exact solver cannot gain rank: reported, not hidden.
    W1 = jnp.zeros((3, 6)).at[0, 0].set(1.0)
    sol = ufm.solve(p, "exact", init=ufm.Params(zeros.H, W1, zeros.b))
    assert int(sol.status) == ufm.Status.saddle


@pytest.mark.slow
def test_default_solver_and_batched_problem_errors():
    p0 = ufm.RegressionUFM(_problem().targets, 0.0, 0.0, 8)
    sol = ufm.solve(p0, max_steps=50)  # zero lambdas: falls back to L-BFGS, no error
    assert np.isfinite(float(sol.loss))
    batch = ufm.stack([_problem(), _problem(seed=1)])
    with pytest.raises(ValueError, match="problem is batched"):
        ufm.solve(batch)


@pytest.mark.slow
@pytest.mark.parametrize("solver", ["exact", "lbfgs"])
def test_float32(solver):
    p = _problem(dtype=np.float32)
    sol = ufm.solve(p, solver)
    assert sol.params.H.dtype == jnp.float32 and sol.loss.dtype == jnp.float32
    assert int(sol.status) == ufm.Status.successful
    cmp = theory.compare(sol, p)  # against the float64 closed form
    assert cmp.passed(1e-4), cmp.table(1e-4)


@pytest.mark.slow
def test_trajectory_recorded_inside_loop():
    p = _problem()
    sol = ufm.solve(p, "lbfgs", record_every=10)
    tr = sol.trajectory.valid()
    assert tr["step"][0] == 0 and tr["step"][-1] == int(sol.num_steps)
    assert np.all(np.diff(tr["step"]) > 0) and np.all(np.diff(tr["step"])[:-1] == 10)
    np.testing.assert_allclose(tr["loss"][-1], sol.loss, rtol=1e-12)
    assert tr["nrc1"][0] > 0.1 and tr["nrc1"][-1] < 1e-12
    assert tr["nrc3"][-1] < 1e-12
    # Recording does not change the iterates.
    plain = ufm.solve(p, "lbfgs")
    np.testing.assert_allclose(plain.params.W, sol.params.W, rtol=1e-12)
    # Under vmap every instance records.
    # Extra quantities recorded alongside.
    opt = theory.regression.optimum_of(p)

    def wwt_error(params):
        return {"wwt_err": jnp.linalg.norm(params.W @ params.W.T - opt.WWT)}

    sol2 = ufm.solve(p, "lbfgs", record_every=10, record=wwt_error)
    err = sol2.trajectory.valid()["wwt_err"]
    assert err[0] > 1e-2 and err[-1] < 1e-8
    with pytest.raises(ValueError, match="record must be a callable"):
        ufm.solve(p, record=wwt_error)
    keys = jax.random.split(jax.random.PRNGKey(11), 2)
    ex = jax.vmap(lambda k: ufm.solve(p, key=k, record_every=2))(keys)
    assert ex.trajectory.loss.shape[0] == 2 and ex.trajectory.metrics["nrc1"].shape[0] == 2


def test_bad_solver_and_options():
    p = _problem()
    with pytest.raises(ValueError, match="solver must be one of \\['exact', 'lbfgs'\\]"):
        ufm.solve(p, "newton")
    with pytest.raises(TypeError, match="solver must be one of"):
        ufm.solve(p, 3)
    with pytest.raises(ValueError, match="max_steps must be an int >= 0"):
        ufm.solve(p, max_steps=-1)
    with pytest.raises(ValueError, match="record_every must be an int >= 1"):
        ufm.solve(p, record_every=0)
    with pytest.raises(ValueError, match="rtol must be >= 0"):
        ufm.solve(p, rtol=-1.0)
    with pytest.raises(ValueError, match="init.H must have shape \\(N, d\\) = \\(60, 8\\)"):
        ufm.solve(p, "lbfgs", init=ufm.Params(jnp.zeros((60, 7)), jnp.zeros((3, 8)), jnp.zeros(3)))
    with pytest.raises(ValueError, match="init.W must be finite"):
        W = jnp.full((3, 8), jnp.nan)
        ufm.solve(p, "lbfgs", init=ufm.Params(jnp.zeros((60, 8)), W, jnp.zeros(3)))
    with pytest.raises(ValueError, match="the exact solver needs lambda_W > 0"):
        ufm.solve(ufm.RegressionUFM(p.targets, 0.1, 0.0, 8), "exact")
    with pytest.raises(TypeError, match="problem must be a ufm problem"):
        ufm.solve("problem")
