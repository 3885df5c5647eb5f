"""The one owner of "what theory predicts for this problem, and how a solution compares".

:func:`reference` maps a problem to its :class:`Reference` (one implementation per problem
kind, registered next to its closed form: :mod:`theory.regression`,
:mod:`theory.classification`, :mod:`theory._deep_reference`). A reference is a small, hashable
description built on the host from a concrete problem; its methods take the problem (or one
point of a sweep, traced) and return the closed form's numbers and the comparison of a solution
with them. :func:`theory.compare`, every row of :func:`ufm.sweep`, the phase-diagram thresholds
and ``ufm check`` all use it, and nothing else dispatches on the problem's type.

Where theory predicts nothing, the reference says so as a value (``available = False`` and a
``reason``); every caller handles it (a comparison lists what it could not compare, a sweep
leaves the columns NaN with the reason in the table's metadata, ``ufm check`` refuses before
any work).

The relative errors here (:func:`rel`) divide by the closed form's norm, or by the quantity's
natural scale where the closed form is (numerically) zero; ranks (:func:`rank`) count the
eigenvalues above ``sqrt(eps)`` times a natural scale.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp

from ufm._linalg import eps_of, sym
from ufm._solution import Status

NAN = float("nan")

#: The closed-form columns of a sweep row (see :meth:`Reference.columns`).
COLUMNS = ("loss_theory", "loss_gap", "err_gram_W", "err_gram_H", "rank_theory", "rank")


# -- shared numerics --------------------------------------------------------------------------


def rel(err, ref_norm, scale):
    """``err / ||ref||``, or ``err / scale`` where the reference is (numerically) zero
    (``||ref|| <= 1e-3 scale``)."""
    return err / jnp.where(ref_norm > 1e-3 * scale, ref_norm, scale)


def rank(G, scale) -> jax.Array:
    """Eigenvalues of a symmetric ``G`` above ``sqrt(eps)`` times the natural ``scale``
    (traced, int32)."""
    ev = jnp.linalg.eigvalsh(sym(G))
    return jnp.sum(ev > jnp.sqrt(eps_of(ev)) * scale).astype(jnp.int32)


def gram_difference_norm(H, Yc, K):
    """``||H H^T - Yc K Yc^T||_F`` and ``||Yc K Yc^T||_F`` without forming ``M x M`` matrices.

    With ``F = [H, Yc] = Q R`` (thin QR), ``H H^T - Yc K Yc^T = Q (R D R^T) Q^T`` with
    ``D = diag(I_d, -K)``, so the norm is that of a small matrix and no precision is lost to
    cancellation between large traces.
    """
    d = H.shape[1]
    _, R = jnp.linalg.qr(jnp.concatenate([H, Yc.astype(H.dtype)], axis=1))
    Rh, Ry = R[:, :d], R[:, d:]
    ref = Ry @ K @ Ry.T
    return jnp.linalg.norm(Rh @ Rh.T - ref), jnp.linalg.norm(ref)


def moment_gram_norm(X, second_moment, num_samples):
    """``||Z X Z^T||_F`` for a symmetric ``X (n, n)`` from ``S = Z^T Z / N`` alone:
    ``N ||S^{1/2} X S^{1/2}||_F = N sqrt(tr(X S X S))`` (no ``N x N`` matrix, no square root
    of ``S``)."""
    XS = X @ second_moment
    return num_samples * jnp.sqrt(jnp.maximum(jnp.sum(XS * XS.T), 0.0))


def reference_precision(problem):
    """The problem in float64 when x64 is enabled, so that a float32 solution is compared with
    a float64 closed form."""
    if not jax.config.jax_enable_x64 or problem.dtype == jnp.float64:
        return problem
    return jax.tree_util.tree_map(
        lambda x: x.astype(jnp.float64) if jnp.issubdtype(x.dtype, jnp.floating) else x, problem
    )


def no_columns(dtype, solution_rank=None, names=COLUMNS) -> dict:
    """The closed-form columns ``names`` where theory predicts nothing: NaN,
    ``rank_theory = -1``; ``rank`` is ``solution_rank`` (``-1`` when not given)."""
    nan = jnp.full((), jnp.nan, dtype)
    none = jnp.full((), -1, jnp.int32)
    out = {name: nan for name in names}
    out["rank_theory"] = none
    out["rank"] = none if solution_rank is None else solution_rank.astype(jnp.int32)
    return out


def weight_rank(WWT) -> jax.Array:
    """Numerical rank of ``W W^T`` against its own largest eigenvalue (no closed form to set
    the scale)."""
    return rank(WWT, jnp.maximum(jnp.linalg.eigvalsh(sym(WWT))[-1], 0.0))


# -- the result of a comparison ---------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Comparison:
    """Relative errors of a solution against the closed form (floats), plus metrics.

    ``errors`` maps ``WWT``, ``feature_gram`` (the ``M x M`` Gram ``H H^T``), ``predictions``,
    ``bias`` to ``||x_sol - x_theory||_F / ||x_theory||_F`` (divided by the quantity's natural
    scale instead where the closed form is 0), and ``loss`` to ``(L_sol - L*) / |L*|``.
    ``metrics`` holds NRC1, NRC2 and NRC3 with ``gamma = lambda_H lambda_W`` of the solution
    (regression), or NC1-NC4 and the frame distances (classification; NC3 with the uncentred
    class means, the self-duality that holds at every UFM optimum, bias or not). The closed form
    is computed in float64 when ``jax_enable_x64`` is on, also for a float32 solution, and
    ``L_sol`` (``loss_solution``) is the objective re-evaluated there at the solution's
    variables (a float32 objective can be dominated by rounding while the variables are not).

    Where theory predicts nothing for the problem, ``available`` is ``False``, ``reason`` says
    why, ``not_compared`` names the quantities left out, ``errors`` is empty and ``bounds`` may
    hold what can still be said (e.g. ``loss <= dnc_candidate_loss``: ``(L_sol - L_c)/|L_c|``,
    <= 0 when the solution does at least as well as the candidate). Such a comparison never
    :meth:`passed`.
    """

    errors: dict[str, float]
    metrics: dict[str, float]
    rank_theory: int
    rank_solution: int
    status: str
    loss_theory: float
    loss_solution: float
    available: bool = True
    reason: str = ""
    not_compared: tuple[str, ...] = ()
    bounds: dict[str, float] = dataclasses.field(default_factory=dict)

    def passed(self, tol: float) -> bool:
        """A closed form to compare with, equal ranks, every error and metric <= ``tol``
        (loss gap in absolute value), and a run that ended ``successful``, or ``no_progress``
        on a nonsmooth objective (where the stationarity test cannot certify a minimiser at
        a kink, and the errors against the closed form are the certificate)."""
        return (
            self.available
            and self.status in ("successful", "no_progress")
            and self.rank_theory == self.rank_solution
            and all(abs(v) <= tol for v in self.errors.values())
            and all(v <= tol for v in self.metrics.values())
        )

    def table(self, tol: float | None = None) -> str:
        """A plain-text table of the comparison."""
        rows = [("quantity", "value", "ok" if tol is not None else "")]

        def mark(ok):
            return "" if tol is None else ("yes" if ok else "NO")

        for k, v in self.errors.items():
            label = "loss gap (L-L*)/|L*|" if k == "loss" else f"rel. error {k}"
            rows.append((label, f"{v:.3e}", mark(tol is None or abs(v) <= tol)))
        for k, v in self.bounds.items():
            rows.append((k, f"{v:.3e}", mark(v <= (0.0 if tol is None else tol))))
        for k, v in self.metrics.items():
            rows.append((k, f"{v:.3e}", mark(tol is None or v <= tol)))
        if self.available:
            rows.append(("loss (theory)", f"{self.loss_theory:.12g}", ""))
        rows.append(("loss (solver)", f"{self.loss_solution:.12g}", ""))
        if self.available:
            rows.append(
                (
                    "collapse rank theory/solver",
                    f"{self.rank_theory}/{self.rank_solution}",
                    mark(self.rank_theory == self.rank_solution),
                )
            )
        rows.append(("status", self.status, mark(self.status in ("successful", "no_progress"))))
        w = [max(len(r[i]) for r in rows) for i in range(3)]
        lines = [f"{a:<{w[0]}}  {b:>{w[1]}}  {c}".rstrip() for a, b, c in rows]
        lines.insert(1, "-" * (w[0] + w[1] + 6))
        if not self.available:
            lines.append(f"not compared: {', '.join(self.not_compared)} ({self.reason})")
        return "\n".join(lines)


class Plan(NamedTuple):
    """One comparison as a compiled program and a host-side finish.

    ``program(*args, *static)`` is a jitted function returning a dict of arrays (every number of
    the comparison); ``finish(numbers, solution)`` turns its host copy into a
    :class:`Comparison`. :func:`theory.compare` runs it; ``ufm check`` runs the same program
    from its on-disk executable store."""

    program: Callable[..., dict]
    args: tuple
    static: tuple
    finish: Callable[[dict, Any], Comparison]


# -- the interface ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Reference:
    """What theory predicts for problems of one kind, and how a solution compares with it.

    Built by :func:`reference` from a concrete problem on the host; hashable (a static
    argument of the sweep's compiled chunk), holding no arrays. ``available``/``reason``: whether
    theory predicts this problem's optimum and, if not, why (a value, never an exception).

    Methods taking ``problem`` accept the problem the reference was built from or, in a sweep,
    the same problem with swept fields replaced (traced).
    """

    available: bool = True
    reason: str = ""
    #: what theory covers for this kind, in words (for messages such as ``ufm check``'s).
    scope: ClassVar[str] = ""
    #: the closed-form columns of a sweep row, in order (one name per definition).
    column_names: ClassVar[tuple[str, ...]] = COLUMNS
    #: which rows of a sweep have NaN closed-form columns although the reference is available
    #: (e.g. a lambda of 0), in words; ``""`` when none.
    nan_rows: ClassVar[str] = ""

    def compare(self, problem, solution) -> Comparison:
        """The :class:`Comparison` of one checked, unbatched ``solution`` of ``problem``.
        Default: run :meth:`plan`'s program, or, without a plan, compare nothing (the
        ``reason``). A reference overrides :meth:`plan` or this method."""
        p = self.plan(problem, solution.params)
        if p is None:
            return nothing_to_compare(problem, solution, self.reason)
        return p.finish(jax.device_get(p.program(*p.args, *p.static)), solution)

    def plan(self, problem, params) -> Plan | None:
        """The comparison as one compiled program (``params`` arrays or
        ``jax.ShapeDtypeStruct``), or ``None`` where :meth:`compare` runs otherwise."""
        return None

    def columns(self, problem, params, loss) -> dict:
        """The closed-form columns of one sweep row (traced) at the solution's
        variables ``params`` with objective ``loss``: :attr:`column_names`, by default
        ``loss_theory``, ``loss_gap = (loss - loss_theory)/|loss_theory|``, ``err_gram_W``
        (relative error of ``W W^T``), ``err_gram_H`` (of the sample Gram ``H H^T``),
        ``rank_theory`` and ``rank`` (numerical rank of ``W W^T``). Default: NaN (no closed
        form)."""
        return no_columns(problem.dtype, names=self.column_names)

    def exact_columns(self, problem, loss, W, optimum) -> dict:
        """:meth:`columns` on the exact solver's ``n x n`` path, from ``W (n, r)`` (the head in
        the coordinates ``W_full = W Q``) and the :class:`ufm._exact.ReducedOptimum`
        ``optimum`` (no ``H``). Default: NaN."""
        return no_columns(problem.dtype, weight_rank(optimum.WWT), self.column_names)

    def host_columns(self, problem, swept: dict, rows: dict) -> None:
        """Fill closed-form columns that are computed on the host, in place (``rows``: numpy
        columns of one chunk, with whatever extra arrays :meth:`columns` returned; ``swept``:
        ``{field: (rows,) values}``). Default: nothing (computed in :meth:`columns`)."""
        return None

    def thresholds(self, problem, swept: tuple[str, ...]) -> list[dict]:
        """Curves ``prod_k field_k^power_k = value`` of the closed form's transitions in the
        swept fields (for phase diagrams): ``{"label", "powers", "value"}`` dicts."""
        return []

    def notes(self) -> dict[str, str]:
        """Why closed-form columns are NaN for this problem (column -> reason), for a table's
        metadata; empty when every column is computed."""
        if self.available:
            return {}
        return {c: self.reason for c in self.column_names if c != "rank"}


@dataclasses.dataclass(frozen=True)
class NoReference(Reference):
    """A problem for which :mod:`theory` has no closed form."""

    available: bool = False

    def compare(self, problem, solution) -> Comparison:
        raise TypeError(self.reason)


@functools.singledispatch
def reference(problem) -> Reference:
    """The :class:`Reference` of ``problem`` (concrete, unbatched): what theory predicts for it
    and how a solution compares. Problems without a closed form get a reference with
    ``available = False`` and the reason."""
    return NoReference(
        reason=f"theory has no closed form for a {type(problem).__name__}; it covers {covered()}"
    )


def covered() -> str:
    """The package's problem types with a registered reference, in words."""
    names = [t for t in reference.registry if t.__module__.startswith("ufm.")]
    return ", ".join(f"ufm.{t.__name__}" for t in names) or "no problem types"


