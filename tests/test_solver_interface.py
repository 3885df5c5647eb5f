"""The solver interface (``ufm.Solver``): the built-in solvers implement it, a solver written
outside the package runs through ``ufm.solve``, and a subclass missing a method is refused."""

import dataclasses

import jax
import numpy as np
import optax
import pytest

import ufm


def test_builtin_solvers_implement_the_interface():
    for s in (ufm.Exact(), ufm.LBFGS(), ufm.OptaxSolver(optax.sgd, learning_rate=0.1)):
        assert isinstance(s, ufm.Solver)
    assert ufm.Exact.staged and not ufm.LBFGS.staged


def test_a_subclass_without_setup_is_refused():
    class Incomplete(ufm.Solver):
        def optimizer(self):
            return optax.lbfgs()

    with pytest.raises(TypeError, match="abstract"):
        Incomplete()


@jax.tree_util.register_static
@dataclasses.dataclass(frozen=True)
class _PlainLBFGS(ufm.Solver):
    """L-BFGS on the problem's variables as they are (no preconditioning)."""

    default_max_steps = 3_000
    reuse_linesearch_value = True

    def setup(self, problem, key, init):
        p0 = problem.default_init(key) if init is None else init
        return problem.objective, p0, lambda y: y

    def optimizer(self):
        return optax.lbfgs()


@pytest.mark.slow
def test_a_solver_from_outside_the_package_solves():
    Y = np.random.default_rng(0).normal(size=(30, 3))
    p = ufm.RegressionUFM(Y, 1e-2, 1e-2, 4)
    sol = ufm.solve(p, _PlainLBFGS())
    ref = ufm.solve(p)  # the exact solver
    assert sol.status_name == "successful"
    np.testing.assert_allclose(float(sol.loss), float(ref.loss), rtol=1e-9)
