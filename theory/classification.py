r"""Closed-form global optima of the balanced classification UFM, MSE and cross-entropy.

``K`` classes of ``n`` samples each, ``N = K n``; samples first (``H (N, d)``, ``W (K, d)``,
``b (K,)``); data term averaged over ``N``, feature penalty ``lambda_H/2 ||H||^2`` not divided by
``N`` (:class:`ufm.ClassificationUFM`). Let ``kappa = K sqrt(n lambda_W lambda_H)``,
``J = 1 1^T / K`` and ``r = sqrt(n lambda_H / lambda_W)``. Class means ``mu_c`` are uncentred;
"logits" are the class-mean logits ``L[c] = W mu_c + b`` (a ``K x K`` matrix, row ``c``).

MSE (docs/theory.md section 2, master lemma of section 0; derived symbolically in
:mod:`theory.symbolic_classification`):

* no bias (Tirer & Bruna, ICML 2022, Sec. 3; needs ``d >= K``): an orthogonal frame,
  ``L = s I`` with ``s = (1 - kappa)_+``, ``W W^T = s r I``, ``mu mu^T = (s / r) I``,
  self-duality ``W^T = r H-bar``; ``f* = kappa - kappa^2/2`` (``1/2`` when ``kappa >= 1``).
* free bias (Zhou et al., ICML 2022; needs ``d >= K - 1``): a simplex ETF,
  ``L = s (I - J) + J``, ``W W^T = s r (I - J)``, ``mu mu^T = (s/r)(I - J)``, ``b = 1/K``,
  ``f* = ((K-1)/K)(kappa - kappa^2/2)`` (``(K-1)/(2K)`` when ``kappa >= 1``).
* regularised bias ``lambda_b > 0`` [derived; needs ``d >= K`` unless the optimum is a pure
  ETF]: ``W W^T = r (s (I - J) + s0 J)`` with
  ``s0 = (1 - kappa (1 + 1/lambda_b))_+``; ``b = (beta/K) 1`` with ``beta = kappa/lambda_b`` if
  ``s0 > 0`` else ``1/(1 + lambda_b)``; ``L = s (I - J) + (s0 + beta) J``;
  ``f* = ((K-1)/K) phi(kappa) + (1/K)[kappa - (kappa^2/2)(1 + 1/lambda_b)]`` if ``s0 > 0`` else
  ``((K-1)/K) phi(kappa) + lambda_b / (2K (1 + lambda_b))``. A pure ETF iff
  ``kappa >= lambda_b / (1 + lambda_b)``; the orthogonal frame as ``lambda_b -> inf``.

Cross-entropy (Zhu et al., NeurIPS 2021, Thm 3.1; docs/theory.md section 3; needs ``d >= K - 1``):
with ``s = sqrt(n lambda_W lambda_H)``, the logit scale ``t`` minimises
``F(t) = log(1 + (K-1) exp(-K t/(K-1))) + K s t``:
``t* = ((K-1)/K) log((1 - (K-1) s)/s)`` if ``K s < 1`` (i.e. ``kappa < 1``), else 0 (the zero
solution, ``f* = log K``); ``f* = F(t*)``. ``W W^T = t r (K/(K-1)) (I - J)`` (simplex ETF),
``mu mu^T = W W^T / r^2`` (self-duality), ``L = t (K/(K-1)) (I - J)``, ``b = 0`` when regularised
or absent, any multiple of ``1`` when free (:func:`ce_scale_root` finds ``t*`` numerically).

Normalisation. docs/theory.md marks the papers' feature-penalty normalisation as recalled. Here the
numerical solver is the judge: with ``lambda_H/2 ||H||^2`` (not divided by ``N``) the exact
solver and L-BFGS on all variables reproduce every formula above to 1e-9 or better in every
regime (``tests/test_classification.py``), and :mod:`theory.symbolic_classification` re-derives
them from the master lemma. For a paper that divides the feature penalty by ``N``, convert with
``ufm.convert_lambdas(..., to="classification")`` (``lambda_H = lambda_H' / N``): its threshold
then reads ``K sqrt(n lambda_W lambda_H' / N) < 1``.

Any class sizes, any loss, any smoothing: :func:`optimum_of` (a :class:`KnownOptimum` whose
``how`` says how the answer is known): the closed forms above for balanced classes,
:mod:`theory.imbalanced_mse` (docs/theory.md section 9) for MSE with unequal classes, and the
certified convex computation of :mod:`theory.ce_convex` (docs/theory.md section 11) for
cross-entropy with unequal classes. :func:`seli` (:mod:`theory.seli`): the ``lambda -> 0``
directions of the bias-free cross-entropy optimum (Thrampoulidis et al., NeurIPS 2022).

Zero regularisation: MSE with ``d >= K`` has interpolating minimisers with free within-class
spread in the null space of ``W`` (no collapse); cross-entropy has no minimiser (the loss tends to
0 as the norms diverge). :func:`zero_regularisation_check` shows both numerically.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ufm import metrics
from ufm._linalg import full_precision
from ufm._solve import solve
from ufm._solvers import OptaxSolver
from ufm._types import Params
from ufm._validate import (
    bias_option,
    check_int,
    check_key,
    check_label_smoothing,
    float_dtype,
    is_concrete,
    positive_number,
    positive_scalar,
)
from ufm.problems import ClassificationUFM

from . import ce_convex
from .imbalanced_mse import class_sizes_of
from .imbalanced_mse import optimum_of as imbalanced_optimum_of
from .seli import seli as seli


class ClassificationOptimum(NamedTuple):
    """Closed-form optimum of a balanced classification UFM (``K x K`` Grams, samples first).

    Attributes:
        WWT: ``W W^T``. class_mean_gram: ``mu mu^T`` of the uncentred class means.
        logits: class-mean logits ``W mu_c + b`` (row ``c``). bias: ``b`` (``0`` for CE with a
        free bias, whose optimal ``b`` is any multiple of ``1``). loss: optimal value.
        scale: ``s`` (MSE) or ``t*`` (CE). kappa: ``K sqrt(n lambda_W lambda_H)``.
        zero: whether ``W = H = 0`` is optimal. self_duality: ``r = sqrt(n lambda_H/lambda_W)``
        with ``w_c = r mu_c`` (uncentred class means) in every regime.
    """

    WWT: jax.Array
    class_mean_gram: jax.Array
    logits: jax.Array
    bias: jax.Array
    loss: jax.Array
    scale: jax.Array
    kappa: jax.Array
    zero: jax.Array
    self_duality: jax.Array


def _phi(kappa):
    return jnp.where(kappa < 1, kappa - kappa**2 / 2, 0.5)


def ce_scale(K: int, s):
    """Closed-form ``t*`` of the CE scalar problem (0 when ``K s >= 1``)."""
    s = jnp.asarray(s)
    inside = (1 - (K - 1) * s) / jnp.where(s > 0, s, 1.0)
    return jnp.where(K * s < 1, (K - 1) / K * jnp.log(jnp.where(K * s < 1, inside, 1.0)), 0.0)


def ce_objective(t, K: int, s):
    """``F(t) = log(1 + (K-1) exp(-K t/(K-1))) + K s t``."""
    return jnp.log1p((K - 1) * jnp.exp(-K * t / (K - 1))) + K * s * t


def ce_scale_root(K: int, s, iters: int = 200):
    """``t*`` by bisection on ``F'(t) = K s - K/(exp(K t/(K-1)) + K - 1)`` (an independent check
    of :func:`ce_scale`); ``F`` is convex, so the root is bracketed by ``[0, t_hi]``."""
    s = jnp.asarray(s, dtype=jnp.result_type(float))

    def dF(t):
        return K * s - K / (jnp.exp(K * t / (K - 1)) + K - 1)

    hi = jnp.asarray(1.0, s.dtype)
    hi = jax.lax.while_loop(lambda h: dF(h) < 0, lambda h: 2 * h, hi)

    def body(_, lohi):
        lo, hi = lohi
        mid = 0.5 * (lo + hi)
        neg = dF(mid) < 0
        return jnp.where(neg, mid, lo), jnp.where(neg, hi, mid)

    lo, hi = jax.lax.fori_loop(0, iters, body, (jnp.zeros_like(hi), hi))
    return jnp.where(dF(0.0) >= 0, 0.0, 0.5 * (lo + hi))


@full_precision
def optimum(
    num_classes: int,
    per_class: int,
    lambda_H,
    lambda_W,
    loss: str = "mse",
    bias="none",
    dtype=None,
    label_smoothing=0.0,
) -> ClassificationOptimum:
    """The closed-form optimum for ``K = num_classes`` balanced classes of ``n = per_class``
    samples (see the module docstring for every regime). ``lambda_H, lambda_W > 0``; ``bias``
    as in :class:`ufm.ClassificationUFM` (``"none"``, ``"free"`` or a number ``lambda_b``, never
    a bool); ``dtype`` float32 or float64; ``label_smoothing`` ``delta`` in ``[0, 1)``
    (cross-entropy only, may be traced): plain cross-entropy's optimum with ``s`` replaced by
    ``s + delta/K`` (docs/theory.md section 10, :mod:`theory.label_smoothing`)."""
    K = check_int(num_classes, "num_classes", minimum=2)
    n = check_int(per_class, "per_class", minimum=1)
    if not isinstance(loss, str) or loss not in ("mse", "ce"):
        raise ValueError(f"loss must be 'mse' or 'ce', got {loss!r}")
    dt = float_dtype(dtype)
    delta = check_label_smoothing(label_smoothing, dt)
    if loss == "mse" and is_concrete(delta) and float(delta) != 0:
        raise ValueError(f"label_smoothing = {float(delta)} needs loss='ce'")
    lH = positive_scalar(lambda_H, "lambda_H", dt, "a closed-form optimum")
    lW = positive_scalar(lambda_W, "lambda_W", dt, "a closed-form optimum")
    # One shared reading of the option with ufm.ClassificationUFM: a bool is refused, not
    # read as lambda_b = 1 or 0.
    mode, lb = bias_option(bias, dt)
    eye = jnp.eye(K, dtype=dt)
    Jm = jnp.full((K, K), 1.0 / K, dt)
    C = eye - Jm
    kappa = K * jnp.sqrt(n * lW * lH)
    r = jnp.sqrt(n * lH / lW)
    zero_b = jnp.zeros((K,), dt)
    if loss == "ce":
        s = kappa / K + delta / K
        t = ce_scale(K, s)
        WWT = t * r * K / (K - 1) * C
        logits = t * K / (K - 1) * C
        return ClassificationOptimum(
            WWT, WWT / r**2, logits, zero_b, ce_objective(t, K, s), t, kappa, kappa + delta >= 1, r
        )
    s = jnp.maximum(1 - kappa, 0.0)
    if mode == "none":
        G, logits, b, f = s * eye, s * eye, zero_b, _phi(kappa)
        zero = kappa >= 1
    elif mode == "free" or (mode == "reg" and is_concrete(lb) and float(lb) == 0):
        G, logits = s * C, s * C + Jm
        b = jnp.full((K,), 1.0 / K, dt)
        f = (K - 1) / K * _phi(kappa)
        zero = kappa >= 1
    else:
        lb_safe = jnp.where(lb > 0, lb, 1.0)
        s0 = jnp.where(lb > 0, jnp.maximum(1 - kappa * (1 + 1 / lb_safe), 0.0), 0.0)
        beta = jnp.where(s0 > 0, kappa / lb_safe, 1 / (1 + lb))
        G = s * C + s0 * Jm
        logits = s * C + (s0 + beta) * Jm
        b = jnp.full((K,), 1.0, dt) * beta / K
        mean_part = jnp.where(s0 > 0, kappa - kappa**2 / 2 * (1 + 1 / lb_safe), lb / (2 * (1 + lb)))
        f = (K - 1) / K * _phi(kappa) + mean_part / K
        zero = (kappa >= 1) & (s0 <= 0)
    return ClassificationOptimum(r * G, G / r, logits, b, f, s, kappa, zero, r)


def _check_problem(problem) -> None:
    if not isinstance(problem, ClassificationUFM):
        raise TypeError(f"problem must be a ufm.ClassificationUFM, got {type(problem).__name__}")
    problem.check_unbatched()


def balanced_sizes(problem: ClassificationUFM) -> int:
    """``n`` if every class has ``n`` samples (concrete labels), else a ``ValueError``."""
    _check_problem(problem)
    counts = np.bincount(np.asarray(problem.labels), minlength=problem.num_classes)
    if not np.all(counts == counts[0]):
        raise ValueError(
            f"the closed forms need balanced classes; class sizes are {counts.tolist()}"
        )
    return int(counts[0])


class KnownOptimum(NamedTuple):
    """The global optimum of any :class:`ufm.ClassificationUFM` and how it is known
    (:func:`optimum_of`; ``K x K`` Grams).

    Attributes:
        WWT, class_mean_gram, logits, bias, loss, zero: as in :class:`ClassificationOptimum`
        (for cross-entropy with a free bias, ``bias`` is the centred one: any shift ``b + c 1``
        is optimal too). rank: rank of the class-mean logits ``H W^T`` (of ``W W^T``).
        how: ``"closed form (...)"`` or ``"certified convex computation, duality gap ..."``.
        gap: a bound on ``loss - L*`` (0 for a closed form). exact: whether ``feature_dim`` is
        at least the optimum's rank (otherwise ``loss`` is the wide problem's optimum, a lower
        bound on the width-``d`` one, and the Grams are not reachable).
        detail: the underlying result (:class:`ClassificationOptimum`,
        :class:`theory.imbalanced_mse.ImbalancedOptimum` or
        :class:`theory.ce_convex.CEOptimum`) with its own fields.
    """

    WWT: jax.Array
    class_mean_gram: jax.Array
    logits: jax.Array
    bias: jax.Array
    loss: jax.Array
    rank: int
    zero: bool
    how: str
    gap: float
    exact: bool
    detail: tuple


def _closed_rank(WWT) -> int:
    ev = np.linalg.eigvalsh(np.asarray(WWT, np.float64))
    return int(np.sum(ev > 1e-9 * max(float(ev[-1]), 0.0)))


def optimum_of(problem: ClassificationUFM) -> KnownOptimum:
    """The global optimum of any :class:`ufm.ClassificationUFM` (concrete, unbatched):

    * balanced classes: :func:`optimum` (closed forms; with label smoothing, docs/theory.md
      section 10);
    * MSE with unequal classes: :func:`theory.imbalanced_mse.optimum` (exact soft-thresholding,
      docs/theory.md section 9);
    * cross-entropy with unequal classes (any smoothing): :func:`theory.ce_convex.optimum`, a
      convex computation certified by its duality gap (docs/theory.md section 11).

    ``how`` says which, ``exact`` whether ``feature_dim`` reaches the optimum's rank."""
    _check_problem(problem)
    counts = class_sizes_of(problem)
    d = problem.feature_dim
    if not np.all(counts == counts[0]):
        if problem.loss == "ce":
            o = ce_convex.optimum_of(problem)
            known = (o.WWT, o.class_mean_gram, o.logits, o.bias, o.loss, o.rank, o.zero)
            return KnownOptimum(*known, o.how, o.gap, o.exact, o)
        o = imbalanced_optimum_of(problem)
        r = int(o.rank)
        how = "closed form (soft-thresholding, docs/theory.md section 9)"
        return KnownOptimum(
            o.WWT, o.class_mean_gram, o.logits, o.bias, o.loss, r, bool(o.zero), how, 0.0, True, o
        )
    bias = problem.bias_mode if problem.bias_mode != "reg" else problem.lambda_b
    o = optimum(
        problem.num_classes,
        int(counts[0]),
        problem.lambda_H,
        problem.lambda_W,
        problem.loss,
        bias,
        problem.dtype,
        getattr(problem, "label_smoothing", 0.0),
    )
    r = _closed_rank(o.WWT)
    section = "section 2" if problem.loss == "mse" else "sections 3 and 10"
    how = f"closed form (balanced classes, docs/theory.md {section})"
    return KnownOptimum(
        o.WWT, o.class_mean_gram, o.logits, o.bias, o.loss, r, bool(o.zero), how, 0.0, d >= r, o
    )


