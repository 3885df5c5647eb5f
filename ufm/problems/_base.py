"""The problem interface that :func:`ufm.solve`, the solvers and the sweeps rely on.

A problem is *data*: a pytree whose numeric fields (targets, labels, lambdas) are leaves, so a
batch of problems stacks (:func:`stack`) and solves under ``jax.vmap``, and a new lambda never
recompiles; sizes and options are static. It owns its variables and everything that depends on
them. The core asks a problem what it can do, never what it is:

================================  ==========================================================
``default_init(key)``             the variables pytree a solve starts from
``objective(params)``             the scalar objective, normalisation in the class docstring
``precondition_scales()``         a pytree like the variables: gradient solvers optimise
                                  ``params / scales`` (leaf-wise, scalar scales)
``trajectory_metrics(params)``    ``dict`` of scalars recorded along a solve
``check_init(init)``              validate and convert a user's starting point
``valid()``                       traced check of values that may be traced (lambdas >= 0)
``exact_data()``                  :class:`ufm._types.MSEData` when the exact solver applies,
                                  else ``None``
``certificate(params)``           ``(violation, applicable)`` of a global-optimality test;
                                  ``applicable = False`` where the problem has none
``replace(**fields)``             the same problem with some leaves replaced (sweeps)
``reduction()``                   a :class:`Reduction`: a smaller problem with the same
                                  stationary points and values, or ``None`` (the default)
================================  ==========================================================

``precondition_scales()`` returns scalars, or arrays that broadcast against their leaf (e.g.
one scale a row).

Optional, for speed on large problems (the loop in ``ufm/_iterate.py`` uses them when present,
with the momentum/Adam family of solvers; ``RegressionUFM`` has them): an exact hand-written
linearisation in the solver's variables ``y = params / scales``,
``linearise(y, scales) -> (value, aux, ||grad_y||^2, ||y||^2)`` and
``gradient(y, aux, scales) -> grad_y``, where ``aux`` is whatever small data rebuilds the
gradient (the loop stores ``aux``, not the gradient). Test them against autodiff.

Subclasses declare ``_leaves`` (names of the array fields, with their unbatched ``ndim`` in
``_ndims``) and ``_static`` (the structure); this base class registers them as pytrees.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from .._validate import check_int, check_memory


class Reduction(NamedTuple):
    """What :meth:`Problem.reduction` returns: a smaller problem that a solver can solve in
    place of the original one.

    The contract (each problem proves it in its ``reduction`` docstring): ``expand`` maps the
    smaller problem's variables to the original's, such that

    * the objectives agree: ``original.objective(expand(v)) == problem.objective(v)``;
    * ``expand`` maps stationary points to stationary points, the optimal values agree, and
      the solvers' scale-free stopping test and the global-optimality certificate give the
      same answer at ``v`` and at ``expand(v)`` (so a status stays an honest statement about
      the original problem).

    Attributes:
        problem: the smaller problem.
        expand: ``problem``'s variables -> the original problem's variables (traceable).
        by_construction: names of ``trajectory_metrics`` that every ``expand(v)`` satisfies
            exactly by construction (e.g. ``nc1`` for collapsed features); tables report them
            as not measured (NaN).
    """

    problem: Problem
    expand: Callable[[Any], Any]
    by_construction: tuple[str, ...] = ()


class Problem:
    """Base class of the UFM problems (see the module docstring for the interface)."""

    _leaves: tuple[str, ...] = ()
    _ndims: dict[str, int] = {}
    _static: tuple[str, ...] = ()
    #: leaves a sweep may set (:meth:`replace`), each a scalar.
    sweep_fields: tuple[str, ...] = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        jax.tree_util.register_pytree_node(cls, cls._flatten, cls._unflatten)

    def _flatten(self):
        return tuple(getattr(self, k) for k in self._leaves), tuple(
            getattr(self, k) for k in self._static
        )

    @classmethod
    def _unflatten(cls, aux, children):
        obj = object.__new__(cls)
        for k, v in zip(cls._leaves, children, strict=True):
            setattr(obj, k, v)
        for k, v in zip(cls._static, aux, strict=True):
            setattr(obj, k, v)
        return obj

    # -- what the core asks ----------------------------------------------------------------
    def exact_data(self):
        """``MSEData`` for the exact solver, or ``None`` (the default: not supported)."""
        return None

    def reduction(self) -> Reduction | None:
        """A smaller problem with the same stationary points and optimal value, or ``None``
        (the default: none known). :func:`ufm.sweep` solves it in place of the problem (its
        ``reduction`` option). Must work on traced problems (inside ``jax.jit``/``vmap``)."""
        return None

    def certificate(self, params) -> tuple[jax.Array, jax.Array]:
        """``(violation, applicable)``; by default no certificate applies."""
        return jnp.zeros((), self.dtype), jnp.zeros((), bool)

    def trajectory_metrics(self, params) -> dict[str, jax.Array]:
        return {}

    def check_unbatched(self) -> None:
        """Raise if the problem is a stack of problems (solve one instance; vmap outside)."""
        for k in self._leaves:
            v = getattr(self, k)
            if v is not None and jnp.ndim(v) != self._ndims[k]:
                raise ValueError(
                    "problem is batched (stacked with ufm.stack?): solve one instance per call "
                    "and batch with jax.vmap, e.g. jax.vmap(ufm.solve)(problems)"
                )

    def replace(self, **fields):
        """The same problem with the named scalar leaves replaced (no checks of values, which
        may be traced: a negative value shows as ``Status.invalid_input``)."""
        unknown = sorted(set(fields) - set(self.sweep_fields))
        if unknown:
            raise ValueError(
                f"fields {unknown} cannot be replaced; {type(self).__name__} takes "
                f"{list(self.sweep_fields)}"
            )
        leaves, aux = self._flatten()
        new = dict(zip(self._leaves, leaves, strict=True))
        for k, v in fields.items():
            old = new[k]
            new[k] = jnp.broadcast_to(jnp.asarray(v, jnp.result_type(old)), jnp.shape(old))
        return type(self)._unflatten(aux, tuple(new[k] for k in self._leaves))


def stack(problems):
    """Stack a sequence of problems with equal shapes into one batched problem for ``jax.vmap``.

    Example::

        batch = ufm.stack([ufm.RegressionUFM(Y, lam, lam, 16) for lam in (1e-3, 1e-2)])
        sols = jax.vmap(ufm.solve)(batch)
    """
    problems = list(problems)
    if not problems:
        raise ValueError("problems must be a non-empty sequence")
    structs = {jax.tree_util.tree_structure(p) for p in problems}
    if len(structs) != 1:
        raise ValueError(
            "problems must share their type, feature_dim and other static options to be "
            "stacked, got "
            f"{[repr(p) for p in problems]}"
        )
    shapes = {tuple(jnp.shape(x) for x in jax.tree_util.tree_leaves(p)) for p in problems}
    if len(shapes) != 1:
        raise ValueError(f"problems must have equal array shapes to be stacked, got {shapes}")
    return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *problems)


def gaussian(key, shape, dtype, scale) -> jax.Array:
    """``N(0, scale^2)`` entries."""
    return scale * jax.random.normal(key, shape, dtype)


def check_feature_dim(feature_dim) -> int:
    """``d >= 1``, an int (numpy integers too)."""
    return check_int(feature_dim, "feature_dim", minimum=1)


def check_variables_fit(num_samples: int, num_outputs: int, feature_dim: int, dtype, extra=()):
    """Refuse, before any work, a problem whose variables ``H (N, d)``, ``W (n, d)``, ``b (n,)``
    (plus the ``extra`` ``(name, shape)`` arrays it materialises) exceed the memory available.

    The rule (see :func:`ufm._validate.check_memory`): one copy of the variables must fit. Every
    solver needs a few more (L-BFGS about ``2 memory_size + 4``, the exact solver about 2), so
    this refuses the hopeless sizes (``feature_dim = 10**12``) at once rather than promising
    that every accepted size solves.
    """
    N, n, d = num_samples, num_outputs, feature_dim
    shapes = [(N, d), (n, d), (n,)] + [shape for _, shape in extra]
    names = "".join(f", {name} {shape}" for name, shape in extra)
    check_memory(
        shapes,
        dtype,
        f"feature_dim = {d} is too large for N = {N} samples: the variables H (N, d) = "
        f"({N}, {d}), W (n, d) = ({n}, {d}), b{names}",
    )
