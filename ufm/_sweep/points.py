"""One chunk of a sweep: solve every point (vmapped, jitted once) and hold it against the closed
form, on the device.

Two paths, chosen by :func:`ufm.sweep`:

* ``"nxn"`` (the exact solver on an MSE problem): the data summary (``Sigma``'s
  eigen-decomposition and ``ybar``, :func:`ufm._exact.moments`) does not depend on the point
  and is formed once per sweep; each point runs L-BFGS on the ``n x r`` variable of
  ``ufm/_exact.py`` and its row comes from ``n x n`` quantities
  (:func:`ufm._exact.reduced_optimum`): ``H`` is never formed and the per-point cost does not
  grow with ``N``. Only the metrics that need no features sample by sample are measured
  there (:meth:`ufm.problems.Problem.exact_metrics`); the others are NaN.
* ``"full"``: :func:`ufm.solve` with any solver, restarts included; the metrics are the
  problem's own (``problem.trajectory_metrics``). With ``Spec.reduction`` the solve runs on
  ``problem.reduction().problem`` (e.g. the class-mean problem of a classification UFM) and
  its solution is expanded; the loss, certificate, status checks and metrics are then taken
  again on the full problem at the expanded variables (metrics that hold by construction are
  not measured: NaN).

The closed-form columns are the problem's :class:`theory.Reference`'s (``Spec.reference``):
:meth:`~theory.Reference.columns` on the full path, :meth:`~theory.Reference.exact_columns`
on the ``n x n`` path; nothing here depends on the problem's type.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from .. import _exact
from .._iterate import iterate
from .._solution import Status
from .._solve import _CERTIFICATE_RTOL, _finalize, solve
from .imbalance import minority_columns


class Spec(NamedTuple):
    """Static settings of a chunk (hashable: a jit static argument)."""

    names: tuple[str, ...]
    path: str  # "nxn" | "full"
    reference: Any  # the problem's theory.Reference (hashable)
    restarts: int | None
    max_steps: int
    metrics: tuple[tuple[str, int | None], ...]  # (name, layers or None)
    reduction: bool = False  # full path: solve problem.reduction() and expand its solution
    minority: tuple[int, ...] | None = None  # minority classes: the minority-collapse columns


def _flat_metrics(mets: dict, spec: Spec, dtype) -> dict:
    out = {}
    for name, layers in spec.metrics:
        v = mets.get(name)
        if layers is None:
            out[name] = jnp.full((), jnp.nan, dtype) if v is None else v
        else:
            for i in range(layers):
                out[f"{name}_layer{i + 1}"] = jnp.full((), jnp.nan, dtype) if v is None else v[i]
    return out


def _point_full(p, solver, key, tols, spec: Spec):
    red = p.reduction() if spec.reduction else None
    sol = solve(
        p if red is None else red.problem, solver, key=key, max_steps=spec.max_steps,
        rtol=tols[0], atol=tols[1], restarts=spec.restarts,
    )  # fmt: skip
    rate = None if spec.restarts is None else sol.restarts.stationary_rate
    if red is not None:
        # The reduced solve's status (its stopping test and certificate equal the full
        # problem's at the expanded point, Problem.reduction); the loss, certificate and
        # validity again on the full problem at the expanded variables.
        sol = _finalize(p, red.expand(sol.params), sol.grad_norm, sol.num_steps, sol.status)
    row = {"status": sol.status, "loss": sol.loss, "steps": sol.num_steps}
    row["grad_norm"] = sol.grad_norm
    if rate is not None:
        row["restarts_successful"] = rate
    mets = dict(p.trajectory_metrics(sol.params))
    for name in () if red is None else red.by_construction:
        mets.pop(name, None)  # holds by construction: not measured (NaN)
    row.update(_flat_metrics(mets, spec, p.dtype))
    if spec.minority is not None:
        W = sol.params.W
        row.update(minority_columns(p, W, spec.minority))
    row.update(spec.reference.columns(p, sol.params, sol.loss))
    return row


def _exact_one(p, solver, key, tols, spec: Spec, mom):
    """The exact solver's iteration (``ufm/_exact.py``) without recovering ``H``, from the
    targets' moments ``mom`` (formed once per sweep); the per-point work is ``O(n^3)`` a
    step."""
    data = p.exact_data()
    red, A0 = _exact.setup(data, key, None, mom)

    def fn(A):
        return _exact.reduced_objective(A, red, data)

    A, loss, gnorm, steps, status, _ = iterate(
        fn, solver.optimizer(), A0, max_steps=spec.max_steps, rtol=tols[0], atol=tols[1],
        reuse_linesearch_value=solver.reuse_linesearch_value,
    )  # fmt: skip
    ro = _exact.reduced_optimum(A, red, data, p.num_samples)
    # The statuses of ufm.solve (ufm/_solve.py), with the certificate from n x n quantities.
    status = jnp.where(jnp.isfinite(loss), status, Status.nonfinite)
    saddle = (status == Status.successful) & ro.applicable & (ro.violation > _CERTIFICATE_RTOL)
    status = jnp.where(saddle, Status.saddle, status)
    status = jnp.where(p.valid(), status, Status.invalid_input).astype(jnp.int32)
    W = A if red.U is None else red.U @ A  # (n, r): W = W_r Q in the standard basis
    return W, loss, gnorm, steps, status, ro


def _point_nxn(p, solver, key, tols, spec: Spec, mom):
    if spec.restarts is None:
        W, loss, gnorm, steps, status, ro = _exact_one(p, solver, key, tols, spec, mom)
        extra = {}
    else:
        keys = jax.random.split(key, spec.restarts)
        out = jax.vmap(lambda k: _exact_one(p, solver, k, tols, spec, mom))(keys)
        losses, statuses = out[1], out[4]
        ranked = jnp.where(
            jnp.isfinite(losses) & (statuses != Status.invalid_input), losses, jnp.inf
        )
        best = jnp.argmin(ranked)
        W, loss, gnorm, steps, status, ro = jax.tree_util.tree_map(lambda x: x[best], out)
        extra = {"restarts_successful": jnp.mean(statuses == Status.successful)}
    row = {"status": status, "loss": loss, "steps": steps, "grad_norm": gnorm, **extra}
    row.update(spec.reference.exact_columns(p, loss, W, ro))
    row.update(_flat_metrics(p.exact_metrics(W, ro), spec, p.dtype))
    if spec.minority is not None:
        row.update(minority_columns(p, W, spec.minority))
    return row


@functools.partial(jax.jit, static_argnames=("spec",))
def run_chunk(base, solver, values, seeds, tols, spec: Spec, mom=None):
    """Rows of one chunk: ``values (C, len(names))`` and ``seeds (C,)`` -> dict of ``(C,)``
    arrays (plus whatever the reference computes on the host from, e.g. ``WWT (C, n, n)`` for
    deep problems). Compiled once per sweep: a chunk has a fixed size (the last one is
    padded). ``mom``: the targets' moments (:func:`ufm._exact.moments`, formed once per
    sweep) on the ``n x n`` path."""

    def point(vals, seed):
        p = base.replace(**{k: vals[i] for i, k in enumerate(spec.names)})
        key = jax.random.PRNGKey(seed)
        if spec.path == "nxn":
            return _point_nxn(p, solver, key, tols, spec, mom)
        return _point_full(p, solver, key, tols, spec)

    return jax.vmap(point)(values, seeds)
