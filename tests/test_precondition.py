"""``precondition=False``: the gradient solvers minimise the objective exactly as written (the
papers' protocol), on the same fast step as the default preconditioned run.

The step's cost is read from the compiled program (``benchmarks/dynamics.py``'s
``loop_passes``: the ``M x d`` arrays the loop body reads and writes), which is exact and
noise-free, unlike a timing."""

import importlib.util
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ufm


def _problem(M=23, n=3, d=5):
    Y = np.random.default_rng(1).normal(size=(M, n)) + 0.5
    return ufm.RegressionUFM(Y, 0.03, 0.007, d)


def _plain_loop_on_the_objective(p, tx, steps, key):
    """``steps`` optax steps on ``jax.grad(p.objective)`` in the problem's own variables: no
    scales and no ufm loop."""
    params = p.default_init(key)

    def step(_, carry):
        params, state = carry
        u, state = tx.update(jax.grad(p.objective)(params), state, params)
        return optax.apply_updates(params, u), state

    params, _ = jax.lax.fori_loop(0, steps, step, (params, tx.init(params)))
    return params


@pytest.mark.parametrize("tx", [optax.sgd(0.3, momentum=0.9), optax.adam(0.01)])
def test_unpreconditioned_solve_follows_plain_optax_on_the_objective(tx):
    """20 steps of ``ufm.solve`` with ``precondition=False`` (``rtol = 0``: no early stop) are
    the plain optax loop's on the objective as written, to rounding."""
    p, key, steps = _problem(), jax.random.PRNGKey(3), 20
    solver = ufm.OptaxSolver(tx, precondition=False)
    sol = ufm.solve(p, solver, key=key, rtol=jnp.zeros(()), max_steps=steps)
    assert int(sol.status) == ufm.Status.max_steps_reached and int(sol.num_steps) == steps
    ref = _plain_loop_on_the_objective(p, tx, steps, key)
    start = p.default_init(key)
    for a, b, a0 in zip(sol.params, ref, start, strict=True):
        assert float(jnp.max(jnp.abs(b - a0))) > 1e-3  # the run moved
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(sol.loss, p.objective(ref), rtol=1e-12)


