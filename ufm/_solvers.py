"""Solvers: algorithm settings only (data lives in the problem, the loop in ``_iterate``).

* :class:`Exact` - eliminate ``H`` and ``b`` in closed form (ridge regression), minimise the
  reduced objective over ``W`` with L-BFGS, recover ``H`` and ``b`` (see ``ufm/_exact.py``).
* :class:`LBFGS` - L-BFGS (``optax.lbfgs``, zoom line search) on all variables.
* :class:`OptaxSolver` - any ``optax.GradientTransformation`` on all variables: plain gradient
  descent, momentum, Adam (the papers' dynamics).

Preconditioning (on by default for the gradient solvers): each problem names one scalar scale
per variable block (``problem.precondition_scales()``, a pytree like its variables) and the
solvers optimise ``params / scales``; ``Solution.params`` is always returned in the original
variables. Regression: the
feature block's curvature is ``O(1/M)`` (``lambda_H/M`` plus ``||W||^2/M``) while the weight
block's is ``O(1)``, so ``(s_H, s_W) = (sqrt(M), 1)``. Classification: ``(sqrt(N), sqrt(N))``
(see ``ClassificationUFM.precondition_scales``). Without it the curvatures of the blocks
differ by a factor ``M``, so L-BFGS and gradient descent converge slowly on large problems
(``benchmarks/regression.py`` measures both). Pass ``precondition=False`` to reproduce the
papers' dynamics on the objective as written. On a problem's hand-written linearisation (below)
a step costs the same either way: the same compiled passes over the large arrays
(``tests/test_precondition.py``; timings in ``benchmarks/dynamics.py``). On the autodiff path
the scaled variables are multiplied out (``H = s_H y_H``) before the objective reads them, which
XLA:CPU may write out as an array: there (the deep problem, the class-mean reduction) the
unpreconditioned step can be the cheaper one.

A problem may offer an exact hand-written linearisation (``linearise(y, scales)`` and
``gradient(y, aux, scales)``: ``RegressionUFM``, ``ClassificationUFM``); the momentum and Adam
solvers then run the memory-lean step of ``ufm/_iterate.py`` (``benchmarks/dynamics.py``
measures it).

Solvers are pytrees: :class:`Exact` and :class:`LBFGS` are static (hashable settings), and
:class:`OptaxSolver` built from a factory carries its float hyperparameters as traced leaves, so
a new problem, key or learning rate never recompiles and a learning-rate sweep runs under
``jax.vmap``.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from . import _exact
from ._validate import check_int, is_concrete


class _Objective:
    """``y -> problem.objective(scales * y)``, the objective the gradient solvers minimise.

    Where the problem has an exact hand-written linearisation (``problem.linearise(y, scales)
    -> (value, aux, ||grad||^2, ||y||^2)`` and ``problem.gradient(y, aux, scales) -> grad``, in
    the solver's variables ``y``), the loop (``ufm/_iterate.py``) uses it through
    :meth:`linearise` and :meth:`gradient`: ``aux`` is small, so the loop never stores the
    gradient, and the problem computes the norms in the passes it makes anyway."""

    def __init__(self, problem, scales, to_params):
        self.problem = problem
        self.scales = scales
        self.to_params = to_params
        if callable(getattr(problem, "linearise", None)):
            self.linearise = self._linearise
            self.gradient = self._gradient

    def __call__(self, y):
        return self.problem.objective(self.to_params(y))

    def _linearise(self, y):
        f, aux, grad_sq, y_sq = self.problem.linearise(y, self.scales)
        return f, aux, jnp.sqrt(grad_sq), jnp.sqrt(y_sq)

    def _gradient(self, y, aux):
        return self.problem.gradient(y, aux, self.scales)


# The largest ``check_every`` (the step counter may be int32); the CLI checks against it too.
MAX_CHECK_EVERY = 2**30


class Solver(abc.ABC):
    """What a solver provides to :func:`ufm.solve` and the loop of ``ufm/_iterate.py``.

    A solver holds algorithm settings only (the data lives in the problem). It is a pytree:
    static settings in the tree's structure (hashable, e.g. a frozen dataclass registered with
    ``jax.tree_util.register_static``) and traced hyperparameters as leaves, so a new problem,
    key or hyperparameter value never recompiles. ``ufm.solve`` runs, inside one ``jax.jit``::

        solver.check(problem)                  # before any work (concrete values)
        fn, y0, to_params = solver.setup(problem, key, init)
        iterate(fn, solver.optimizer(), y0, check_every=solver.check_every,
                reuse_linesearch_value=solver.reuse_linesearch_value, ...)
        params = to_params(y)

    A *staged* solver (``staged = True``) splits ``setup`` so that the loop runs on a summary
    of the data and compiles once per summary shape: :meth:`prepare`, :meth:`reduced_objective`
    and :meth:`recover` (see :class:`Exact`).

    Attributes:
        default_max_steps: the step budget when ``ufm.solve`` gets no ``max_steps``.
        reuse_linesearch_value: the optimiser is a line search whose state holds the objective
            and gradient at the new iterate (``optax.value_and_grad_from_state``); the loop
            then reads them from the state and stalls at an exactly zero update.
        check_every: steps per stopping test (1 for line searches).
        staged: whether ``ufm.solve`` runs the staged path.
    """

    default_max_steps: int = 1_000
    reuse_linesearch_value: bool = False
    check_every: int = 1
    staged: bool = False

    def check(self, problem) -> None:
        """Raise a clear error, before any work, if the solver cannot solve ``problem``
        (the default accepts every problem)."""
        return None

    @abc.abstractmethod
    def setup(
        self, problem, key: jax.Array, init
    ) -> tuple[Callable[[Any], jax.Array], Any, Callable[[Any], Any]]:
        """``(fn, y0, to_params)``: the scalar objective of the solver's variables ``y``, the
        start ``y0`` (from ``init``, or the problem's ``default_init(key)``), and the map from
        ``y`` back to the problem's variables. ``fn`` may offer the exact linearisation of
        ``ufm/_iterate.py`` (``fn.linearise``, ``fn.gradient``)."""

    @abc.abstractmethod
    def optimizer(self) -> optax.GradientTransformationExtraArgs:
        """The optax transformation the loop runs; it accepts the ``value``, ``grad`` and
        ``value_fn`` keyword arguments."""

    def prepare(self, problem, key: jax.Array, init) -> tuple[Any, Any]:
        """Staged solvers: ``(summary, y0)``, the data summary the loop runs on."""
        raise NotImplementedError(f"{type(self).__name__} is not a staged solver")

    def reduced_objective(self, y, summary) -> jax.Array:
        """Staged solvers: the objective of ``y`` given the summary."""
        raise NotImplementedError(f"{type(self).__name__} is not a staged solver")

    def recover(self, problem, summary, y):
        """Staged solvers: the problem's variables at the loop's final ``y``."""
        raise NotImplementedError(f"{type(self).__name__} is not a staged solver")


class _GradientSolver(Solver):
    """Shared part of the solvers that run on all of a problem's variables."""

    precondition: bool = True
    # Steps per stopping test (``ufm/_iterate.py``); only :class:`OptaxSolver` sets it.
    check_every = 1

    def setup(self, problem, key: jax.Array, init):
        """``(objective of y, y0, y -> params)`` with ``y = params / scales`` leaf-wise."""
        p0 = problem.default_init(key) if init is None else init
        scales = problem.precondition_scales()
        if not self.precondition:
            scales = jax.tree_util.tree_map(jnp.ones_like, scales)

        def to_params(y):
            return jax.tree_util.tree_map(lambda s, v: s * v, scales, y)

        y0 = jax.tree_util.tree_map(lambda s, p: p / s, scales, p0)
        return _Objective(problem, scales, to_params), y0, to_params


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
        check_every: run the stopping test after every ``check_every``-th step only (and at
            every record point and at ``max_steps``). The steps in between compute the
            gradient and, where the optimiser reads it, the objective, but not the norms the
            test needs: on large problems that saves up to two of a step's passes over ``H``
            (``benchmarks/dynamics.py``). A run then stops at the first tested step whose
            test passes (at most ``check_every - 1`` steps after the test first held, where
            it keeps holding once it has), and a divergence is reported at the next test;
            ``num_steps``, ``loss`` and ``grad_norm`` are those of the returned iterate. An
            int from 1 to ``2**30``; default 1 (a test after every step).
    """

    default_max_steps = 10_000
    reuse_linesearch_value = False

    def __init__(self, tx, /, *, precondition: bool = True, check_every: int = 1, **hyperparams):
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
        check_every = check_int(check_every, "check_every", minimum=1)
        if check_every > MAX_CHECK_EVERY:
            raise ValueError(f"check_every must be an int <= 2**30, got {check_every}")
        self.tx = tx
        self.precondition = precondition
        self.check_every = check_every
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
            self.check_every,
        )

    @classmethod
    def tree_unflatten(cls, aux, children):
        obj = object.__new__(cls)
        obj.tx, names, obj.static, obj.precondition, obj.check_every = aux
        obj.traced = dict(zip(names, children, strict=True))
        return obj

    def __repr__(self) -> str:
        name = getattr(self.tx, "__name__", type(self.tx).__name__)
        hp = ", ".join(f"{k}={v}" for k, v in [*self.traced.items(), *self.static])
        every = f", check_every={self.check_every}" if self.check_every != 1 else ""
        return (
            f"OptaxSolver({name}{', ' + hp if hp else ''}, precondition={self.precondition}{every})"
        )

    def optimizer(self) -> optax.GradientTransformationExtraArgs:
        tx = self.tx
        if not isinstance(tx, optax.GradientTransformation):
            tx = tx(**self.traced, **dict(self.static))
        return optax.with_extra_args_support(tx)


@jax.tree_util.register_static
@dataclasses.dataclass(frozen=True)
class Exact(Solver):
    """Exact solver for MSE problems: ridge-eliminate ``H``, ``b``; L-BFGS over ``W`` only.

    The ``W`` part costs ``O(n^3)`` per step whatever ``M`` and ``d`` are; recovering ``H``
    costs one ``O(M n d)`` product at the end. See ``ufm/_exact.py`` for the math. Needs
    ``lambda_H > 0`` and ``lambda_W > 0``.
    """

    memory_size: int = 10
    default_max_steps = 2_000
    reuse_linesearch_value = True
    check_every = 1

    def check(self, problem) -> None:
        data = problem.exact_data()
        if data is None:
            raise TypeError(
                "the exact solver needs an MSE problem with one weight layer (RegressionUFM or "
                f"ClassificationUFM with loss='mse'), got {problem!r}; use solver='lbfgs' or an "
                "optax optimiser"
            )
        for name, v in (("lambda_H", data.ridge), ("lambda_W", data.lambda_W)):
            if is_concrete(v) and jnp.ndim(v) == 0 and float(v) <= 0:
                raise ValueError(
                    f"the exact solver needs {name} > 0, got {float(v)}; for zero "
                    "regularisation use a gradient solver, e.g. solver='lbfgs'"
                )

    def optimizer(self) -> optax.GradientTransformationExtraArgs:
        return optax.lbfgs(memory_size=self.memory_size)

    # The exact solver is *staged* (``ufm/_solve.py``): ``prepare`` summarises the data,
    # the loop runs on the summary alone (compiled once per n and r, whatever N is), and
    # ``recover`` rebuilds H and b.
    staged = True

    def prepare(self, problem, key: jax.Array, init):
        """``(summary, A0)``: the data summary (no array of size ``N``) and the start."""
        data = problem.exact_data()
        red, A0 = _exact.setup(data, key, init)
        return (red, data._replace(targets=None)), A0

    def reduced_objective(self, A, summary):
        red, data = summary
        return _exact.reduced_objective(A, red, data)

    def recover(self, problem, summary, A):
        return _exact.recover(A, summary[0], problem.exact_data())

    def setup(self, problem, key: jax.Array, init):
        summary, A0 = self.prepare(problem, key, init)
        return (
            lambda A: self.reduced_objective(A, summary),
            A0,
            lambda A: self.recover(problem, summary, A),
        )


SOLVER_NAMES = {"exact": Exact, "lbfgs": LBFGS}


def resolve_solver(solver, problem):
    """Map ``None``, a name, an optax transformation or a solver object to a solver object."""
    if solver is None:
        # The exact solver where the problem admits it: MSE objectives with lambdas > 0 (a
        # concrete zero lambda has no unique minimiser; gradient dynamics show which one).
        data = problem.exact_data()
        if data is None:
            return LBFGS()
        zero = any(is_concrete(v) and float(v) == 0 for v in (data.ridge, data.lambda_W))
        return LBFGS() if zero else Exact()
    if isinstance(solver, str):
        if solver not in SOLVER_NAMES:
            raise ValueError(
                f"solver must be one of {sorted(SOLVER_NAMES)}, an optax.GradientTransformation "
                f"or a ufm solver object, got {solver!r}"
            )
        return SOLVER_NAMES[solver]()
    if isinstance(solver, Solver):
        return solver
    if isinstance(solver, optax.GradientTransformation):
        return OptaxSolver(solver)
    raise TypeError(
        f"solver must be one of {sorted(SOLVER_NAMES)}, an optax.GradientTransformation or a "
        f"ufm.Solver (ufm.Exact, ufm.LBFGS, ufm.OptaxSolver or a subclass), got {solver!r}"
    )
