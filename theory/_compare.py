"""``theory.compare``: a numerical solution against the closed form, quantity by quantity."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import ufm
from ufm._linalg import eps_of, full_precision
from ufm._validate import check_shape

from . import classification, regression
from ._compare_deep import compare_deep


def _rel(err, ref_norm, scale):
    """``err / ||ref||``, or ``err / scale`` where the reference is (numerically) zero."""
    denom = jnp.where(ref_norm > 1e-3 * scale, ref_norm, scale)
    return err / denom


def _gram_difference_norm(H, Yc, K):
    """``||H H^T - Yc K Yc^T||_F`` and ``||Yc K Yc^T||_F`` without forming ``M x M`` matrices.

    With ``F = [H, Yc] = Q R`` (thin QR), ``H H^T - Yc K Yc^T = Q (R D R^T) Q^T`` with
    ``D = diag(I_d, -K)``, so the norm is that of a small matrix and no precision is lost to
    cancellation between large traces.
    """
    d = H.shape[1]
    _, R = jnp.linalg.qr(jnp.concatenate([H, Yc], axis=1))
    Rh, Ry = R[:, :d], R[:, d:]
    diff = Rh @ Rh.T - Ry @ K @ Ry.T
    return jnp.linalg.norm(diff), jnp.linalg.norm(Ry @ K @ Ry.T)


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
    """

    errors: dict[str, float]
    metrics: dict[str, float]
    rank_theory: int
    rank_solution: int
    status: str
    loss_theory: float
    loss_solution: float

    def passed(self, tol: float) -> bool:
        """Successful status, equal ranks and every error and metric <= ``tol`` (loss gap in
        absolute value)."""
        return (
            self.status == "successful"
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
        for k, v in self.metrics.items():
            rows.append((k, f"{v:.3e}", mark(tol is None or v <= tol)))
        rows.append(("loss (closed form)", f"{self.loss_theory:.12g}", ""))
        rows.append(("loss (solver)", f"{self.loss_solution:.12g}", ""))
        rows.append(
            (
                "collapse rank theory/solver",
                f"{self.rank_theory}/{self.rank_solution}",
                mark(self.rank_theory == self.rank_solution),
            )
        )
        rows.append(("status", self.status, mark(self.status == "successful")))
        w = [max(len(r[i]) for r in rows) for i in range(3)]
        lines = [f"{a:<{w[0]}}  {b:>{w[1]}}  {c}".rstrip() for a, b, c in rows]
        lines.insert(1, "-" * (w[0] + w[1] + 6))
        return "\n".join(lines)


def _reference_precision(problem):
    """The problem in float64 when x64 is enabled, so that a float32 solution is compared with
    a float64 closed form."""
    if not jax.config.jax_enable_x64 or problem.dtype == jnp.float64:
        return problem
    return jax.tree_util.tree_map(
        lambda x: x.astype(jnp.float64) if jnp.issubdtype(x.dtype, jnp.floating) else x, problem
    )


def _rank(G, scale) -> jax.Array:
    """Eigenvalues of a symmetric ``G`` above ``sqrt(eps)`` times the natural ``scale`` (traced)."""
    ev = jnp.linalg.eigvalsh(0.5 * (G + G.T))
    return jnp.sum(ev > jnp.sqrt(eps_of(ev)) * scale)


def _numerical_rank(G, scale) -> int:
    """:func:`_rank` as a Python int."""
    return int(_rank(G, scale))


def _check_arguments(solution, problem) -> None:
    """Types and sizes of :func:`compare`'s arguments, before any work."""
    if not isinstance(solution, ufm.Solution):
        swapped = (
            " (the order is compare(solution, problem))"
            if isinstance(solution, ufm.Problem)
            else ""
        )
        raise TypeError(
            f"solution must be a ufm.Solution (the result of ufm.solve), got "
            f"{type(solution).__name__}{swapped}"
        )
    if not isinstance(problem, ufm.RegressionUFM | ufm.ClassificationUFM | ufm.DeepUFM):
        raise TypeError(
            "problem must be a ufm.RegressionUFM, ufm.ClassificationUFM or ufm.DeepUFM (the "
            f"problems with a closed form), got {type(problem).__name__}"
        )
    problem.check_unbatched()
    if np.ndim(solution.loss) != 0:
        raise ValueError("compare takes one solution; loop or vmap over a batch yourself")
    N, n = problem.targets.shape
    if isinstance(problem, ufm.DeepUFM):
        if not isinstance(solution.params, ufm.DeepParams):
            raise TypeError(
                "solution.params must be ufm.DeepParams(H, Ws, b) for a ufm.DeepUFM, got "
                f"{type(solution.params).__name__}"
            )
        widths = problem.widths
        H, Ws, b = solution.params
        check_shape(H, (N, widths[0]), "solution.params.H", f"(N, d_1) = ({N}, {widths[0]})")
        if len(Ws) != len(widths):
            raise ValueError(
                f"solution.params.Ws must hold L = {len(widths)} weights for widths {widths}, "
                f"got {len(Ws)}"
            )
        for i, W in enumerate(Ws):
            shape = (widths[i + 1] if i + 1 < len(widths) else n, widths[i])
            check_shape(W, shape, f"solution.params.Ws[{i}]", str(shape))
    else:
        if not isinstance(solution.params, ufm.Params):
            raise TypeError(
                "solution.params must be ufm.Params(H, W, b) of a one-layer UFM, got "
                f"{type(solution.params).__name__}"
            )
        d = problem.feature_dim
        H, W, b = solution.params
        check_shape(H, (N, d), "solution.params.H", f"(N, d) = ({N}, {d}) of the problem")
        check_shape(W, (n, d), "solution.params.W", f"(n, d) = ({n}, {d}) of the problem")
    check_shape(b, (n,), "solution.params.b", f"(n,) = ({n},) of the problem")


class Plan(NamedTuple):
    """One comparison as a compiled program and a host-side finish.

    ``program(*args, *static)`` is a jitted function returning a dict of arrays (every number of
    the comparison); ``finish(numbers, solution)`` turns its host copy into a
    :class:`Comparison`. :func:`compare` runs it; ``ufm check`` runs the same program from its
    on-disk executable store (``ufm/_cli/_programs.py``)."""

    program: Callable[..., dict]
    args: tuple
    static: tuple
    finish: Callable[[dict, ufm.Solution], Comparison]


def plan(problem, params) -> Plan | None:
    """The :class:`Plan` comparing ``params`` (arrays, or ``jax.ShapeDtypeStruct`` to compile
    ahead) with ``problem``'s closed form, both in the reference precision; ``None`` for a
    :class:`ufm.DeepUFM` (compared by several programs, :func:`compare_deep`). Arguments are
    not checked here (:func:`compare` does)."""
    ref = _reference_precision(problem)
    if isinstance(ref, ufm.DeepUFM):
        return None

    def cast(x):
        if isinstance(x, jax.ShapeDtypeStruct):
            return jax.ShapeDtypeStruct(x.shape, ref.dtype)
        return x.astype(ref.dtype)

    params = ufm.Params(*(cast(x) for x in params))
    if isinstance(ref, ufm.ClassificationUFM):
        finish = functools.partial(_finish_classification, problem=ref)
        return Plan(_classification_numbers, (ref, params), _classification_static(ref), finish)
    finish = functools.partial(_finish_regression, bias=ref.bias)
    return Plan(_regression_numbers, (ref, params), (), finish)


def plan_ahead(problem) -> Plan | None:
    """:func:`plan` for a solution of ``problem``'s shapes and dtype (``jax.ShapeDtypeStruct``
    variables), to compile before the solution exists."""
    if isinstance(problem, ufm.DeepUFM):
        return None
    (N, n), d = problem.targets.shape, problem.feature_dim
    shapes = ((N, d), (n, d), (n,))
    return plan(problem, ufm.Params(*(jax.ShapeDtypeStruct(s, problem.dtype) for s in shapes)))


def precompile(problem) -> None:
    """Compile :func:`compare`'s program for ``problem``'s shapes without a solution, e.g. in a
    thread while the solver compiles. A later :func:`compare` of a solution of this problem
    reuses it. Problems without a compiled comparison (deep) are a no-op."""
    p = plan_ahead(problem)
    if p is not None:
        p.program.lower(*p.args, *p.static).compile()


def compare(solution: ufm.Solution, problem) -> Comparison:
    """Compare a single (unbatched) :class:`ufm.Solution` with the closed form of its problem
    (:func:`regression.optimum_of`, :func:`classification.optimum_of` or, for a
    :class:`ufm.DeepUFM`, :func:`theory.deep.optimum`).

    Raises ``TypeError`` unless ``solution`` is a :class:`ufm.Solution` whose variables are the
    problem's kind and ``problem`` one of those three, ``ValueError`` for a batch or when the
    solution's shapes are not the problem's (a solution of another problem)."""
    _check_arguments(solution, problem)
    p = plan(problem, solution.params)
    if p is None:
        return compare_deep(
            solution, problem, Comparison, _rel, _gram_difference_norm, _numerical_rank
        )
    return p.finish(jax.device_get(p.program(*p.args, *p.static)), solution)


def _finish_regression(out: dict, solution: ufm.Solution, *, bias: bool) -> Comparison:
    errors = {k: out["errors"][k] for k in ("WWT", "feature_gram", "predictions", "bias", "loss")}
    if not bias:
        errors.pop("bias")
    mets = out["metrics"] if int(out["rank_theory"]) > 0 else out["zero_metrics"]
    mets = {k: mets[k] for k in _REGRESSION_METRICS if k in mets}
    return _comparison(out, errors, mets, solution)


def _comparison(out: dict, errors: dict, mets: dict, solution: ufm.Solution) -> Comparison:
    """A :class:`Comparison` from the host copy of a compiled comparison's outputs."""
    return Comparison(
        errors={k: float(v) for k, v in errors.items()},
        metrics={k: float(v) for k, v in mets.items()},
        rank_theory=int(out["rank_theory"]),
        rank_solution=int(out["rank_solution"]),
        status=ufm.Status(int(solution.status)).name,
        loss_theory=float(out["loss_theory"]),
        loss_solution=float(out["loss_solution"]),
    )


_REGRESSION_METRICS = ("NRC1", "NRC2", "NRC3(gamma=c)", "||H||_F/sqrt(M) at zero optimum")


@jax.jit
@full_precision
def _regression_numbers(problem: ufm.RegressionUFM, params: ufm.Params) -> dict:
    """Every number of a regression comparison as one compiled program (a handful of small
    eager operations would each compile and cost more than the whole comparison)."""
    H, W, b = params
    opt = regression.optimum_of(problem)
    # The solution's loss re-evaluated in the reference precision: a float32 objective can be
    # dominated by rounding (small lambdas, large targets) while the variables are accurate.
    loss_sol = problem.objective(params)
    lH, lW = problem.lambda_H, problem.lambda_W
    ratio = jnp.sqrt(lH / lW)
    Yc = opt.centred_targets
    M = problem.num_samples
    rms = jnp.linalg.norm(problem.targets) / np.sqrt(M)
    # Natural scales, used where the closed form is zero (c >= largest eigenvalue, or Sigma = 0),
    # floored so that constant targets give finite errors.
    top = jnp.maximum(
        jnp.sqrt(jnp.maximum(opt.eigenvalues[0], 0.0)), jnp.sqrt(eps_of(rms)) * (1.0 + rms)
    )
    scale_wwt = ratio * top
    scale_gram = M * top / ratio
    scale_pred = jnp.maximum(jnp.linalg.norm(problem.targets), eps_of(rms))
    scale_bias = jnp.maximum(rms, eps_of(rms))
    scale_loss = jnp.maximum(jnp.abs(opt.loss), eps_of(rms) * (1.0 + rms**2))
    WWT = W @ W.T
    gd, gn = _gram_difference_norm(H, Yc, opt.feature_gram_core)
    pred = H @ W.T + (b if problem.bias else 0.0)
    errors = {
        "WWT": _rel(jnp.linalg.norm(WWT - opt.WWT), jnp.linalg.norm(opt.WWT), scale_wwt),
        "feature_gram": _rel(gd, gn, scale_gram),
        "predictions": _rel(
            jnp.linalg.norm(pred - opt.predictions), jnp.linalg.norm(opt.predictions), scale_pred
        ),
        "bias": _rel(jnp.linalg.norm(b - opt.bias), jnp.linalg.norm(opt.bias), scale_bias),
        "loss": (loss_sol - opt.loss) / scale_loss,
    }
    n = problem.target_dim
    gamma = lH * lW
    return {
        "errors": errors,
        "metrics": {
            "NRC1": ufm.metrics.nrc1(H, n, center=problem.bias),
            "NRC2": ufm.metrics.nrc2(H, W),
            "NRC3(gamma=c)": ufm.metrics.nrc3(W, problem.targets, gamma, center=problem.bias),
        },
        # At the zero solution the feature metrics are 0/0; report the features' size instead.
        "zero_metrics": {
            "||H||_F/sqrt(M) at zero optimum": jnp.linalg.norm(H) / np.sqrt(H.shape[0])
        },
        "rank_theory": opt.rank,
        "rank_solution": _rank(WWT, scale_wwt),
        "loss_theory": opt.loss,
        "loss_solution": loss_sol,
    }


def _classification_static(problem: ufm.ClassificationUFM) -> tuple[int, bool]:
    """The static arguments of :func:`_classification_numbers`: the class size (concrete
    labels, checked balanced here) and whether the bias is free (CE: compare centred logits)."""
    per_class = classification.balanced_sizes(problem)
    free = problem.bias_mode == "free" or (
        problem.bias_mode == "reg" and float(problem.lambda_b) == 0
    )
    return per_class, free


def _finish_classification(
    out: dict, solution: ufm.Solution, *, problem: ufm.ClassificationUFM
) -> Comparison:
    errors = {k: out["errors"][k] for k in _CLASSIFICATION_ERRORS}
    if not problem.has_bias:
        errors.pop("bias")
    if bool(out["zero"]):
        mets = {"||H||_F/sqrt(N) at zero optimum": out["H_norm"]}
    else:
        mets = {k: out["metrics"][k] for k in _CLASSIFICATION_METRICS}
        if problem.loss == "mse" and problem.bias_mode == "none":
            mets["orthogonal-frame distance W W^T"] = out["frame"]
        elif problem.bias_mode != "reg":
            mets["ETF distance W W^T"] = out["etf"]
    return _comparison(out, errors, mets, solution)


_CLASSIFICATION_ERRORS = ("WWT", "class_mean_gram", "logits", "bias", "loss")
_CLASSIFICATION_METRICS = (
    "NC1",
    "NC2 (ETF distance, centred means)",
    "NC3 (uncentred means)",
    "NC4",
)


@functools.partial(jax.jit, static_argnums=(2, 3))
@full_precision
def _classification_numbers(
    problem: ufm.ClassificationUFM, params: ufm.Params, per_class: int, free: bool
) -> dict:
    """Every number of a classification comparison as one compiled program."""
    H, W, b = params
    bias = problem.bias_mode if problem.bias_mode != "reg" else problem.lambda_b
    K, y = problem.num_classes, problem.labels
    opt = classification.optimum(
        K, per_class, problem.lambda_H, problem.lambda_W, problem.loss, bias, problem.dtype
    )
    # The solution's loss re-evaluated in the reference precision: a float32 objective can be
    # dominated by rounding (small lambdas, large targets) while the variables are accurate.
    loss_sol = problem.objective(params)
    mu, _, _ = ufm.metrics.class_means(H, y, K)
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
        "WWT": _rel(jnp.linalg.norm(WWT - opt.WWT), jnp.linalg.norm(opt.WWT), r * one),
        "class_mean_gram": _rel(
            jnp.linalg.norm(G - opt.class_mean_gram), jnp.linalg.norm(opt.class_mean_gram), one / r
        ),
        "logits": _rel(jnp.linalg.norm(logits - opt.logits), jnp.linalg.norm(opt.logits), one),
        # b is in logit units: where the closed form's b is 0, divide by the logits' size.
        "bias": _rel(
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
            "NC1": ufm.metrics.nc1(H, y, K),
            "NC2 (ETF distance, centred means)": ufm.metrics.nc2(H, W, y, K)["etf_means"],
            "NC3 (uncentred means)": ufm.metrics.nc3(H, W, y, K, center=False),
            "NC4": ufm.metrics.nc4(H, W, b_eff, y, K),
        },
        "frame": ufm.metrics.orthogonal_frame_distance(WWT),
        "etf": ufm.metrics.etf_distance(WWT),
        "zero": opt.zero,
        "H_norm": jnp.linalg.norm(H) / np.sqrt(H.shape[0]),
        "rank_theory": _rank(opt.WWT, scale),
        "rank_solution": _rank(WWT, scale),
        "loss_theory": opt.loss,
        "loss_solution": loss_sol,
    }
