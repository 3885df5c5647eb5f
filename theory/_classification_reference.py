"""The reference of a :class:`ufm.ClassificationUFM`: :func:`theory.classification.optimum`
(balanced classes, with label smoothing), :func:`theory.imbalanced_mse.optimum` (MSE, any class
sizes) or :func:`theory.ce_convex.optimum` (cross-entropy, any class sizes: a certified convex
computation on the host) against a solution (``theory.compare``), a sweep row's closed-form
columns (full and ``n x n`` paths) and the phase-diagram thresholds (``kappa = 1`` for balanced
classes; without a bias, the level ``lambda_H lambda_W = n_k / N^2`` at which the classes of
size ``n_k`` die (MSE); for cross-entropy, the level ``(1 - delta)^2 n_k / N^2`` from which the
rows of two or more classes of size ``n_k`` coincide)."""

from __future__ import annotations

import dataclasses
import functools
import types
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from ufm import metrics
from ufm._linalg import full_precision
from ufm._types import Params
from ufm._validate import is_concrete
from ufm.problems import ClassificationUFM
from ufm.problems.classification import exact_class_means

from . import ce_convex, imbalanced_mse
from ._reference import (
    Plan,
    Reference,
    cast_params,
    comparison_from,
    no_columns,
    rank,
    reference,
    reference_precision,
    rel,
    weight_rank,
)
from .classification import optimum as balanced_optimum

_ERRORS = ("WWT", "class_mean_gram", "logits", "bias", "loss")
_METRICS = ("NC1", "NC2 (ETF distance, centred means)", "NC3 (uncentred means)", "NC4")