def balanced_labels(num_classes: int, per_class: int) -> np.ndarray:
    """``[0]*n + [1]*n + ... + [K-1]*n`` (int32)."""
    num_classes = check_int(num_classes, "num_classes", minimum=1)
    per_class = check_int(per_class, "per_class", minimum=1)
    return np.repeat(np.arange(num_classes, dtype=np.int32), per_class)


# ---------------------------------------------------------------------------------------------
# Zero regularisation
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ClassificationZeroCheck:
    """Outcome of :func:`zero_regularisation_check` (numpy arrays).

    MSE: ``loss`` ~ 0 and ``nc1`` bounded away from 0 (within-class spread survives in the null
    space of ``W``). CE: ``loss`` decreasing and ``norm`` (``||W||`` + ``||H||``) growing
    without bound along the run (recorded at ``steps``), so no minimiser exists.
    """

    loss: np.ndarray
    nc1: np.ndarray
    norm: np.ndarray
    steps: np.ndarray


def zero_regularisation_check(
    num_classes: int,
    per_class: int,
    feature_dim: int,
    loss: str,
    *,
    key=None,
    init_scale: float = 1.0,
    budgets=(100, 1000, 10000),
    lr: float = 0.5,
) -> ClassificationZeroCheck:
    """Solve the bias-free classification UFM at ``lambda_H = lambda_W = 0``.

    MSE: preconditioned L-BFGS from a random init with ``H, W ~ N(0, init_scale^2)``; reports the
    final loss and NC1 (one entry). CE: plain gradient descent on the objective as written
    (``optax.sgd(lr)``, no preconditioning) for each budget in ``budgets``; reports loss, NC1 and
    ``||W|| + ||H||`` after each budget.
    """
    K, n = num_classes, per_class
    labels = balanced_labels(K, n)
    key = jax.random.PRNGKey(0) if key is None else check_key(key)
    budgets = [check_int(b, f"budgets[{i}]", minimum=0) for i, b in enumerate(budgets)]
    init_scale = positive_number(init_scale, "init_scale")
    lr = positive_number(lr, "lr")
    p = ClassificationUFM(labels, K, 0.0, 0.0, feature_dim, loss=loss, bias="none")
    init = Params(*(x * init_scale / 0.1 for x in p.default_init(key)))
    if loss == "mse":
        sol = solve(p, "lbfgs", init=init, max_steps=5000, atol=1e-12)
        H, W, b = sol.params
        return ClassificationZeroCheck(
            np.array([float(sol.loss)]),
            np.array([float(metrics.nc1(H, labels, K))]),
            np.array([float(jnp.linalg.norm(W) + jnp.linalg.norm(H))]),
            np.array([int(sol.num_steps)]),
        )
    import optax

    out = []
    for steps in budgets:
        gd = OptaxSolver(optax.sgd(lr), precondition=False)
        sol = solve(p, gd, init=init, max_steps=steps, rtol=0.0, atol=0.0)
        H, W, b = sol.params
        out.append(
            (
                float(sol.loss),
                float(metrics.nc1(H, labels, K)),
                float(jnp.linalg.norm(W) + jnp.linalg.norm(H)),
                int(sol.num_steps),
            )
        )
    arr = np.array(out)
    return ClassificationZeroCheck(arr[:, 0], arr[:, 1], arr[:, 2], arr[:, 3].astype(int))
