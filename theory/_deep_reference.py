"""The reference of a :class:`ufm.DeepUFM`: :func:`theory.deep.optimum` against a solution,
layer by layer, on the host in float64 (the closed form is numpy; not jittable)."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax.numpy as jnp
import numpy as np

from ufm import metrics
from ufm._solution import Status
from ufm.problems import DeepParams, DeepUFM

from . import deep
from ._reference import (
    Comparison,
    Reference,
    gram_difference_norm,
    no_columns,
    rank,
    reference,
    rel,
)


@dataclasses.dataclass(frozen=True)
class DeepReference(Reference):
    """:func:`theory.deep.optimum` against a solution of a :class:`ufm.DeepUFM`.

    ``available`` is ``False`` outside the closed form's scope (ReLU with ``L >= 3`` and
    ``K >= 3``, widths below ``K``, a bias or targets other than balanced one-hot rows with
    ReLU); :meth:`compare` then compares what it can (the loss against
    :func:`theory.deep.dnc_candidate_loss`, an upper bound, for one-hot targets)."""

    nan_rows: ClassVar[str] = (
        "closed-form columns are NaN (rank_theory -1) in rows where a lambda is 0: "
        "the minimisers are not unique there"
    )
    scope: ClassVar[str] = (
        "the linear deep UFM (any targets, any widths); ReLU with L = 1, or with balanced "
        "one-hot targets, no bias, every width >= K, and K = 2 or L = 2"
    )

    def compare(self, problem, solution) -> Comparison:
        if not self.available:
            return _compare_out_of_scope(problem, solution, self.reason)
        return _compare(problem, solution)

    def columns(self, problem, params, loss) -> dict:
        W = params.Ws[-1]
        # W W^T to the host, where the closed form is computed (host_columns) with its ranks.
        return {**no_columns(problem.dtype), "WWT": W @ W.T}

    def host_columns(self, problem, swept: dict, rows: dict) -> None:
        """Closed-form columns of deep rows in place, one :func:`theory.deep.optimum` a row
        (rows where it predicts nothing, e.g. a lambda of 0, keep NaN and
        ``rank_theory = -1``); ``rank`` of every row against ``W W^T``'s natural scale."""
        WWTs = rows.pop("WWT")
        n = len(WWTs)
        lam_W = np.broadcast_to(
            np.asarray(problem.lambda_W, np.float64), (n, problem.num_layers)
        ).copy()
        if "lambda_W" in swept:
            lam_W[:] = np.asarray(swept["lambda_W"], np.float64)[:, None]
        lam_H = np.asarray(swept.get("lambda_H", np.full(n, float(problem.lambda_H))), np.float64)
        Y = np.asarray(problem.targets, np.float64)
        Yc = Y - Y.mean(0) if problem.bias else Y
        y1 = np.linalg.norm(Yc, 2)
        P = problem.num_layers + 1
        for i in range(n):
            lams = np.concatenate([[lam_H[i]], lam_W[i]])
            WWT = np.asarray(WWTs[i], np.float64)
            if np.all(lams > 0) and y1 > 0:
                gamma = np.exp(np.mean(np.log(lams)))
                scale = gamma / lams[-1] * y1 ** (2.0 / P)
            else:
                scale = max(np.linalg.eigvalsh(WWT)[-1], 0.0)
            ev = np.linalg.eigvalsh(0.5 * (WWT + WWT.T))
            rows["rank"][i] = int(np.sum(ev > np.sqrt(np.finfo(np.float64).eps) * scale))
            if not self.available:
                continue
            try:
                opt = deep.optimum(
                    Y, lam_H[i], lam_W[i], problem.widths, problem.activation, problem.bias
                )
            except (NotImplementedError, ValueError, TypeError):
                continue  # e.g. a lambda of 0: no unique optimum
            ref = np.linalg.norm(opt.WWT)
            rows["loss_theory"][i] = opt.loss
            rows["loss_gap"][i] = (rows["loss"][i] - opt.loss) / abs(opt.loss)
            rows["err_gram_W"][i] = np.linalg.norm(WWT - opt.WWT) / (
                ref if ref > 1e-3 * scale else scale
            )
            rows["rank_theory"][i] = opt.rank

    def thresholds(self, problem, swept) -> list[dict]:
        """``kappa_i = kappa_crit`` for each distinct target singular value ``y_i`` (equal
        lambdas on every layer): ``kappa_i = gamma N y_i^{2/P - 2}``,
        ``gamma^P = lambda_H lambda_W^L``."""
        lw = np.asarray(problem.lambda_W)
        if "lambda_W" not in swept and not np.all(lw == lw[0]):
            return []
        L, P = problem.num_layers, problem.num_layers + 1
        Y = np.asarray(problem.targets, np.float64)
        Yc = Y - Y.mean(0) if problem.bias else Y
        y = np.linalg.svd(Yc, compute_uv=False)[: min(problem.widths)]
        kc, N = deep.kappa_crit(P), Y.shape[0]
        out = []
        for i, v in enumerate(y):
            value = float((kc * v ** (2 - 2 / P) / N) ** P)
            if v > 1e-12 * y[0] and not (out and np.isclose(out[-1]["value"], value)):
                powers = {"lambda_H": 1, "lambda_W": L}
                out.append(
                    {"label": f"kappa_{i + 1} = kappa_crit", "powers": powers, "value": value}
                )
        return out

    def notes(self) -> dict[str, str]:
        notes = super().notes()
        notes["err_gram_H"] = (
            "not computed for deep problems: the per-layer sample Grams are compared by "
            "theory.compare (feature_gram_l)"
        )
        return notes


@reference.register(DeepUFM)
def _(problem: DeepUFM) -> DeepReference:
    why = deep.scope_error(problem.targets, problem.widths, problem.activation, problem.bias)
    return DeepReference(available=not why, reason=why)