@dataclasses.dataclass(frozen=True)
class ClassificationReference(Reference):
    """The exact optimum against a solution of a :class:`ufm.ClassificationUFM`.

    ``per_class``: the class size of balanced classes (0 otherwise); ``free``: the bias is free
    (for CE, compare the centred logits and bias); ``class_sizes``: ``(n_1, ..., n_K)``, used
    with unequal classes (:func:`theory.imbalanced_mse.optimum` for MSE; for cross-entropy,
    ``convex``, :func:`theory.ce_convex.optimum` on the host, certified by its duality gap,
    unavailable where ``feature_dim`` is below the optimum's rank). With unequal classes the
    comparison's metrics are NC1 alone (class collapse holds at every optimum; the frame and
    self-duality metrics describe balanced optima)."""

    per_class: int = 0
    free: bool = False
    class_sizes: tuple[int, ...] = ()
    #: cross-entropy with unequal classes: the optimum is computed on the host
    #: (:func:`theory.ce_convex.optimum`), passed to the compiled comparison as an argument.
    convex: bool = False
    nan_rows: ClassVar[str] = (
        "closed-form columns are NaN (rank_theory -1) in rows where lambda_H or lambda_W is 0: "
        "the minimisers are not unique there"
    )
    #: ``err_class_mean_gram``: the relative error of the ``K x K`` class-mean Gram.
    column_names: ClassVar[tuple[str, ...]] = (
        "loss_theory",
        "loss_gap",
        "err_gram_W",
        "err_class_mean_gram",
        "rank_theory",
        "rank",
    )
    scope: ClassVar[str] = (
        "MSE and cross-entropy (any label smoothing), no, free or regularised bias, any class "
        "sizes; lambdas > 0; cross-entropy with unequal classes needs feature_dim >= the "
        "optimum's rank (K - 1 always suffices)"
    )

    def plan(self, problem, params) -> Plan | None:
        if not self.available:
            return None
        ref = reference_precision(problem)
        params = Params(*cast_params(tuple(params), ref.dtype))
        finish = functools.partial(_finish, problem=ref, balanced=bool(self.per_class))
        if self.convex:
            opt = _host_optimum(problem, ref.dtype)
            return Plan(compare_given, (ref, params, opt), (self.free,), finish)
        static = (self.per_class, self.free, self.class_sizes)
        return Plan(compare_numbers, (ref, params), static, finish)

    def columns(self, problem, params, loss) -> dict:
        H, W, _ = params
        WWT = W @ W.T
        if not self.available:
            return no_columns(problem.dtype, weight_rank(WWT), self.column_names)
        mu, _, _ = metrics.class_means(H, problem.labels, problem.num_classes)
        if self.convex:
            # The optimum is computed on the host (host_columns), one certified solve a row.
            out = no_columns(problem.dtype, weight_rank(WWT), self.column_names)
            return {**out, "WWT": WWT, "class_mean_gram": mu @ mu.T}
        return self._columns(problem, loss, WWT, mu @ mu.T)

    def host_columns(self, problem, swept: dict, rows: dict) -> None:
        """Cross-entropy with unequal classes: the closed-form columns of each row from
        :func:`theory.ce_convex.optimum` at the row's lambdas and smoothing (NaN where a
        lambda is 0, or where ``feature_dim`` is below the optimum's rank)."""
        if not self.convex:
            return
        WWTs, grams = rows.pop("WWT", None), rows.pop("class_mean_gram", None)
        if not self.available or WWTs is None:
            return
        n = len(WWTs)

        def field(name):
            default = float(getattr(problem, name, 0.0))
            return np.asarray(swept.get(name, np.full(n, default)), np.float64)

        lH, lW, lb, ls = (field(f) for f in ("lambda_H", "lambda_W", "lambda_b", "label_smoothing"))
        points = np.stack([lH, lW, lb, ls], axis=1)
        for point in np.unique(points, axis=0):  # one certified solve per distinct point
            plH, plW, plb, pls = (float(v) for v in point)
            if not (plH > 0 and plW > 0):
                continue
            bias = problem.bias_mode if problem.bias_mode != "reg" else plb
            o = _ce_optimum(self.class_sizes, plH, plW, bias, pls)
            if o.rank > problem.feature_dim:
                continue
            r = np.sqrt(np.mean(self.class_sizes) * plH / plW)
            for i in np.flatnonzero(np.all(points == point, axis=1)):
                WWT = jnp.asarray(WWTs[i], jnp.float64)
                G = jnp.asarray(grams[i], jnp.float64)
                out = _errors(rows["loss"][i], WWT, G, o.WWT, o.class_mean_gram, o.loss, r)
                for k, v in out.items():
                    rows[k][i] = v

    def exact_columns(self, problem, loss, W, optimum) -> dict:
        if not self.available:
            return no_columns(problem.dtype, weight_rank(optimum.WWT), self.column_names)
        mu = exact_class_means(problem.num_classes, W, optimum)
        return self._columns(problem, loss, optimum.WWT, mu @ mu.T)

    def _columns(self, problem, loss, WWT, class_gram) -> dict:
        p = reference_precision(problem)
        opt = _optimum(p, self.per_class, self.class_sizes)
        r = jnp.sqrt(p.num_samples / p.num_classes * p.lambda_H / p.lambda_W)
        out = _errors(
            loss, WWT.astype(p.dtype), class_gram.astype(p.dtype),
            opt.WWT, opt.class_mean_gram, opt.loss, r,
        )  # fmt: skip
        ok = (p.lambda_H > 0) & (p.lambda_W > 0)
        nan = jnp.full((), jnp.nan, p.dtype)
        kept = {k: jnp.where(ok, v, nan) for k, v in out.items() if k != "rank"}
        kept["rank_theory"] = jnp.where(ok, out["rank_theory"], -1).astype(jnp.int32)
        return {**kept, "rank": out["rank"]}

    def thresholds(self, problem, swept) -> list[dict]:
        """``kappa = 1`` (and ``kappa (1 + 1/lambda_b) = 1`` for MSE with a fixed regularised
        bias): the collapse to the zero solution."""
        if not self.available:
            return []
        both = {"lambda_H": 1, "lambda_W": 1}
        if self.convex:
            if "label_smoothing" in swept:
                return []
            delta = float(getattr(problem, "label_smoothing", 0.0))
            sizes, counts = np.unique(self.class_sizes, return_counts=True)
            return [
                {
                    "label": f"rows of the classes of {n} coincide",
                    "powers": both,
                    "value": ce_convex.coincidence_level(self.class_sizes, n, delta) ** 2,
                }
                for n, m in sorted(zip(sizes.tolist(), counts.tolist(), strict=True), reverse=True)
                if m >= 2
            ]
        if not self.per_class:
            if problem.bias_mode != "none":
                return []
            N = sum(self.class_sizes)
            return [
                {"label": f"classes of {n} die", "powers": both, "value": n / N**2}
                for n in sorted(set(self.class_sizes), reverse=True)
            ]
        K, n = problem.num_classes, self.per_class
        out = [{"label": "kappa = 1", "powers": both, "value": 1.0 / (K**2 * n)}]
        if problem.loss == "mse" and problem.bias_mode == "reg" and "lambda_b" not in swept:
            lb = float(problem.lambda_b)
            if lb > 0:
                v = 1.0 / (K**2 * n * (1 + 1 / lb) ** 2)
                out.append({"label": "kappa (1 + 1/lambda_b) = 1", "powers": both, "value": v})
        return out


