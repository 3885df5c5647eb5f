"""The reference of a :class:`ufm.RegressionUFM`: :func:`theory.regression.optimum_of` against
a solution (``theory.compare``), a sweep row's closed-form columns (full and ``n x n`` paths)
and the phase-diagram thresholds ``c = lambda_i(Sigma)``."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from ufm import metrics
from ufm._linalg import eps_of, full_precision
from ufm._types import Params
from ufm.problems import RegressionUFM

from ._reference import (
    Plan,
    Reference,
    cast_params,
    comparison_from,
    gram_difference_norm,
    moment_gram_norm,
    rank,
    reference,
    reference_precision,
    rel,
)
from .regression import _zero_lambda, optimum_of

_METRICS = ("NRC1", "NRC2", "NRC3(gamma=c)", "||H||_F/sqrt(M) at zero optimum")


@dataclasses.dataclass(frozen=True)
class RegressionReference(Reference):
    """:func:`optimum_of` against a solution of a :class:`ufm.RegressionUFM`."""

    scope: ClassVar[str] = "the regression UFM with lambda_H, lambda_W > 0 (every regime)"
    nan_rows: ClassVar[str] = (
        "closed-form columns are NaN (rank_theory -1) in rows where lambda_H or lambda_W is 0: "
        "the minimisers are not unique there"
    )

    def plan(self, problem, params) -> Plan | None:
        if not self.available:
            return None
        ref = reference_precision(problem)
        params = Params(*cast_params(tuple(params), ref.dtype))
        return Plan(compare_numbers, (ref, params), (), _finish)

    def columns(self, problem, params, loss) -> dict:
        q = reference_precision(problem)
        H = params.H.astype(q.dtype)
        mean, _ = q.target_moments()
        Yc = q.targets - mean

        def gram_error(core, scale):
            return rel(*gram_difference_norm(H, Yc, core), scale)

        return _columns(q, loss, params.W @ params.W.T, gram_error)

    def exact_columns(self, problem, loss, W, optimum) -> dict:
        q = reference_precision(problem)
        S = optimum.second_moment.astype(q.dtype)
        C = optimum.gram_core.astype(q.dtype)
        N = q.num_samples

        def gram_error(core, scale):
            # H H^T = Z_b C Z_b^T and the closed form's Yc K Yc^T (Z_b = Yc at b's minimiser).
            return rel(moment_gram_norm(C - core, S, N), moment_gram_norm(core, S, N), scale)

        return _columns(q, loss, optimum.WWT, gram_error)

    def thresholds(self, problem, swept) -> list[dict]:
        """``c = lambda_H lambda_W = lambda_i(Sigma)``: direction ``i`` collapses beyond it."""
        _, S = problem.target_moments()
        ev = np.sort(np.linalg.eigvalsh(np.asarray(S, np.float64)))[::-1]
        r = min(problem.target_dim, problem.feature_dim)
        both = {"lambda_H": 1, "lambda_W": 1}
        return [
            {"label": f"c = lambda_{i + 1}(Sigma)", "powers": both, "value": float(v)}
            for i, v in enumerate(ev[:r])
            if v > 0
        ]


@reference.register(RegressionUFM)
def _(problem: RegressionUFM) -> RegressionReference:
    why = _zero_lambda(problem)
    return RegressionReference(available=not why, reason=why)


def _scales(problem, opt):
    """Natural scales, used where the closed form is zero (``c >= l_1``, or ``Sigma = 0``),
    floored so that constant targets give finite errors: ``(W W^T, H H^T, loss, rms)``."""
    lH, lW = problem.lambda_H, problem.lambda_W
    ratio = jnp.sqrt(lH / lW)
    M = problem.num_samples
    rms = jnp.linalg.norm(problem.targets) / np.sqrt(M)
    top = jnp.maximum(
        jnp.sqrt(jnp.maximum(opt.eigenvalues[0], 0.0)), jnp.sqrt(eps_of(rms)) * (1.0 + rms)
    )
    scale_loss = jnp.maximum(jnp.abs(opt.loss), eps_of(rms) * (1.0 + rms**2))
    return ratio * top, M * top / ratio, scale_loss, rms


def _columns(q, loss, WWT, gram_error) -> dict:
    """A sweep row's closed-form columns; ``gram_error(K, scale)`` is the relative error of the
    sample Gram ``H H^T`` against ``Yc K Yc^T``. NaN where a lambda is 0 (no unique optimum)."""
    opt = optimum_of(q)
    scale_wwt, scale_gram, scale_loss, _ = _scales(q, opt)
    WWT = WWT.astype(q.dtype)
    ok = (q.lambda_H > 0) & (q.lambda_W > 0)
    nan = jnp.full((), jnp.nan, q.dtype)
    return {
        "loss_theory": jnp.where(ok, opt.loss, nan),
        "loss_gap": jnp.where(ok, (loss - opt.loss) / scale_loss, nan),
        "err_gram_W": jnp.where(
            ok, rel(jnp.linalg.norm(WWT - opt.WWT), jnp.linalg.norm(opt.WWT), scale_wwt), nan
        ),
        "err_gram_H": jnp.where(ok, gram_error(opt.feature_gram_core, scale_gram), nan),
        "rank_theory": jnp.where(ok, opt.rank, -1).astype(jnp.int32),
        "rank": rank(WWT, scale_wwt),
    }


@jax.jit
@full_precision
def compare_numbers(problem: RegressionUFM, params: Params) -> dict:
    """Every number of a regression comparison as one compiled program (a handful of small
    eager operations would each compile and cost more than the whole comparison)."""
    H, W, b = params
    opt = optimum_of(problem)
    # The solution's loss re-evaluated in the reference precision: a float32 objective can be
    # dominated by rounding (small lambdas, large targets) while the variables are accurate.
    loss_sol = problem.objective(params)
    scale_wwt, scale_gram, scale_loss, rms = _scales(problem, opt)
    scale_pred = jnp.maximum(jnp.linalg.norm(problem.targets), eps_of(rms))
    scale_bias = jnp.maximum(rms, eps_of(rms))
    WWT = W @ W.T
    gd, gn = gram_difference_norm(H, opt.centred_targets, opt.feature_gram_core)
    pred = H @ W.T + (b if problem.bias else 0.0)
    errors = {
        "WWT": rel(jnp.linalg.norm(WWT - opt.WWT), jnp.linalg.norm(opt.WWT), scale_wwt),
        "feature_gram": rel(gd, gn, scale_gram),
        "predictions": rel(
            jnp.linalg.norm(pred - opt.predictions), jnp.linalg.norm(opt.predictions), scale_pred
        ),
        "bias": rel(jnp.linalg.norm(b - opt.bias), jnp.linalg.norm(opt.bias), scale_bias),
        "loss": (loss_sol - opt.loss) / scale_loss,
    }
    n = problem.target_dim
    gamma = problem.lambda_H * problem.lambda_W
    return {
        "errors": errors,
        "metrics": {
            "NRC1": metrics.nrc1(H, n, center=problem.bias),
            "NRC2": metrics.nrc2(H, W),
            "NRC3(gamma=c)": metrics.nrc3(W, problem.targets, gamma, center=problem.bias),
        },
        # At the zero solution the feature metrics are 0/0; report the features' size instead.
        "zero_metrics": {
            "||H||_F/sqrt(M) at zero optimum": jnp.linalg.norm(H) / np.sqrt(H.shape[0])
        },
        "bias": jnp.asarray(problem.bias),
        "rank_theory": opt.rank,
        "rank_solution": rank(WWT, scale_wwt),
        "loss_theory": opt.loss,
        "loss_solution": loss_sol,
    }


def _finish(out: dict, solution):
    errors = {k: out["errors"][k] for k in ("WWT", "feature_gram", "predictions", "bias", "loss")}
    if not bool(out["bias"]):
        errors.pop("bias")
    mets = out["metrics"] if int(out["rank_theory"]) > 0 else out["zero_metrics"]
    mets = {k: mets[k] for k in _METRICS if k in mets}
    return comparison_from(out, errors, mets, solution)
