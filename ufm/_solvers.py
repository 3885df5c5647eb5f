"""Solvers: algorithm settings only (data lives in the problem, the loop in ``_iterate``).

* :class:`Exact` - eliminate ``H`` and ``b`` in closed form (ridge regression), minimise the
  reduced objective over ``W`` with L-BFGS, recover ``H`` and ``b`` (see ``ufm/_exact.py``).
* :class:`LBFGS` - L-BFGS (``optax.lbfgs``, zoom line search) on all variables.
* :class:`OptaxSolver` - any ``optax.GradientTransformation`` on all variables: plain gradient
  descent, momentum, Adam (the papers' dynamics).

Preconditioning (on by default for the gradient solvers). As written, the objective's curvature
in the feature block is ``O(1/M)`` (``lambda_H/M`` plus ``||W||^2/M``) while the weight block's
is ``O(1)``; gradient methods then crawl in ``H``. We optimise ``G = H / sqrt(M)`` instead,
which makes both blocks ``O(1)``; ``Solution.params`` is always returned in the original
variables. Measured on (n, d, M) = (3, 256, 10^4): unpreconditioned L-BFGS leaves a relative
``W W^T`` error of 0.33 after 1000 steps, preconditioned L-BFGS reaches 1e-10 in a few hundred.
Pass ``precondition=False`` to reproduce the papers' dynamics on the objective as written.

Solvers are frozen dataclasses: hashable, so they are static arguments of the jitted solve and a
new problem or key never recompiles. Swept hyperparameters (learning rates) belong in arrays:
build the optax optimiser inside the function you ``jax.jit``/``jax.vmap``.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax

from . import _exact
from ._problem import Params, RegressionUFM


def _default_init(problem: RegressionUFM, key: jax.Array, scale: float = 0.1) -> Params:
    """The papers' initialisation: ``H, W ~ N(0, scale^2)`` entrywise, ``b = 0``."""
    M, n, d = problem.num_samples, problem.target_dim, problem.feature_dim
    kh, kw = jax.random.split(key)
    dt = problem.dtype
    return Params(
        scale * jax.random.normal(kh, (M, d), dt),
        scale * jax.random.normal(kw, (n, d), dt),
        jnp.zeros((n,), dt),
    )


@dataclasses.dataclass(frozen=True)
class _GradientSolver:
    """Shared part of the solvers that run on all variables ``(H, W, b)``."""

    precondition: bool = True
    default_max_steps = 10_000
    reuse_linesearch_value = False

    def setup(self, problem: RegressionUFM, key: jax.Array, init: Params | None):
        p0 = _default_init(problem, key) if init is None else init
        scale = jnp.sqrt(jnp.asarray(problem.num_samples, problem.dtype))
        if not self.precondition:
            scale = jnp.ones((), problem.dtype)

        def to_params(y) -> Params:
            G, W, b = y
            return Params(scale * G, W, b if problem.bias else jnp.zeros_like(b))

        y0 = (p0.H / scale, p0.W, p0.b)
        return (lambda y: problem.objective(to_params(y))), y0, to_params

    def check(self, problem) -> None:
        pass


@dataclasses.dataclass(frozen=True)
class LBFGS(_GradientSolver):
    """L-BFGS with optax's zoom line search on all variables (preconditioned by default).

    Attributes:
        memory_size: number of stored curvature pairs.
        precondition: optimise ``H / sqrt(M)`` instead of ``H`` (see module docstring).
    """

    memory_size: int = 10
    default_max_steps = 5_000
    reuse_linesearch_value = True

    def optimizer(self) -> optax.GradientTransformationExtraArgs:
        return optax.lbfgs(memory_size=self.memory_size)


@dataclasses.dataclass(frozen=True, eq=False)
class OptaxSolver(_GradientSolver):
    """Run any optax optimiser on all variables (preconditioned by default).

    ``ufm.solve(problem, optax.sgd(0.1, momentum=0.9))`` wraps the optimiser in this class with
    ``precondition=True``; build it yourself for ``precondition=False``.
    """

    tx: optax.GradientTransformation | None = None

    def __post_init__(self):
        if not isinstance(self.tx, optax.GradientTransformation):
            raise TypeError(f"tx must be an optax.GradientTransformation, got {self.tx!r}")

    def __eq__(self, other):
        return (
            type(other) is OptaxSolver
            and other.tx is self.tx
            and other.precondition == self.precondition
        )

    def __hash__(self):
        return hash((OptaxSolver, id(self.tx), self.precondition))

    def optimizer(self) -> optax.GradientTransformationExtraArgs:
        return optax.with_extra_args_support(self.tx)


@dataclasses.dataclass(frozen=True)
class Exact:
    """Exact solver for MSE problems: ridge-eliminate ``H``, ``b``; L-BFGS over ``W`` only.

    The ``W`` part costs ``O(n^3)`` per step whatever ``M`` and ``d`` are; recovering ``H``
    costs one ``O(M n d)`` product at the end. See ``ufm/_exact.py`` for the math. Needs
    ``lambda_H > 0`` and ``lambda_W > 0``.
    """

    memory_size: int = 10
    default_max_steps = 2_000
    reuse_linesearch_value = True

    def check(self, problem) -> None:
        if not isinstance(problem, RegressionUFM):
            raise TypeError(f"the exact solver supports RegressionUFM, got {type(problem)}")
        for name in ("lambda_H", "lambda_W"):
            v = getattr(problem, name)
            if not isinstance(v, jax.core.Tracer) and jnp.ndim(v) == 0 and float(v) <= 0:
                raise ValueError(
                    f"the exact solver needs {name} > 0, got {float(v)}; for zero "
                    "regularisation use a gradient solver, e.g. solver='lbfgs'"
                )

    def optimizer(self) -> optax.GradientTransformationExtraArgs:
        return optax.lbfgs(memory_size=self.memory_size)

    def setup(self, problem: RegressionUFM, key: jax.Array, init: Params | None):
        red, A0 = _exact.setup(problem, key, init)
        return (
            lambda A: _exact.reduced_objective(A, red, problem),
            A0,
            lambda A: _exact.recover(A, red, problem),
        )


SOLVER_NAMES = {"exact": Exact, "lbfgs": LBFGS}


def resolve_solver(solver, problem):
    """Map ``None``, a name, an optax transformation or a solver object to a solver object."""
    if solver is None:
        return Exact() if isinstance(problem, RegressionUFM) else LBFGS()
    if isinstance(solver, str):
        if solver not in SOLVER_NAMES:
            raise ValueError(
                f"solver must be one of {sorted(SOLVER_NAMES)}, an optax.GradientTransformation "
                f"or a ufm solver object, got {solver!r}"
            )
        return SOLVER_NAMES[solver]()
    if isinstance(solver, Exact | LBFGS | OptaxSolver):
        return solver
    if isinstance(solver, optax.GradientTransformation):
        return OptaxSolver(tx=solver)
    raise TypeError(
        f"solver must be one of {sorted(SOLVER_NAMES)}, an optax.GradientTransformation or a "
        f"ufm solver object (ufm.Exact, ufm.LBFGS, ufm.OptaxSolver), got {solver!r}"
    )
