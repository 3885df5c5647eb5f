"""One chunk of a sweep: solve every point (vmapped, jitted once) and compute its table row.

Two paths, chosen by :func:`ufm.sweep`:

* ``"reduced"`` (the exact solver on an MSE problem): the data summary (``Sigma``'s
  eigen-decomposition and ``ybar``, :func:`ufm._exact.moments`) does not depend on the point
  and is formed once per sweep; each point runs L-BFGS on the ``n x r`` reduced variable of
  ``ufm/_exact.py`` and its row comes from ``n x n`` quantities
  (:func:`ufm._exact.reduced_optimum`): ``H`` is never formed and the per-point cost does not
  grow with ``N``. The metrics that need the features sample by sample (NRC1, NRC2, NC1, NC4)
  are not measured there (NaN): the exact solver's features lie in the row space of ``W`` by
  construction.
* ``"full"``: :func:`ufm.solve` with any solver, restarts included; the metrics are the
  problem's own (``problem.trajectory_metrics``). With ``Spec.reduction`` the solve runs on
  ``problem.reduction().problem`` (e.g. the class-mean problem of a classification UFM) and
  its solution is expanded; the loss, certificate, status checks and metrics are then taken
  again on the full problem at the expanded variables (metrics that hold by construction are
  not measured: NaN).

The closed-form columns come from :mod:`theory` (regression, balanced classification; deep
problems on the host, :mod:`theory.deep`), an independent computation (it forms ``Sigma``
from the targets itself, once per chunk, outside the per-point work): it is imported lazily,
as the table is defined to hold the closed form next to the solver's answer.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import _exact
from ._iterate import iterate
from ._linalg import eps_of, sym
from ._solution import Status
from ._solve import _CERTIFICATE_RTOL, _finalize, solve

NAN = float("nan")


class Spec(NamedTuple):
    """Static settings of a chunk (hashable: a jit static argument)."""

    names: tuple[str, ...]
    path: str  # "reduced" | "full"
    kind: str  # "regression" | "classification" | "deep" | "other"
    restarts: int | None
    max_steps: int
    per_class: int | None  # balanced classification: samples per class, else None
    metrics: tuple[tuple[str, int | None], ...]  # (name, layers or None)
    reference64: bool  # closed forms in float64
    reduction: bool = False  # full path: solve problem.reduction() and expand its solution


def metric_columns(metrics) -> list[str]:
    """Column names of the problem's metrics (``name`` or ``name_layer{l}`` for layer arrays)."""
    cols = []
    for name, layers in metrics:
        cols += [name] if layers is None else [f"{name}_layer{i + 1}" for i in range(layers)]
    return cols


def _rel(err, ref_norm, scale):
    """``err / ||ref||``, or ``err / scale`` where the reference is (numerically) zero (as in
    :func:`theory.compare`)."""
    return err / jnp.where(ref_norm > 1e-3 * scale, ref_norm, scale)


def _rank(G, scale):
    ev = jnp.linalg.eigvalsh(sym(G))
    return jnp.sum(ev > jnp.sqrt(eps_of(ev)) * scale).astype(jnp.int32)


def _gram_difference_norm(H, Yc, K):
    """``||H H^T - Yc K Yc^T||_F`` and ``||Yc K Yc^T||_F`` through a thin QR of ``[H, Yc]``
    (no ``N x N`` matrix)."""
    d = H.shape[1]
    _, R = jnp.linalg.qr(jnp.concatenate([H, Yc], axis=1))
    Rh, Ry = R[:, :d], R[:, d:]
    ref = Ry @ K @ Ry.T
    return jnp.linalg.norm(Rh @ Rh.T - ref), jnp.linalg.norm(ref)


def _to64(problem, on: bool):
    if not on:
        return problem
    return jax.tree_util.tree_map(
        lambda x: x.astype(jnp.float64) if jnp.issubdtype(x.dtype, jnp.floating) else x, problem
    )


# -- closed-form columns ------------------------------------------------------------------------


def _regression_reference(p, loss, WWT, gram_err):
    """Closed-form columns of a regression row; ``gram_err(Kcore, scale)`` returns the
    relative error of the sample Gram ``H H^T`` against ``Yc Kcore Yc^T``."""
    import theory

    opt = theory.regression.optimum_of(p)
    M = p.num_samples
    ratio = jnp.sqrt(p.lambda_H / p.lambda_W)
    rms = jnp.linalg.norm(p.targets) / np.sqrt(M)
    top = jnp.maximum(
        jnp.sqrt(jnp.maximum(opt.eigenvalues[0], 0.0)), jnp.sqrt(eps_of(rms)) * (1.0 + rms)
    )
    scale_wwt = ratio * top
    scale_loss = jnp.maximum(jnp.abs(opt.loss), eps_of(rms) * (1.0 + rms**2))
    WWT = WWT.astype(p.dtype)
    return {
        "loss_theory": opt.loss,
        "loss_gap": (loss - opt.loss) / scale_loss,
        "err_gram_W": _rel(jnp.linalg.norm(WWT - opt.WWT), jnp.linalg.norm(opt.WWT), scale_wwt),
        "err_gram_H": gram_err(opt.feature_gram_core, M * top / ratio),
        "rank_theory": opt.rank,
        "rank": _rank(WWT, scale_wwt),
    }