@pytest.mark.parametrize("n", [3, 11])
def test_linearise_with_unit_scales_matches_autodiff(n):
    """The hand-written linearisation with ``precondition=False``'s unit scales: value,
    gradient and both norms equal autodiff's of the objective as written (``n = 11`` takes the
    matrix-product form of ``E V``, ``n = 3`` the rank-one sum)."""
    p = _problem(n=n)
    solver = ufm.OptaxSolver(optax.sgd, learning_rate=0.1, precondition=False)
    fn, y0, to_params = solver.setup(p, jax.random.PRNGKey(2), None)
    y0 = y0._replace(b=y0.b + 0.25)
    np.testing.assert_array_equal(to_params(y0).H, y0.H)  # unit scales: y is params
    f, aux, gnorm, ynorm = fn.linearise(y0)
    g = fn.gradient(y0, aux)
    f_ad, g_ad = jax.value_and_grad(p.objective)(y0)
    np.testing.assert_allclose(f, f_ad, rtol=1e-13)
    for a, b in zip(g, g_ad, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(gnorm, optax.tree.norm(g_ad), rtol=1e-13)
    np.testing.assert_allclose(ynorm, optax.tree.norm(y0), rtol=1e-13)


@jax.jit
def _linearised_and_autodiff(p, key):
    """``(fn.linearise, fn.gradient)`` and autodiff's ``(value, gradient, ||gradient||,
    ||y||)`` at one point, for the default scales and ``precondition=False``'s (one program)."""
    out = []
    for precondition in (True, False):
        solver = ufm.OptaxSolver(optax.sgd, learning_rate=0.1, precondition=precondition)
        fn, y0, _ = solver.setup(p, key, None)
        y = ufm.Params(20 * y0.H, 30 * y0.W, y0.b + 0.25)  # logits of order 1, a nonzero bias
        f, aux, gnorm, ynorm = fn.linearise(y)
        f_ad, g_ad = jax.value_and_grad(fn)(y)
        ad = (f_ad, g_ad, optax.tree.norm(g_ad), optax.tree.norm(y))
        out.append(((f, fn.gradient(y, aux), gnorm, ynorm), ad))
    return out


@pytest.mark.parametrize(
    "loss, bias, K", [("mse", "none", 3), ("mse", 0.3, 9), ("ce", "free", 9), ("ce", 0.3, 3)]
)
def test_classification_linearise_matches_autodiff(loss, bias, K):
    """``ClassificationUFM``'s hand-written linearisation, with the default scales and with
    ``precondition=False``'s unit ones: value, gradient and both norms equal autodiff's of the
    objective in the solver's variables (``K = 9`` takes the matrix-product form of ``E V``,
    ``K = 3`` the rank-one sum; CE with label smoothing 0.2)."""
    labels = np.arange(2 * K + 1) % K
    delta = 0.2 if loss == "ce" else 0.0
    p = ufm.ClassificationUFM(labels, K, 0.02, 0.01, 10, loss, bias, label_smoothing=delta)
    for (f, g, gnorm, ynorm), (f_ad, g_ad, gnorm_ad, ynorm_ad) in _linearised_and_autodiff(
        p, jax.random.PRNGKey(2)
    ):
        np.testing.assert_allclose(f, f_ad, rtol=1e-13)
        for a, b in zip(g, g_ad, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15 * float(jnp.max(jnp.abs(b))))
        assert float(jnp.max(jnp.abs(g.H))) > 1e-2
        np.testing.assert_allclose(gnorm, gnorm_ad, rtol=1e-13)
        np.testing.assert_allclose(ynorm, ynorm_ad, rtol=1e-13)


def _loop_passes():
    path = pathlib.Path(__file__).parents[1] / "benchmarks" / "dynamics.py"
    spec = importlib.util.spec_from_file_location("_benchmark_dynamics", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.loop_passes


_SOLVERS = {
    "momentum": (optax.sgd, {"learning_rate": 0.05, "momentum": 0.9}, 4),
    "adam": (optax.adam, {"learning_rate": 1e-3}, 6),
}


_PASS_PROBLEMS = {
    "regression": lambda M, d: ufm.RegressionUFM(
        np.random.default_rng(0).normal(size=(M, 3)), 1e-3, 1e-3, d
    ),
    "ce": lambda M, d: ufm.ClassificationUFM(
        np.arange(M) % 4, 4, 1e-3, 1e-3, d, loss="ce", bias="free", label_smoothing=0.1
    ),
}


@pytest.mark.parametrize(
    "problem, kind",
    [
        ("regression", "momentum"),
        pytest.param("regression", "adam", marks=pytest.mark.slow),
        ("ce", "momentum"),
        pytest.param("ce", "adam", marks=pytest.mark.slow),
    ],
)
def test_a_step_moves_as_much_memory_with_and_without_preconditioning(problem, kind):
    """The compiled solve's step reads and writes ``M x d`` arrays as often with
    ``precondition=False`` as with the default scales (the same fast step). At (M, d) =
    (1000, 16) XLA:CPU fuses the step as it does at M = 1e5 (10 transfers for momentum, 14 for
    Adam, with the stopping test, for both problems)."""
    M, d = 1000, 16
    p = _PASS_PROBLEMS[problem](M, d)
    factory, hyper, floor = _SOLVERS[kind]
    loop_passes = _loop_passes()
    counts, zero = {}, jnp.zeros(())
    for precondition in (True, False):
        solver = ufm.OptaxSolver(factory, precondition=precondition, **hyper)
        hlo = (
            jax.jit(lambda p, s=solver: ufm.solve(p, s, rtol=zero, atol=zero, max_steps=64))
            .lower(p)
            .compile()
            .as_text()
        )
        counts[precondition] = loop_passes(hlo, f"f64[{M},{d}]")
    assert counts[True] and max(counts[True]) >= floor, counts  # the step was found
    assert counts[False] == counts[True], counts
