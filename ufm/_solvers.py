"""Solvers: algorithm settings only (data lives in the problem, the loop in ``_iterate``).

* :class:`Exact` - eliminate ``H`` and ``b`` in closed form (ridge regression), minimise the
  reduced objective over ``W`` with L-BFGS, recover ``H`` and ``b`` (see ``ufm/_exact.py``).
* :class:`LBFGS` - L-BFGS (``optax.lbfgs``, zoom line search) on all variables.
* :class:`OptaxSolver` - any ``optax.GradientTransformation`` on all variables: plain gradient
  descent, momentum, Adam (the papers' dynamics).

Preconditioning (on by default for the gradient solvers): each problem names block scales
``(s_H, s_W)`` (``problem.precondition_scales()``) and the solvers optimise ``H / s_H`` and
``W / s_W``; ``Solution.params`` is always returned in the original variables. Regression: the
feature block's curvature is ``O(1/M)`` (``lambda_H/M`` plus ``||W||^2/M``) while the weight
block's is ``O(1)``, so ``(s_H, s_W) = (sqrt(M), 1)``. Classification: ``(sqrt(N), sqrt(N))``
(see ``ClassificationUFM.precondition_scales``). On (n, d, M) = (3, 256, 10^4),
lambda = 1e-3, the issue measured a relative ``W W^T`` error of 0.33 after 1000 steps of
unpreconditioned L-BFGS; preconditioned L-BFGS reached 1.8e-11 in 569 steps here
(``benchmarks/regression.py`` prints current figures). Pass ``precondition=False`` to
reproduce the papers' dynamics on the objective as written.

Solvers are pytrees: :class:`Exact` and :class:`LBFGS` are static (hashable settings), and
:class:`OptaxSolver` built from a factory carries its float hyperparameters as traced leaves, so
a new problem, key or learning rate never recompiles and a learning-rate sweep runs under
``jax.vmap``.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax

from . import _exact
from ._problem import Params
from ._validate import is_concrete


class _GradientSolver:
    """Shared part of the solvers that run on all variables ``(H, W, b)``."""

    precondition: bool = True

    def setup(self, problem, key: jax.Array, init: Params | None):
        p0 = problem.default_init(key) if init is None else init
        s_H, s_W = problem.precondition_scales()
        if not self.precondition:
            s_H, s_W = jnp.ones_like(s_H), jnp.ones_like(s_W)

        def to_params(y) -> Params:
            G, V, b = y
            return Params(s_H * G, s_W * V, b if problem.has_bias else jnp.zeros_like(b))

        y0 = (p0.H / s_H, p0.W / s_W, p0.b)
        return (lambda y: problem.objective(to_params(y))), y0, to_params

    def check(self, problem) -> None:
        pass


@jax.tree_util.register_static
@dataclasses.dataclass(frozen=True)
class LBFGS(_GradientSolver):
    """L-BFGS with optax's zoom line search on all variables (preconditioned by default).

    Attributes:
        memory_size: number of stored curvature pairs.
        precondition: optimise ``H / sqrt(M)`` instead of ``H`` (see module docstring).
    """

    memory_size: int = 10
    precondition: bool = True
    default_max_steps = 5_000
    reuse_linesearch_value = True

    def optimizer(self) -> optax.GradientTransformationExtraArgs:
        return optax.lbfgs(memory_size=self.memory_size)


@jax.tree_util.register_pytree_node_class
class OptaxSolver(_GradientSolver):
    """Run an optax optimiser on all variables (preconditioned by default).

    Two forms:

    * ``OptaxSolver(optax.sgd, learning_rate=lr, momentum=0.9)``: a factory and its
      hyperparameters. Float and array hyperparameters are *traced* pytree leaves, so a sweep
      ``jax.vmap(lambda lr: ufm.solve(p, ufm.OptaxSolver(optax.sgd, learning_rate=lr)))(lrs)``
      compiles once; ints, bools, strings and ``None`` are static.
    * ``OptaxSolver(tx)`` with a ready ``optax.GradientTransformation`` (what
      ``ufm.solve(problem, optax.adam(1e-3))`` builds): static, compared by identity, so every new
      optimiser object compiles anew.

    Args:
        precondition: optimise ``H / s_H`` and ``W / s_W`` (see the module docstring);
            ``False`` runs the objective exactly as written.
    """

    default_max_steps = 10_000
    reuse_linesearch_value = False

    def __init__(self, tx, /, *, precondition: bool = True, **hyperparams):
        if isinstance(tx, optax.GradientTransformation):
            if hyperparams:
                raise TypeError(
                    "hyperparameters go with an optax factory (e.g. OptaxSolver(optax.sgd, "
                    "learning_rate=0.1)), not with an optimiser instance; got "
                    f"{sorted(hyperparams)}"
                )
        elif not callable(tx):
            raise TypeError(
                "tx must be an optax.GradientTransformation or a factory such as optax.sgd, got "
                f"{tx!r}"
            )
        if not isinstance(precondition, bool):
            raise TypeError(f"precondition must be True or False, got {precondition!r}")
        self.tx = tx
        self.precondition = precondition
        traced = {
            k: v
            for k, v in hyperparams.items()
            if isinstance(v, float | jax.Array | np.ndarray) and not isinstance(v, bool)
        }
        self.traced = dict(sorted(traced.items()))
        self.static = tuple(sorted((k, v) for k, v in hyperparams.items() if k not in traced))

    def tree_flatten(self):
        return tuple(self.traced.values()), (
            self.tx,
            tuple(self.traced),
            self.static,
            self.precondition,
        )

    @classmethod
    def tree_unflatten(cls, aux, children):
        obj = object.__new__(cls)
        obj.tx, names, obj.static, obj.precondition = aux
        obj.traced = dict(zip(names, children, strict=True))
        return obj

    def __repr__(self) -> str:
        name = getattr(self.tx, "__name__", type(self.tx).__name__)
        hp = ", ".join(f"{k}={v}" for k, v in [*self.traced.items(), *self.static])
        return f"OptaxSolver({name}{', ' + hp if hp else ''}, precondition={self.precondition})"

    def optimizer(self) -> optax.GradientTransformationExtraArgs:
        tx = self.tx
        if not isinstance(tx, optax.GradientTransformation):
            tx = tx(**self.traced, **dict(self.static))
        return optax.with_extra_args_support(tx)


@jax.tree_util.register_static
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
        if not getattr(problem, "is_mse", False):
            raise TypeError(
                "the exact solver needs an MSE problem (RegressionUFM or ClassificationUFM with "
                f"loss='mse'), got {problem!r}; use solver='lbfgs' or an optax optimiser"
            )
        for name in ("lambda_H", "lambda_W"):
            v = getattr(problem, name)
            if is_concrete(v) and jnp.ndim(v) == 0 and float(v) <= 0:
                raise ValueError(
                    f"the exact solver needs {name} > 0, got {float(v)}; for zero "
                    "regularisation use a gradient solver, e.g. solver='lbfgs'"
                )

    def optimizer(self) -> optax.GradientTransformationExtraArgs:
        return optax.lbfgs(memory_size=self.memory_size)

    def setup(self, problem, key: jax.Array, init: Params | None):
        data = problem.mse_data()
        red, A0 = _exact.setup(data, problem.feature_dim, key, init)
        return (
            lambda A: _exact.reduced_objective(A, red, data),
            A0,
            lambda A: _exact.recover(A, red, data),
        )


SOLVER_NAMES = {"exact": Exact, "lbfgs": LBFGS}


def resolve_solver(solver, problem):
    """Map ``None``, a name, an optax transformation or a solver object to a solver object."""
    if solver is None:
        # The exact solver where the problem admits it: MSE objectives with lambdas > 0 (a
        # concrete zero lambda has no unique minimiser; gradient dynamics show which one).
        zero = any(is_concrete(v) and float(v) == 0 for v in (problem.lambda_H, problem.lambda_W))
        return Exact() if getattr(problem, "is_mse", False) and not zero else LBFGS()
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
        return OptaxSolver(solver)
    raise TypeError(
        f"solver must be one of {sorted(SOLVER_NAMES)}, an optax.GradientTransformation or a "
        f"ufm solver object (ufm.Exact, ufm.LBFGS, ufm.OptaxSolver), got {solver!r}"
    )