def _classification_reference(p, per_class, loss, WWT, class_gram):
    import theory

    bias = p.bias_mode if p.bias_mode != "reg" else p.lambda_b
    opt = theory.classification.optimum(
        p.num_classes, per_class, p.lambda_H, p.lambda_W, p.loss, bias, p.dtype
    )
    r = jnp.sqrt(per_class * p.lambda_H / p.lambda_W)
    one = jnp.ones((), p.dtype)
    WWT, G = WWT.astype(p.dtype), class_gram.astype(p.dtype)
    scale = r * jnp.maximum(1.0, jnp.linalg.norm(opt.WWT) / r)
    return {
        "loss_theory": opt.loss,
        "loss_gap": (loss - opt.loss) / jnp.abs(opt.loss),
        "err_gram_W": _rel(jnp.linalg.norm(WWT - opt.WWT), jnp.linalg.norm(opt.WWT), r * one),
        "err_gram_H": _rel(
            jnp.linalg.norm(G - opt.class_mean_gram), jnp.linalg.norm(opt.class_mean_gram), one / r
        ),
        "rank_theory": _rank(opt.WWT, scale),
        "rank": _rank(WWT, scale),
    }


def _no_reference(WWT, dtype):
    """NaN closed-form columns, ``rank_theory = -1``; ``rank`` of ``WWT`` (``-1`` if None)."""
    nan = jnp.full((), jnp.nan, dtype)
    none = jnp.full((), -1, jnp.int32)
    if WWT is not None:
        scale = jnp.maximum(jnp.linalg.eigvalsh(sym(WWT))[-1], 0.0)
    return {
        "loss_theory": nan,
        "loss_gap": nan,
        "err_gram_W": nan,
        "err_gram_H": nan,
        "rank_theory": none,
        "rank": none if WWT is None else _rank(WWT, scale),
    }


# -- the two paths -----------------------------------------------------------------------------


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
    rate = None if spec.restarts is None else sol.restarts.success_rate
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
    if spec.kind == "deep":
        W = sol.params.Ws[-1]
        row["WWT"] = W @ W.T  # to the host, for theory.deep
        row.update(_no_reference(row["WWT"], p.dtype))
        return row
    if spec.kind == "other":  # a problem without closed forms here
        row.update(_no_reference(None, p.dtype))
        return row
    H, W, b = sol.params
    WWT = W @ W.T
    q = _to64(p, spec.reference64)
    if spec.kind == "regression":
        mean, _ = q.target_moments()
        Yc = q.targets - mean

        def gram_err(Kcore, scale):
            diff, ref = _gram_difference_norm(H.astype(q.dtype), Yc, Kcore)
            return _rel(diff, ref, scale)

        row.update(_regression_reference(q, sol.loss, WWT, gram_err))
    elif spec.kind == "classification" and spec.per_class is not None:
        from .metrics import class_means

        mu, _, _ = class_means(H, p.labels, p.num_classes)
        row.update(_classification_reference(q, spec.per_class, sol.loss, WWT, mu @ mu.T))
    else:
        row.update(_no_reference(WWT, p.dtype))
    return row


def _reduced_one(p, solver, key, tols, spec: Spec, mom):
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


