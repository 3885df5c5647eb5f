"""``theory.compare`` for :class:`ufm.DeepUFM`: the numerical solution against
:func:`theory.deep.optimum`, layer by layer."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

import ufm

from . import deep


def compare_deep(solution, problem, comparison_type, rel, gram_difference_norm, numerical_rank):
    """Errors of a deep solution against the closed form (see :func:`theory.compare`).

    ``errors``: ``loss`` (relative gap), ``WWT`` (``W_L W_L^T``), ``predictions`` (``Z``),
    ``feature_gram_l`` for every layer whose sample Gram ``X_l X_l^T`` the theory fixes (all
    layers of the linear model; layers ``>= 2`` of the ReLU model) and ``bias``. ``metrics``:
    the largest layer-wise NC1 (one-hot targets) or NRC1 of the collapsed layers. Raises
    ``ValueError`` where :func:`theory.deep.optimum` has no prediction (ReLU beyond the
    established cases: compare the loss with :func:`theory.deep.dnc_candidate_loss` yourself).
    """
    Y = np.asarray(problem.targets, np.float64)
    lam_W = np.asarray(problem.lambda_W, np.float64)
    opt = deep.optimum(
        Y, float(problem.lambda_H), lam_W, problem.widths, problem.activation, problem.bias
    )
    sol = solution.params
    H = jnp.asarray(sol.H, jnp.float64)
    Ws = tuple(jnp.asarray(W, jnp.float64) for W in sol.Ws)
    b = jnp.asarray(sol.b, jnp.float64)
    p64 = ufm.DeepParams(H, Ws, b)
    problem64 = ufm.DeepUFM(
        Y, float(problem.lambda_H), lam_W, problem.widths, problem.activation, problem.bias
    )
    feats = problem64.layer_features(p64)
    Z = problem64.output(p64)
    loss = float(problem64.objective(p64))
    N = Y.shape[0]
    top = max(float(opt.target_singular_values[0]), 1e-300)
    # Natural scales where the closed form is 0: the factors' size at sigma = y_1.
    c = np.sqrt(opt.gamma / opt.lambdas)
    scale_w = c[-1] ** 2 * top ** (2.0 / opt.P)
    errors = {
        "loss": (loss - opt.loss) / max(abs(opt.loss), 1e-300),
        "WWT": float(
            rel(jnp.linalg.norm(Ws[-1] @ Ws[-1].T - opt.WWT), np.linalg.norm(opt.WWT), scale_w)
        ),
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
    mets = {}
    if opt.rank > 0:
        if problem.labels is not None:
            nc1 = ufm.metrics.deep_nc(feats, problem.labels, problem.num_classes)["nc1"]
            mets["max NC1 over layers"] = float(jnp.max(nc1))
        else:
            nrc1 = ufm.metrics.deep_nrc(feats, Ws, Y)["nrc1"]
            mets["max NRC1 over layers"] = float(jnp.max(nrc1))
    WWT = Ws[-1] @ Ws[-1].T
    return comparison_type(
        errors=errors,
        metrics=mets,
        rank_theory=int(opt.rank),
        rank_solution=numerical_rank(WWT, scale_w),
        status=ufm.Status(int(solution.status)).name,
        loss_theory=float(opt.loss),
        loss_solution=float(solution.loss),
    )