def _errors(loss, WWT, G, opt_WWT, opt_G, opt_loss, r) -> dict:
    """A solution's columns against an optimum (``r = sqrt(N/K lambda_H/lambda_W)``, the
    natural scale of ``W W^T``; ``1/r`` that of the class-mean Gram): the loss gap, the Grams'
    relative errors and both ranks. Shared by the traced path and the host rows."""
    one = jnp.ones((), WWT.dtype)
    scale = r * jnp.maximum(1.0, jnp.linalg.norm(opt_WWT) / r)
    return {
        "loss_theory": opt_loss * one,
        "loss_gap": (loss - opt_loss) / jnp.abs(opt_loss),
        "err_gram_W": rel(jnp.linalg.norm(WWT - opt_WWT), jnp.linalg.norm(opt_WWT), r * one),
        "err_class_mean_gram": rel(jnp.linalg.norm(G - opt_G), jnp.linalg.norm(opt_G), one / r),
        "rank_theory": rank(opt_WWT, scale),
        "rank": rank(WWT, scale),
    }


def _finish(out: dict, solution, *, problem: ClassificationUFM, balanced: bool = True):
    errors = {k: out["errors"][k] for k in _ERRORS}
    if not problem.has_bias:
        errors.pop("bias")
    if bool(out["zero"]):
        mets = {"||H||_F/sqrt(N) at zero optimum": out["H_norm"]}
    elif not balanced:
        mets = {"NC1": out["metrics"]["NC1"]}
    else:
        mets = {k: out["metrics"][k] for k in _METRICS}
        if problem.loss == "mse" and problem.bias_mode == "none":
            mets["orthogonal-frame distance W W^T"] = out["frame"]
        elif problem.bias_mode != "reg":
            mets["ETF distance W W^T"] = out["etf"]
    return comparison_from(out, errors, mets, solution)


@reference.register(ClassificationUFM)
def _(problem: ClassificationUFM) -> ClassificationReference:
    counts = np.bincount(np.asarray(problem.labels), minlength=problem.num_classes)
    free = problem.bias_mode == "free" or (
        problem.bias_mode == "reg" and float(problem.lambda_b) == 0
    )
    sizes = tuple(int(c) for c in counts)
    per_class = sizes[0] if len(set(sizes)) == 1 else 0
    convex = not per_class and problem.loss == "ce"
    for name in ("lambda_H", "lambda_W"):
        v = getattr(problem, name)
        if is_concrete(v) and float(v) <= 0:
            why = f"{name} must be > 0 for a closed-form optimum, got {float(v)}"
            return ClassificationReference(False, why, per_class, free, sizes, convex)
    K, d = problem.num_classes, problem.feature_dim
    if convex and d < K - 1:
        opt = _host_optimum(problem, np.float64)
        if int(opt["rank"]) > d:
            why = (
                f"feature_dim = {d} is below the rank {int(opt['rank'])} of the cross-entropy "
                "optimum: the certified convex value is only a lower bound on the width-"
                f"{d} problem's minimum"
            )
            return ClassificationReference(False, why, per_class, free, sizes, convex)
    return ClassificationReference(per_class=per_class, free=free, class_sizes=sizes, convex=convex)


@functools.lru_cache(maxsize=64)
def _ce_optimum(class_sizes, lambda_H, lambda_W, bias, label_smoothing) -> ce_convex.CEOptimum:
    """:func:`theory.ce_convex.optimum` (cached: a reference, its plan and ``ufm check`` ask
    for the same one)."""
    return ce_convex.optimum(class_sizes, lambda_H, lambda_W, None, bias, label_smoothing)


def _host_optimum(problem: ClassificationUFM, dtype) -> dict:
    """The certified cross-entropy optimum of a concrete problem, as arrays in ``dtype``."""
    counts = imbalanced_mse.class_sizes_of(problem)
    bias = problem.bias_mode if problem.bias_mode != "reg" else float(problem.lambda_b)
    o = _ce_optimum(
        tuple(int(c) for c in counts),
        float(problem.lambda_H),
        float(problem.lambda_W),
        bias,
        float(getattr(problem, "label_smoothing", 0.0)),
    )
    fields = ("WWT", "class_mean_gram", "logits", "bias", "loss", "zero", "rank")
    kinds = {"rank": jnp.int32, "zero": jnp.bool_}
    return {k: jnp.asarray(getattr(o, k), kinds.get(k, dtype)) for k in fields}