def _point_reduced(p, solver, key, tols, spec: Spec, mom):
    if spec.restarts is None:
        A, loss, gnorm, steps, status, ro = _reduced_one(p, solver, key, tols, spec, mom)
        extra = {}
    else:
        keys = jax.random.split(key, spec.restarts)
        out = jax.vmap(lambda k: _reduced_one(p, solver, k, tols, spec, mom))(keys)
        losses, statuses = out[1], out[4]
        ranked = jnp.where(
            jnp.isfinite(losses) & (statuses != Status.invalid_input), losses, jnp.inf
        )
        best = jnp.argmin(ranked)
        A, loss, gnorm, steps, status, ro = jax.tree_util.tree_map(lambda x: x[best], out)
        extra = {"restarts_successful": jnp.mean(statuses == Status.successful)}
    row = {"status": status, "loss": loss, "steps": steps, "grad_norm": gnorm, **extra}
    q = _to64(p, spec.reference64)
    mets = {}
    if spec.kind == "regression":
        from .metrics import nrc3

        mets["nrc3"] = nrc3(A, p.targets, p.lambda_H * p.lambda_W, center=p.bias)
        S64 = ro.second_moment.astype(q.dtype)
        C64 = ro.gram_core.astype(q.dtype)

        def gram_err(Kcore, scale):
            # ||Z X Z^T||_F = N ||S^{1/2} X S^{1/2}||_F = N sqrt(tr(X S X S)) with
            # S = Z^T Z / N, for symmetric X (no square root of S needed).
            N = q.num_samples

            def norm(X):
                XS = X @ S64
                return N * jnp.sqrt(jnp.maximum(jnp.sum(XS * XS.T), 0.0))

            return _rel(norm(C64 - Kcore), norm(Kcore), scale)

        row.update(_regression_reference(q, loss, ro.WWT, gram_err))
    elif spec.kind == "classification":
        from .metrics import nc2, nc3

        K = p.num_classes
        Eb = jnp.eye(K, dtype=A.dtype) - ro.bias[None, :]  # rows e_c - b
        mu = Eb @ ro.inverse @ A  # class means in the coordinates of W = A Q
        labels = np.arange(K)
        mets["nc2"] = nc2(mu, A, labels, K)["etf_means"]
        mets["nc3"] = nc3(mu, A, labels, K, center=False)
        if spec.per_class is not None:
            row.update(_classification_reference(q, spec.per_class, loss, ro.WWT, mu @ mu.T))
        else:
            row.update(_no_reference(ro.WWT, p.dtype))
    else:
        row.update(_no_reference(ro.WWT, p.dtype))
    row.update(_flat_metrics(mets, spec, p.dtype))
    return row


@functools.partial(jax.jit, static_argnames=("spec",))
def run_chunk(base, solver, values, seeds, tols, spec: Spec, mom=None):
    """Rows of one chunk: ``values (C, len(names))`` and ``seeds (C,)`` -> dict of ``(C,)``
    arrays (and ``WWT (C, n, n)`` for deep problems). Compiled once per sweep: a chunk has a
    fixed size (the last one is padded). ``mom``: the targets' moments
    (:func:`ufm._exact.moments`, formed once per sweep) on the ``n x n`` path."""

    def point(vals, seed):
        p = base.replace(**{k: vals[i] for i, k in enumerate(spec.names)})
        key = jax.random.PRNGKey(seed)
        if spec.path == "reduced":
            return _point_reduced(p, solver, key, tols, spec, mom)
        return _point_full(p, solver, key, tols, spec)

    return jax.vmap(point)(values, seeds)


# -- deep problems: closed form on the host ----------------------------------------------------


def deep_reference(problem, lambda_H: np.ndarray, lambda_W: np.ndarray, row: dict) -> None:
    """Fill the closed-form columns of deep rows in place from :func:`theory.deep.optimum`
    (float64 numpy, one call per row); rows outside its scope keep NaN and ``rank_theory = -1``.
    ``lambda_W`` is ``(rows, L)``."""
    import theory.deep as td

    Y = np.asarray(problem.targets, np.float64)
    Yc = Y - Y.mean(0) if problem.bias else Y
    y1 = np.linalg.norm(Yc, 2)
    P = problem.num_layers + 1
    for i in range(len(lambda_H)):
        lams = np.concatenate([[lambda_H[i]], lambda_W[i]])
        WWT = np.asarray(row["WWT"][i], np.float64)
        if np.all(lams > 0) and y1 > 0:
            gamma = np.exp(np.mean(np.log(lams)))
            scale = gamma / lams[-1] * y1 ** (2.0 / P)
        else:
            scale = max(np.linalg.eigvalsh(WWT)[-1], 0.0)
        ev = np.linalg.eigvalsh(0.5 * (WWT + WWT.T))
        row["rank"][i] = int(np.sum(ev > np.sqrt(np.finfo(np.float64).eps) * scale))
        try:
            opt = td.optimum(
                Y, lambda_H[i], lambda_W[i], problem.widths, problem.activation, problem.bias
            )
        except (NotImplementedError, ValueError, TypeError):
            continue
        ref = np.linalg.norm(opt.WWT)
        row["loss_theory"][i] = opt.loss
        row["loss_gap"][i] = (row["loss"][i] - opt.loss) / abs(opt.loss)
        row["err_gram_W"][i] = np.linalg.norm(WWT - opt.WWT) / (
            ref if ref > 1e-3 * scale else scale
        )
        row["rank_theory"][i] = opt.rank