def _float64(problem, solution):
    """The problem and the solution's variables in float64 (numpy in, jax arrays out)."""
    sol = solution.params
    H = jnp.asarray(sol.H, jnp.float64)
    Ws = tuple(jnp.asarray(W, jnp.float64) for W in sol.Ws)
    b = jnp.asarray(sol.b, jnp.float64)
    Y = np.asarray(problem.targets, np.float64)
    lam_W = np.asarray(problem.lambda_W, np.float64)
    p64 = DeepUFM(
        Y, float(problem.lambda_H), lam_W, problem.widths, problem.activation, problem.bias
    )
    return p64, DeepParams(H, Ws, b)


def _metrics(problem, feats, Ws, Y) -> dict[str, float]:
    if problem.labels is not None:
        nc1 = metrics.deep_nc(feats, problem.labels, problem.num_classes)["nc1"]
        return {"max NC1 over layers": float(jnp.max(nc1))}
    nrc1 = metrics.deep_nrc(feats, Ws, Y)["nrc1"]
    return {"max NRC1 over layers": float(jnp.max(nrc1))}


def _compare(problem, solution) -> Comparison:
    """Errors of a deep solution against the closed form (see :func:`theory.compare`).

    ``errors``: ``loss`` (relative gap), ``WWT`` (``W_L W_L^T``), ``predictions`` (``Z``),
    ``feature_gram_l`` for every layer whose sample Gram ``X_l X_l^T`` the theory fixes (all
    layers of the linear model; layers ``>= 2`` of the ReLU model) and ``bias``. ``metrics``:
    the largest layer-wise NC1 (one-hot targets) or NRC1 of the collapsed layers."""
    p64, params = _float64(problem, solution)
    Y = np.asarray(p64.targets)
    opt = deep.optimum(
        Y, float(problem.lambda_H), p64.lambda_W, problem.widths, problem.activation, problem.bias
    )
    H, Ws, b = params
    feats = p64.layer_features(params)
    Z = p64.output(params)
    loss = float(p64.objective(params))
    N = Y.shape[0]
    top = max(float(opt.target_singular_values[0]), 1e-300)
    # Natural scales where the closed form is 0: the factors' size at sigma = y_1.
    c = np.sqrt(opt.gamma / opt.lambdas)
    scale_w = c[-1] ** 2 * top ** (2.0 / opt.P)
    WWT = Ws[-1] @ Ws[-1].T
    errors = {
        "loss": (loss - opt.loss) / max(abs(opt.loss), 1e-300),
        "WWT": float(rel(jnp.linalg.norm(WWT - opt.WWT), np.linalg.norm(opt.WWT), scale_w)),
        "predictions": float(
            rel(
                jnp.linalg.norm(Z - opt.predictions),
                np.linalg.norm(opt.predictions),
                np.linalg.norm(Y),
            )
        ),
    }
    Yc = jnp.asarray(opt.centred_targets)
    for layer, (X, core) in enumerate(zip(feats, opt.feature_gram_cores, strict=True), start=1):
        if core is None:
            continue
        diff, ref = gram_difference_norm(X, Yc, jnp.asarray(core))
        scale_x = N * np.prod(c[:layer] ** 2) * top ** (2.0 * layer / opt.P)
        errors[f"feature_gram_{layer}"] = float(rel(diff, ref, scale_x))
    if problem.bias:
        errors["bias"] = float(
            rel(jnp.linalg.norm(b - opt.bias), np.linalg.norm(opt.bias), np.sqrt(np.mean(Y**2)))
        )
    mets = _metrics(problem, feats, Ws, Y) if opt.rank > 0 else {}
    return Comparison(
        errors=errors,
        metrics=mets,
        rank_theory=int(opt.rank),
        rank_solution=int(rank(WWT, scale_w)),
        status=Status(int(solution.status)).name,
        loss_theory=float(opt.loss),
        loss_solution=float(solution.loss),
    )


def _compare_out_of_scope(problem, solution, reason: str) -> Comparison:
    """What can be compared where :func:`theory.deep.optimum` predicts nothing: the loss
    against :func:`theory.deep.dnc_candidate_loss` (an upper bound of the optimum, for
    balanced one-hot targets without bias and widths >= K) and the layer-wise collapse."""
    p64, params = _float64(problem, solution)
    Y = np.asarray(p64.targets)
    loss = float(p64.objective(params))
    feats = p64.layer_features(params)
    bounds = {}
    onehot = deep.one_hot_balanced(Y)
    if onehot is not None and not problem.bias and min(problem.widths) >= onehot[0]:
        K, per_class = onehot
        lam_W = [float(v) for v in np.atleast_1d(p64.lambda_W)]
        lam_W = lam_W[0] if len(set(lam_W)) == 1 else lam_W
        cand = deep.dnc_candidate_loss(
            int(K), int(per_class), float(problem.lambda_H), lam_W, problem.widths
        )
        if np.isfinite(cand):
            bounds["loss vs DNC candidate (L-L_c)/|L_c| (upper bound: <= 0)"] = (loss - cand) / abs(
                cand
            )
    not_compared = ("loss", "WWT", "predictions", "feature_gram", "collapse rank")
    WWT = params.Ws[-1] @ params.Ws[-1].T
    return Comparison(
        errors={},
        metrics=_metrics(problem, feats, params.Ws, Y),
        rank_theory=-1,
        rank_solution=int(rank(WWT, jnp.maximum(jnp.linalg.eigvalsh(WWT)[-1], 0.0))),
        status=Status(int(solution.status)).name,
        loss_theory=float("nan"),
        loss_solution=float(solution.loss),
        available=False,
        reason=reason,
        not_compared=not_compared,
        bounds=bounds,
    )