def _optimum(problem: ClassificationUFM, per_class: int, class_sizes: tuple[int, ...]):
    """The balanced closed form, or for unequal classes (MSE) the imbalanced one."""
    bias = problem.bias_mode if problem.bias_mode != "reg" else problem.lambda_b
    lH, lW = problem.lambda_H, problem.lambda_W
    if per_class:
        K, delta = problem.num_classes, getattr(problem, "label_smoothing", 0.0)
        return balanced_optimum(K, per_class, lH, lW, problem.loss, bias, problem.dtype, delta)
    d = problem.feature_dim
    return imbalanced_mse.optimum(class_sizes, lH, lW, d, bias, problem.dtype)


@functools.partial(jax.jit, static_argnums=(2, 3, 4))
@full_precision
def compare_numbers(
    problem: ClassificationUFM,
    params: Params,
    per_class: int,
    free: bool,
    class_sizes: tuple[int, ...] = (),
):
    """Every number of a classification comparison as one compiled program."""
    return _numbers(problem, params, _optimum(problem, per_class, class_sizes), free)


@functools.partial(jax.jit, static_argnums=(3,))
@full_precision
def compare_given(problem: ClassificationUFM, params: Params, opt: dict, free: bool):
    """:func:`compare_numbers` against an optimum computed on the host (``opt``: the arrays
    of :func:`theory.ce_convex.optimum`)."""
    return _numbers(problem, params, types.SimpleNamespace(**opt), free)


def _numbers(problem: ClassificationUFM, params: Params, opt, free: bool):
    H, W, b = params
    K, y = problem.num_classes, problem.labels
    # The solution's loss re-evaluated in the reference precision: a float32 objective can be
    # dominated by rounding (small lambdas, large targets) while the variables are accurate.
    loss_sol = problem.objective(params)
    mu, _, _ = metrics.class_means(H, y, K)
    b_eff = b if problem.has_bias else jnp.zeros_like(b)
    if problem.loss == "ce" and free:
        # Any multiple of 1 is optimal for the CE bias: compare the centred bias and logits.
        b_eff = b_eff - jnp.mean(b_eff)
    logits = mu @ W.T + b_eff
    # Natural scales where the closed form is zero: the kappa = 0 optimum's size.
    r = jnp.sqrt(problem.num_samples / K * problem.lambda_H / problem.lambda_W)
    WWT, G = W @ W.T, mu @ mu.T
    one = jnp.ones((), WWT.dtype)
    errors = {
        "WWT": rel(jnp.linalg.norm(WWT - opt.WWT), jnp.linalg.norm(opt.WWT), r * one),
        "class_mean_gram": rel(
            jnp.linalg.norm(G - opt.class_mean_gram), jnp.linalg.norm(opt.class_mean_gram), one / r
        ),
        "logits": rel(jnp.linalg.norm(logits - opt.logits), jnp.linalg.norm(opt.logits), one),
        # b is in logit units: where the closed form's b is 0, divide by the logits' size.
        "bias": rel(
            jnp.linalg.norm(b_eff - opt.bias),
            jnp.linalg.norm(opt.bias),
            jnp.maximum(jnp.linalg.norm(opt.logits) / np.sqrt(K), one),
        ),
        "loss": (loss_sol - opt.loss) / jnp.abs(opt.loss),
    }
    scale = r * jnp.maximum(1.0, jnp.linalg.norm(opt.WWT) / r)
    return {
        "errors": errors,
        "metrics": {
            "NC1": metrics.nc1(H, y, K),
            "NC2 (ETF distance, centred means)": metrics.nc2(H, W, y, K)["etf_means"],
            "NC3 (uncentred means)": metrics.nc3(H, W, y, K, center=False),
            "NC4": metrics.nc4(H, W, b_eff, y, K),
        },
        "frame": metrics.orthogonal_frame_distance(WWT),
        "etf": metrics.etf_distance(WWT),
        "zero": opt.zero,
        "H_norm": jnp.linalg.norm(H) / np.sqrt(H.shape[0]),
        "rank_theory": rank(opt.WWT, scale),
        "rank_solution": rank(WWT, scale),
        "loss_theory": opt.loss,
        "loss_solution": loss_sol,
    }