def comparison_from(out: dict, errors: dict, mets: dict, solution) -> Comparison:
    """A :class:`Comparison` from the host copy of a compiled comparison's outputs."""
    return Comparison(
        errors={k: float(v) for k, v in errors.items()},
        metrics={k: float(v) for k, v in mets.items()},
        rank_theory=int(out["rank_theory"]),
        rank_solution=int(out["rank_solution"]),
        status=Status(int(solution.status)).name,
        loss_theory=float(out["loss_theory"]),
        loss_solution=float(out["loss_solution"]),
    )


def cast_params(params, dtype):
    """``params`` (arrays or ``jax.ShapeDtypeStruct``) in ``dtype``, same pytree."""

    def cast(x):
        if isinstance(x, jax.ShapeDtypeStruct):
            return jax.ShapeDtypeStruct(x.shape, dtype)
        return x.astype(dtype)

    return jax.tree_util.tree_map(cast, params)


def nothing_to_compare(problem, solution, reason: str) -> Comparison:
    """The comparison where theory predicts nothing: no errors, the problem's own (scalar)
    metrics, and what was not compared with the ``reason``."""
    mets = problem.trajectory_metrics(solution.params)
    return Comparison(
        errors={},
        metrics={k: float(v) for k, v in mets.items() if jnp.ndim(v) == 0},
        rank_theory=-1,
        rank_solution=-1,
        status=Status(int(solution.status)).name,
        loss_theory=NAN,
        loss_solution=float(solution.loss),
        available=False,
        reason=reason,
        not_compared=("loss", "WWT", "feature Grams", "collapse rank"),
    )
