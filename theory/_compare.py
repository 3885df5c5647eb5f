"""``theory.compare``: a numerical solution against the closed form, quantity by quantity.

Everything problem-specific comes from the problem's :class:`~theory._reference.Reference`
(:func:`theory.reference`); this module checks the arguments and runs it.
"""

from __future__ import annotations

import jax
import numpy as np

from ufm._solution import Solution
from ufm.problems import Problem

from ._reference import Comparison, NoReference, Plan, covered, reference


def _check_arguments(solution, problem):
    """Types and sizes of :func:`compare`'s arguments, before any work; returns the
    problem's reference."""
    if not isinstance(solution, Solution):
        swapped = (
            " (the order is compare(solution, problem))" if isinstance(solution, Problem) else ""
        )
        raise TypeError(
            f"solution must be a ufm.Solution (the result of ufm.solve), got "
            f"{type(solution).__name__}{swapped}"
        )
    if isinstance(problem, Problem):
        problem.check_unbatched()
    ref = reference(problem)
    if isinstance(ref, NoReference):
        raise TypeError(
            f"problem must be a {_either()} (the problems with a closed form; others register "
            f"theirs with theory.reference.register), got {type(problem).__name__}"
        )
    if np.ndim(solution.loss) != 0:
        raise ValueError("compare takes one solution; loop or vmap over a batch yourself")
    _check_variables(solution.params, problem)
    return ref


def _either() -> str:
    names = covered().split(", ")
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


def _check_variables(params, problem) -> None:
    """The solution's variables are the problem's kind and shapes: the problem's own
    :meth:`~ufm.problems.Problem.check_init` on zeros of the same shapes (so that values,
    which a comparison reports rather than refuses, are not checked)."""
    expected = jax.eval_shape(problem.default_init, jax.random.PRNGKey(0))
    if type(params) is not type(expected):
        raise TypeError(
            f"solution.params must be {_name(type(expected), fields=True)} for a "
            f"{_name(type(problem))}, got {type(params).__name__}"
        )
    zeros = jax.tree_util.tree_map(lambda x: np.zeros(np.shape(x), problem.dtype), params)
    try:
        problem.check_init(zeros)
    except (TypeError, ValueError) as err:
        raise type(err)(str(err).replace("init.", "solution.params.")) from None


def _name(kind: type, fields: bool = False) -> str:
    """``ufm.DeepParams(H, Ws, b)`` for the package's types, the class name for others."""
    name = f"ufm.{kind.__name__}" if kind.__module__.startswith("ufm.") else kind.__name__
    if fields and hasattr(kind, "_fields"):
        name += f"({', '.join(kind._fields)})"
    return name


def plan(problem, params) -> Plan | None:
    """The :class:`Plan` comparing ``params`` (arrays, or ``jax.ShapeDtypeStruct`` to compile
    ahead) with ``problem``'s closed form, both in the reference precision; ``None`` where the
    comparison is not one compiled program (deep problems, or no closed form). Arguments are
    not checked here (:func:`compare` does)."""
    return reference(problem).plan(problem, params)


def plan_ahead(problem) -> Plan | None:
    """:func:`plan` for a solution of ``problem``'s shapes and dtype (``jax.ShapeDtypeStruct``
    variables), to compile before the solution exists."""
    ref = reference(problem)
    if not ref.available:
        return None
    shapes = jax.eval_shape(problem.default_init, jax.random.PRNGKey(0))
    return ref.plan(problem, shapes)


def precompile(problem) -> None:
    """Compile :func:`compare`'s program for ``problem``'s shapes without a solution, e.g. in a
    thread while the solver compiles. A later :func:`compare` of a solution of this problem
    reuses it. Problems without a compiled comparison (deep) are a no-op."""
    p = plan_ahead(problem)
    if p is not None:
        p.program.lower(*p.args, *p.static).compile()


def compare(solution: Solution, problem) -> Comparison:
    """Compare a single (unbatched) :class:`ufm.Solution` with the closed form of its problem
    (:func:`theory.reference`: :func:`regression.optimum_of`, :func:`classification.optimum_of`
    or, for a :class:`ufm.DeepUFM`, :func:`theory.deep.optimum`).

    Where theory predicts nothing for the problem (its reference says ``available = False``:
    unbalanced classes, a zero lambda, ReLU deep UFMs outside the established cases), the
    :class:`Comparison` says so (``available``, ``reason``, ``not_compared``) and holds what
    can be compared (metrics; for deep one-hot problems the loss against the deep-neural-
    collapse candidate, an upper bound, in ``bounds``).

    Raises ``TypeError`` unless ``solution`` is a :class:`ufm.Solution` whose variables are the
    problem's kind and ``problem`` one with a reference, ``ValueError`` for a batch or when the
    solution's shapes are not the problem's (a solution of another problem)."""
    ref = _check_arguments(solution, problem)
    return ref.compare(problem, solution)
