r"""Closed-form global optimum of the balanced cross-entropy UFM with label smoothing.

Setting (:class:`ufm.ClassificationUFM` with ``loss="ce"``, ``label_smoothing=delta``): ``K``
classes of ``n`` samples, ``N = K n``, samples first, data term averaged over ``N``, feature
penalty ``lambda_H/2 ||H||^2`` not divided by ``N``; PyTorch's convention for the smoothed
targets (``torch.nn.CrossEntropyLoss(label_smoothing=delta)``; Szegedy et al., CVPR 2016),
``q_i = (1 - delta) e_{y_i} + (delta/K) 1``::

    L = (1/N) sum_i [logsumexp(z_i) - q_i . z_i] + lambda_H/2 ||H||^2 + lambda_W/2 ||W||^2
        [+ lambda_b/2 ||b||^2],        z_i = W h_i + b,   0 <= delta < 1.

Other conventions map to this one with ``ufm.convert_label_smoothing``.

Result (docs/theory.md section 10; derived here, re-derived in sympy by
:mod:`theory.symbolic_smoothing`; the setting of Guo et al., "Cross Entropy versus Label
Smoothing: A Neural Collapse Perspective", TMLR 2025). With ``s = sqrt(n lambda_W lambda_H)``
and ``r = sqrt(n lambda_H / lambda_W)``, in every bias mode (none, free, ``lambda_b >= 0``) and
for ``feature_dim >= K - 1``, the optimum is the self-dual simplex ETF of plain cross-entropy
(docs/theory.md section 3) with its logit scale ``t`` (the true-class logit; the others are
``-t/(K-1)``) minimising::

    F(t) = log(1 + (K-1) exp(-K t/(K-1))) + (K s + delta) t,

i.e. plain cross-entropy's ``F`` with ``s`` replaced by ``s_delta = s + delta/K``:

* ``F'(t) = 0`` iff ``exp(K t/(K-1)) = (K - (K-1)(K s + delta)) / (K s + delta)``, so
  ``t* = ((K-1)/K) log((K - (K-1)(K s + delta)) / (K s + delta))`` when ``K s + delta < 1``,
  and ``t* = 0`` (``W = H = 0``, ``L* = log K``) exactly when ``K s + delta >= 1``
  (``F'(0) = K s + delta - 1``);
* ``L* = F(t*) = -log(1 - (K-1) s_delta) + (K-1) s_delta log((1 - (K-1) s_delta)/s_delta)``;
* ``W W^T = t r K/(K-1) (I - J)``, ``mu mu^T = W W^T / r^2``, class-mean logits
  ``t K/(K-1) (I - J)`` (``J = 1 1^T / K``), ``b = 0`` (any multiple of ``1`` with a free bias);
* the margin ``z_true - z_other = K t*/(K-1)`` tends, as ``lambda_H lambda_W -> 0``, to the
  finite :func:`limit_margin` ``log(1 + K(1 - delta)/delta)`` (plain cross-entropy's diverges):
  the logits' softmax then equals ``q``, and ``L*`` tends to the entropy of ``q``
  (:func:`limit_loss`).

Why (docs/theory.md sections 0 and 3). For ``lambda_H > 0`` every stationary point is
class-collapsed, and the problem in the class-mean logits ``Zbar (K x K)`` and ``b`` is convex
(the penalties become ``sqrt(n lambda_W lambda_H) ||Zbar||_*``), invariant under relabelling
the classes (``Zbar -> P Zbar P^T``, ``b -> P b``) and, without bias, under ``z_i -> z_i + c 1``
(``q_i . 1 = 1``). Averaging a minimiser over the relabellings gives ``Zbar = a I + c 1 1^T``
and ``b`` a multiple of ``1`` (``0`` when regularised); the shift and the nuclear norm put
``c = -a/K``: ``Zbar = a (I - J)``, nuclear norm ``(K - 1)|a|`` and penalty ``K s t`` at
``t = a (K-1)/K``. On the ETF ``q . z = (1 - delta) t`` (the ETF rows sum to 0), so the data
term is ``log(1 + (K-1) exp(-K t/(K-1))) + delta t``: ``F`` above. ``F`` is convex and
decreasing for ``t < 0``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ufm._linalg import full_precision
from ufm._validate import (
    check_int,
    check_label_smoothing,
    is_concrete,
)
from ufm.problems.classification import ClassificationUFM

from .classification import (
    ClassificationOptimum,
    balanced_sizes,
    ce_scale_root,
)
from .classification import optimum as classification_optimum

__all__ = ["limit_loss", "limit_margin", "optimum", "optimum_of", "scale_root"]


@full_precision
def optimum(
    num_classes: int,
    per_class: int,
    lambda_H,
    lambda_W,
    label_smoothing,
    feature_dim: int,
    bias="none",
    dtype=None,
) -> ClassificationOptimum:
    r"""The global optimum of the balanced smoothed cross-entropy UFM (module docstring).

    Args:
        num_classes: ``K >= 2``. per_class: ``n >= 1``.
        lambda_H, lambda_W: real scalars > 0.
        label_smoothing: ``delta`` in ``[0, 1)``, PyTorch's convention.
        feature_dim: ``d >= K - 1`` (the optimum is a rank ``K - 1`` simplex ETF); smaller
            ``d`` is a ``ValueError``.
        bias: ``"none"``, ``"free"`` or a number ``lambda_b >= 0`` (the optimum does not
            depend on it; checked as :class:`ufm.ClassificationUFM` checks it).
        dtype: float32 or float64.

    Returns :class:`theory.classification.ClassificationOptimum` with the fields of the plain
    cross-entropy optimum: ``scale = t*``, ``kappa = K sqrt(n lambda_W lambda_H)`` (without
    ``delta``), ``zero = (K s + delta >= 1)``, ``bias = 0``, ``self_duality = r``.
    """
    K = check_int(num_classes, "num_classes", minimum=2)
    n = check_int(per_class, "per_class", minimum=1)
    d = check_int(feature_dim, "feature_dim", minimum=1)
    if d < K - 1:
        raise ValueError(
            f"feature_dim = {d} < K - 1 = {K - 1}: the smoothed cross-entropy optimum is a "
            "simplex ETF of rank K - 1, which needs feature_dim >= K - 1"
        )
    # One owner of the formula: theory.classification.optimum with label_smoothing (it checks
    # the lambdas, the bias option and delta the same way).
    return classification_optimum(
        K, n, lambda_H, lambda_W, "ce", bias, dtype, label_smoothing=label_smoothing
    )


def optimum_of(problem: ClassificationUFM) -> ClassificationOptimum:
    """:func:`optimum` for a balanced :class:`ufm.ClassificationUFM` with ``loss="ce"``
    (its ``label_smoothing``, bias, lambdas, ``feature_dim`` and dtype); unequal classes or
    ``loss="mse"`` are a ``ValueError``."""
    n = balanced_sizes(problem)
    if problem.loss != "ce":
        raise ValueError(f"label smoothing is defined for loss='ce', got loss={problem.loss!r}")
    bias = problem.bias_mode if problem.bias_mode != "reg" else problem.lambda_b
    return optimum(
        problem.num_classes,
        n,
        problem.lambda_H,
        problem.lambda_W,
        problem.label_smoothing,
        problem.feature_dim,
        bias,
        problem.dtype,
    )


def scale_root(num_classes: int, s, label_smoothing, iters: int = 200) -> jax.Array:
    """``t*`` by bisection on ``F'(t) = K s + delta - K/(exp(K t/(K-1)) + K - 1)`` (an
    independent check of the closed form used by :func:`optimum`)."""
    K = check_int(num_classes, "num_classes", minimum=2)
    delta = jnp.asarray(label_smoothing, jnp.result_type(float))
    return ce_scale_root(K, jnp.asarray(s, delta.dtype) + delta / K, iters)


def _limit_delta(num_classes, label_smoothing) -> tuple[int, np.ndarray]:
    K = check_int(num_classes, "num_classes", minimum=2)
    if not is_concrete(label_smoothing):
        raise ValueError("label_smoothing must be a concrete number for the limit (not traced)")
    delta = np.asarray(check_label_smoothing(label_smoothing, np.float64))
    if not delta > 0:
        raise ValueError(
            f"label_smoothing must be in (0, 1) for a finite limit, got {float(delta)} (plain "
            "cross-entropy's margin diverges as lambda -> 0)"
        )
    return K, delta


def limit_margin(num_classes: int, label_smoothing) -> float:
    """The class-mean logit margin ``z_true - z_other`` of the optimum as
    ``lambda_H lambda_W -> 0`` (any ratio ``lambda_H/lambda_W``):
    ``log(1 + K (1 - delta)/delta)`` for ``0 < delta < 1``, the log-ratio of the smoothed
    targets ``(1 - delta + delta/K)/(delta/K)``. ``delta = 0`` is a ``ValueError`` (the margin
    of plain cross-entropy diverges)."""
    K, delta = _limit_delta(num_classes, label_smoothing)
    return float(np.log1p(K * (1 - delta) / delta))


def limit_loss(num_classes: int, label_smoothing) -> float:
    """The optimal loss as ``lambda_H lambda_W -> 0``: the entropy of the smoothed target
    ``q = (1 - delta + delta/K, delta/K, ...)`` (the data term's minimum, reached with
    ``softmax(z) = q`` at the finite :func:`limit_margin`)."""
    K, delta = _limit_delta(num_classes, label_smoothing)
    p, o = 1 - delta + delta / K, delta / K
    return float(-p * np.log(p) - (K - 1) * o * np.log(o))
