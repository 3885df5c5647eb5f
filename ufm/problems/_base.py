"""The problem interface that :func:`ufm.solve`, the solvers and the sweeps rely on.

A problem is *data*: a pytree whose numeric fields (targets, labels, lambdas) are leaves, so a
batch of problems stacks (:func:`stack`) and solves under ``jax.vmap``, and a new lambda never
recompiles; sizes and options are static. It owns its variables and everything that depends on
them. The core asks a problem what it can do, never what it is. :class:`Problem` declares the
interface in code: the abstract methods every problem implements, and the optional hooks with
their defaults. Adding a problem is one subclass in one module (``tests/test_extension.py``
defines one outside the package and solves, stacks, restarts and sweeps it).

Every problem provides (abstract):

================================  ==========================================================
``dtype``                         the floating dtype of its variables (float32 or float64)
``default_init(key)``             the variables pytree a solve starts from
``objective(params)``             the scalar objective; the class docstring states its
                                  normalisation with the formula
``trajectory_metrics(params)``    ``dict`` of collapse metrics (scalars or ``(L,)`` arrays)
                                  recorded along a solve and in sweep rows (may be empty)
================================  ==========================================================

Optional hooks, with defaults in :class:`Problem`:

================================  ==========================================================
``check_init(init)``              validate and convert a user's starting point (default:
                                  same pytree, shapes and dtype as ``default_init``, finite)
``valid()``                       traced check of values that may be traced (lambdas >= 0);
                                  default ``True``
``precondition_scales()``         a pytree like the variables: gradient solvers optimise
                                  ``params / scales`` leaf-wise; default 1 for every leaf
``exact_data()``                  :class:`ufm._types.MSEData` when the exact solver applies,
                                  else ``None`` (the default)
``exact_metrics(W, optimum)``     the metrics the exact solver's ``n x n`` path measures
                                  without ``H``; default none (NaN in a sweep)
``certificate(params)``           ``(violation, applicable)`` of a global-optimality test;
                                  default ``applicable = False``
``reduction()``                   a :class:`Reduction`: a smaller problem with the same
                                  stationary points and values, or ``None`` (the default)
``linearise``, ``gradient``       an exact hand-written linearisation for speed, or ``None``
                                  (the default: autodiff of ``objective``)
``replace(**fields)``             the same problem with some leaves replaced (sweeps; given)
================================  ==========================================================

``precondition_scales()`` returns scalars, or arrays that broadcast against their leaf (e.g.
one scale a row).

The linearisation (the loop in ``ufm/_iterate.py`` uses it when present, with the momentum/Adam
family of solvers; ``RegressionUFM`` and ``ClassificationUFM`` have it) is exact and in the
solver's variables ``y = params / scales``:
``linearise(y, scales) -> (value, aux, ||grad_y||^2, ||y||^2)`` and
``gradient(y, aux, scales) -> grad_y``, where ``aux`` is whatever small data rebuilds the
gradient (the loop stores ``aux``, not the gradient). Test them against autodiff. Gather the
scales into the small factors of the large blocks' gradient (``RegressionUFM``:
``dL/dy_H = E V + c y_H`` with ``V`` of shape ``(n, d)`` and a scalar ``c``), so that the work
on the large arrays is the same operations whatever the scales' values: with
``precondition=False`` they are compile-time ones, which XLA folds away, and a different set
of operations can fuse differently (``tests/test_precondition.py`` compares the compiled
steps).

A subclass declares its fields as class attributes, and this base class registers it as a
pytree (:meth:`Problem.__init_subclass__`):

* ``_leaves``: names of the array fields (pytree leaves: traced, batched by :func:`stack`),
  with their unbatched ``ndim`` in ``_ndims``; a leaf may be ``None``;
* ``_static``: names of the hashable fields that fix the structure (sizes, options);
* ``sweep_fields``: the scalar leaves :meth:`Problem.replace` (and so :func:`ufm.sweep`) may set.

Problems with an output bias take one setting, ``bias="none" | "free" | lambda_b`` (a number:
the penalty ``lambda_b/2 ||b||^2``, where the problem supports it; ``True``/``False`` are
aliases of ``"free"``/``"none"``), checked by :func:`ufm._validate.bias_option`, and read it
back as ``bias_mode`` (``"none"``, ``"free"`` or ``"reg"``) and ``has_bias``.

What :mod:`theory` predicts for a problem lives in :mod:`theory` (one reference per problem
type, registered there), never on the problem: the core does not import ``theory``.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp

from .._validate import check_finite, check_int, check_memory, check_shape, float_array


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


class Problem(abc.ABC):
    """Base class of the ufm problems: the interface :func:`ufm.solve`, the solvers and
    :func:`ufm.sweep` use (the module docstring lists it).

    Subclasses implement the abstract members (:attr:`dtype`, :meth:`default_init`,
    :meth:`objective`, :meth:`trajectory_metrics`), may override the optional hooks, and
    declare their fields in ``_leaves`` (with ``_ndims``), ``_static`` and ``sweep_fields``;
    they are registered as pytrees when defined. Variables (``params``) are any pytree of
    floating arrays of the problem's :attr:`dtype`; every method below works on one instance
    (unbatched) and is traceable (``jax.jit``/``jax.vmap``) unless it says otherwise.

    Example (a complete problem; see ``tests/test_extension.py``)::

        class Ridge(ufm.Problem):
            '''L(w) = 1/(2M) ||X w - y||^2 + lam/2 ||w||^2.'''

            _leaves, _ndims, _static = ("X", "y", "lam"), {"X": 2, "y": 1, "lam": 0}, ()
            sweep_fields = ("lam",)

            def __init__(self, X, y, lam):
                self.X, self.y, self.lam = jnp.asarray(X), jnp.asarray(y), jnp.asarray(lam)

            dtype = property(lambda self: self.X.dtype)

            def default_init(self, key):
                return jnp.zeros(self.X.shape[-1], self.dtype)

            def objective(self, w):
                r = self.X @ w - self.y
                return 0.5 * jnp.mean(r**2) + 0.5 * self.lam * jnp.sum(w**2)

            def trajectory_metrics(self, w):
                return {"norm": jnp.linalg.norm(w)}
    """

    #: names of the array fields (pytree leaves), each possibly ``None``.
    _leaves: ClassVar[tuple[str, ...]] = ()
    #: ``{leaf: ndim}`` of one unbatched problem (:meth:`check_unbatched`, :func:`stack`).
    _ndims: ClassVar[dict[str, int]] = {}
    #: names of the static fields (hashable: sizes, options); part of the pytree structure.
    _static: ClassVar[tuple[str, ...]] = ()
    #: leaves a sweep may set (:meth:`replace`), each a scalar.
    sweep_fields: ClassVar[tuple[str, ...]] = ()

    #: Optional exact linearisation ``linearise(y, scales) -> (value, aux, ||grad_y||^2,
    #: ||y||^2)`` in the solver's variables ``y = params / scales`` (see the module
    #: docstring); ``None``: the solvers differentiate :meth:`objective`.
    linearise: ClassVar[Callable[..., Any] | None] = None
    #: Optional ``gradient(y, aux, scales) -> grad_y`` from :attr:`linearise`'s ``aux``;
    #: defined together with it.
    gradient: ClassVar[Callable[..., Any] | None] = None
    #: Whether :meth:`objective` is differentiable everywhere. ``False`` (e.g. a ReLU between
    #: two weight layers) makes :func:`ufm.solve` also end a run that makes no progress, with
    #: status ``no_progress``, since at a kink the gradient need not vanish at a minimiser.
    smooth: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        missing = [k for k in cls._leaves if k not in cls._ndims]
        if missing:
            raise TypeError(f"{cls.__name__}._ndims must give the ndim of every leaf: {missing}")
        unknown = [k for k in cls.sweep_fields if k not in cls._leaves]
        if unknown:
            raise TypeError(f"{cls.__name__}.sweep_fields must be leaves, got {unknown}")
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

    # -- what every problem provides ---------------------------------------------------------
    @property
    @abc.abstractmethod
    def dtype(self) -> jnp.dtype:
        """The floating dtype (float32 or float64) of the variables and the objective."""

    @abc.abstractmethod
    def default_init(self, key: jax.Array) -> Any:
        """The variables a solve starts from when no ``init`` is given: a pytree of arrays of
        :attr:`dtype` (e.g. :class:`ufm.Params` ``(H (N, d), W (n, d), b (n,))``), drawn
        from the PRNG ``key``. Its structure and shapes define the problem's variables."""

    @abc.abstractmethod
    def objective(self, params) -> jax.Array:
        """The scalar objective at ``params`` (a pytree like :meth:`default_init`'s), shape
        ``()``, exactly as the class docstring writes it, with its normalisation (e.g. the
        data term averaged over the ``N`` samples, which penalties are divided by ``N``)."""

    @abc.abstractmethod
    def trajectory_metrics(self, params) -> dict[str, jax.Array]:
        """Collapse metrics at ``params``: ``{name: value}`` with scalars (shape ``()``) or
        one value per layer (shape ``(L,)``). ``ufm.solve(..., record_every=k)`` records them
        along a solve and :func:`ufm.sweep` tabulates them (``name`` or ``name_layer{l}``).
        Return ``{}`` for none. A metric never turns a NaN into a finite number."""

    # -- optional hooks (defaults) -----------------------------------------------------------
    def check_init(self, init) -> Any:
        """A user's starting point, validated before any work (not traceable) and converted
        to :attr:`dtype`. Default: the pytree structure and every shape of
        :meth:`default_init`'s variables, real entries (converted to :attr:`dtype`), finite.
        Raises ``TypeError``/``ValueError`` naming ``init`` and what was expected."""
        template = jax.eval_shape(self.default_init, jax.random.PRNGKey(0))
        tree = jax.tree_util.tree_structure(template)
        try:
            leaves = tree.flatten_up_to(init)
        except (TypeError, ValueError) as err:
            raise TypeError(
                f"init must be a pytree like {type(self).__name__}.default_init(key), "
                f"structure {tree}, or None, got {type(init).__name__}"
            ) from err
        out = []
        for i, (x, t) in enumerate(zip(leaves, jax.tree_util.tree_leaves(template), strict=True)):
            name = f"init (leaf {i})"
            x = float_array(x, name, self.dtype)
            check_shape(x, t.shape, name, str(t.shape))
            check_finite(x, name)
            out.append(x)
        return tree.unflatten(out)

    def valid(self) -> jax.Array:
        """Traced check (a bool of shape ``()``) of the values that cannot be checked while
        tracing, e.g. a swept lambda ``>= 0``; ``False`` gives ``Status.invalid_input``.
        Default: ``True``. Override when a leaf has a domain."""
        return jnp.ones((), bool)

    def precondition_scales(self) -> Any:
        """Per-leaf scales: a pytree like the variables whose leaves are scalars or arrays that
        broadcast against their variable; gradient solvers optimise ``params / scales``
        (``precondition=False`` sets them to 1). Choose them so that every block's curvature
        is ``O(1)``. Default: 1 for every leaf."""
        template = jax.eval_shape(self.default_init, jax.random.PRNGKey(0))
        return jax.tree_util.tree_map(lambda _: jnp.ones((), self.dtype), template)

    def exact_data(self):
        """``MSEData`` for the exact solver (``ufm/_exact.py``: an MSE data term in
        ``Z = H W^T + 1 b^T`` with Frobenius penalties), or ``None`` (the default: the exact
        solver does not apply)."""
        return None

    def exact_metrics(self, W, optimum) -> dict[str, jax.Array]:
        """The :meth:`trajectory_metrics` that the exact solver's ``n x n`` path can measure
        without the features ``H``, from ``W (n, r)`` (in the coordinates ``W = A Q``) and the
        ``ufm._exact.ReducedOptimum`` ``optimum``; the others are not measured there (NaN in
        a sweep). Default: none."""
        return {}

    def reduction(self) -> Reduction | None:
        """A smaller problem with the same stationary points and optimal value (the contract
        of :class:`Reduction`), or ``None`` (the default: none known). :func:`ufm.sweep` solves
        it in place of the problem (its ``reduction`` option). Must work on traced problems
        (inside ``jax.jit``/``vmap``)."""
        return None

    def certificate(self, params) -> tuple[jax.Array, jax.Array]:
        """``(violation, applicable)``: a test of global optimality at a stationary ``params``
        (``violation <= 1e-2`` certifies it; otherwise a successful solve is reported as
        ``Status.saddle``). Default: ``applicable = False`` (no certificate)."""
        return jnp.zeros((), self.dtype), jnp.zeros((), bool)

    # -- given -------------------------------------------------------------------------------
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
        """The same problem with the named scalar leaves (:attr:`sweep_fields`) replaced (no
        checks of values, which may be traced: a negative value shows as
        ``Status.invalid_input``)."""
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
