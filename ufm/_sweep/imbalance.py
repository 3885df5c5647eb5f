"""The imbalance ratio of a two-level step imbalance as a sweep's grid key, and the
minority-collapse columns.

A **two-level step imbalance** (Fang et al., PNAS 2021) has ``K_A`` majority classes of ``n_A``
samples and ``K_B`` minority classes of ``n_B <= n_A``; its **imbalance ratio** is

    R = n_A / n_B        (R = 1: balanced; R > 1: the minority has n_B = n_A / R samples).

The grid key ``"imbalance_ratio"`` takes the step from the sweep's problem (a
:class:`ufm.ClassificationUFM` whose classes have two sizes, or one size with the minority named
by ``minority=``), keeps ``K_A``, ``n_A`` and ``K_B`` and which classes are the minority, and sets
``n_B = n_A / R`` at each value; ``n_A / R`` must be a whole number (e.g. ``n_A = 100``,
``R`` in 1, 2, 4, 5, 10, 20, 25, 50, 100), so that every point is a problem with integer class
sizes and an exact reference.

A ratio changes the labels' shape ``(N,)`` and the closed form's class sizes (a static part of
the problem's :class:`theory.Reference`), so the sweep groups its points by ratio and compiles
once per ratio; the lambdas, ``lambda_b`` and ``label_smoothing`` stay traced within a group.

Columns (whenever the problem is a two-level step with ``K_B >= 2``, or the ratio is swept),
from the classifier's rows ``w_k`` (:func:`ufm.metrics.minority_collapse`):

* ``minority_cos``: the smallest cosine ``<w_j, w_k> / (|w_j| |w_k|)`` over pairs of minority
  classes; 1 exactly when every minority row points the same way (minority collapse); NaN when
  a minority row is zero (``|w_k| <= 1e-6 max(max_j |w_j|, s)``, ``s^2 = sqrt(N/K
  lambda_H/lambda_W)`` the size of ``W W^T`` at a balanced optimum: the class died).
* ``minority_norm_ratio``: the mean over minority rows of ``|w_k|`` over the majority rows' mean
  norm; NaN when every row is zero (``W = 0``).
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from theory import ce_convex, imbalanced_mse

from .. import metrics
from ..problems import ClassificationUFM

RATIO = "imbalance_ratio"
#: Grid keys that change the problem's shapes: the sweep compiles once per value.
STRUCTURAL = (RATIO,)
COLUMNS = ("minority_cos", "minority_norm_ratio")
_ZERO_ROW = 1e-6


class Step(NamedTuple):
    """A two-level step imbalance: class sizes ``sizes`` with the ``minority`` classes
    (indices) of ``n_B`` and the others of ``n_A``."""

    sizes: tuple[int, ...]
    minority: tuple[int, ...]

    @property
    def majority(self) -> tuple[int, ...]:
        return tuple(k for k in range(len(self.sizes)) if k not in self.minority)

    @property
    def n_A(self) -> int:
        return self.sizes[self.majority[0]]

    @property
    def K_A(self) -> int:
        return len(self.majority)

    @property
    def K_B(self) -> int:
        return len(self.minority)

    def sizes_at(self, ratio: float) -> tuple[int, ...]:
        """Class sizes at imbalance ratio ``ratio`` (``n_B = n_A / ratio``)."""
        n_B = minority_size(self.n_A, ratio)
        return tuple(n_B if k in self.minority else n for k, n in enumerate(self.sizes))


def class_sizes(problem) -> tuple[int, ...] | None:
    """A :class:`ufm.ClassificationUFM`'s concrete class sizes (``None`` for other problems;
    a ``ValueError`` for an empty class, :func:`theory.imbalanced_mse.class_sizes_of`)."""
    if not isinstance(problem, ClassificationUFM):
        return None
    return tuple(int(c) for c in imbalanced_mse.class_sizes_of(problem))


def step_of(problem, minority=None) -> Step | None:
    """The two-level step of ``problem`` (``None`` when its classes are not one): the classes
    of the smaller of two sizes are the minority; with ``minority`` (class indices) given,
    those classes must share one size and the others another size at least as large."""
    sizes = class_sizes(problem)
    if sizes is None:
        return None
    if minority is not None:
        minority = tuple(sorted(int(k) for k in minority))
        if not minority or len(set(minority)) != len(minority):
            raise ValueError(f"minority must list distinct class indices, got {minority}")
        if minority[0] < 0 or minority[-1] >= len(sizes) or len(minority) == len(sizes):
            raise ValueError(
                f"minority must be indices in [0, {len(sizes)}) leaving a majority, got "
                f"{list(minority)}"
            )
        step = Step(sizes, minority)
        if len({sizes[k] for k in minority}) != 1 or len({sizes[k] for k in step.majority}) != 1:
            raise ValueError(
                f"minority={list(minority)}: the minority classes and the majority classes must "
                f"each share one size, got class sizes {list(sizes)}"
            )
        if sizes[minority[0]] > step.n_A:
            raise ValueError(f"minority={list(minority)} names the larger classes ({sizes})")
        return step
    distinct = sorted(set(sizes))
    if len(distinct) != 2:
        return None
    return Step(sizes, tuple(k for k, n in enumerate(sizes) if n == distinct[0]))


def minority_size(n_A: int, ratio: float) -> int:
    """``n_B = n_A / ratio``, a whole number ``>= 1`` (else a ``ValueError`` naming the grid key
    and the ratios that divide ``n_A``)."""
    n_B = n_A / ratio if ratio >= 1 else 0.0
    k = round(n_B)
    if k < 1 or abs(n_B - k) > 1e-9 * max(n_B, 1):
        whole = [r for r in range(1, n_A + 1) if n_A % r == 0]
        raise ValueError(
            f"grid[{RATIO!r}] = {ratio:g}: the minority size n_B = n_A / R = {n_A} / {ratio:g} "
            f"must be a whole number >= 1 (R >= 1); with n_A = {n_A} take e.g. R in "
            f"{whole[:12]}"
        )
    return k


def check_ratios(problem, values: np.ndarray, minority=None) -> Step:
    """The step of ``problem`` for a swept ratio (a clear error when it has none)."""
    step = step_of(problem, minority)
    if step is None:
        raise ValueError(
            f"grid[{RATIO!r}] needs a ufm.ClassificationUFM with a two-level step imbalance "
            "(K_A classes of n_A samples and K_B classes of a smaller n_B), or minority=[class "
            "indices] to name the minority classes of a balanced problem; got class sizes "
            f"{class_sizes(problem)}"
        )
    for r in values:
        minority_size(step.n_A, float(r))
    return step


def problem_at(problem, step: Step, ratio: float):
    """``problem`` with the class sizes of ``step`` at ``ratio`` (labels in class order)."""
    sizes = step.sizes_at(ratio)
    labels = jnp.asarray(np.repeat(np.arange(len(sizes), dtype=np.int32), sizes))
    leaves, aux = problem._flatten()
    new = dict(zip(problem._leaves, leaves, strict=True))
    new["labels"] = labels
    return type(problem)._unflatten(aux, tuple(new[k] for k in problem._leaves))


def at(problem, step: Step | None, structural: dict):
    """``problem`` at the structural grid values ``{key: value}`` (the class sizes of an
    imbalance ratio); ``problem`` itself without structural keys."""
    if RATIO in structural:
        return problem_at(problem, step, structural[RATIO])
    return problem


def minority_columns(problem, W, minority: tuple[int, ...]) -> dict:
    """``minority_cos`` and ``minority_norm_ratio`` (module docstring) of a classification
    ``problem``'s classifier ``W (K, r)`` (rows per class; any orthonormal coordinates), from
    :func:`ufm.metrics.minority_collapse`."""
    K = W.shape[0]
    m = metrics.minority_collapse(W, minority)
    off = ~jnp.eye(len(minority), dtype=bool)
    smallest = jnp.min(jnp.where(off, m["cosines"], jnp.inf))
    # W W^T's natural size, sqrt(N/K lambda_H/lambda_W) (the balanced optimum's at kappa = 0):
    # a row is zero below 1e-6 of the larger of the largest row norm and its square root.
    # (0 where lambda_W = 0, which leaves the largest row norm as the only scale.)
    scale = jnp.sqrt(jnp.sqrt(problem.num_samples / K * problem.lambda_H / problem.lambda_W))
    scale = jnp.where(jnp.isfinite(scale), scale, 0.0)
    norms = jnp.sqrt(jnp.sum(W**2, axis=1))
    dead = jnp.any(norms[jnp.asarray(minority)] <= _ZERO_ROW * jnp.maximum(jnp.max(norms), scale))
    nan = jnp.full((), jnp.nan, W.dtype)
    return {
        "minority_cos": jnp.where(dead, nan, jnp.minimum(smallest, 1.0)),
        "minority_norm_ratio": jnp.where(
            jnp.max(norms) <= _ZERO_ROW * scale, nan, m["mean_norm_ratio"]
        ),  # fmt: skip
    }


def minority_collapse_curves(info: dict, ratio_range) -> list[dict]:
    """The predicted boundaries of minority collapse for ``table.meta["imbalance"]``
    (``K_A``, ``n_A``, ``K_B``, ``loss``, ``bias``) at every ratio ``R = n_A / n_B`` with a
    whole ``n_B`` in ``ratio_range``: ``{"label", "lambda", "ratio"}`` curves (``lambda =
    sqrt(lambda_H lambda_W)``). MSE, free bias: the exact window
    (:func:`theory.imbalanced_mse.minority_collapse_window`); MSE without bias: the death
    level ``sqrt(n_B) / N``; cross-entropy, every bias mode: the exact level ``(1 - delta)
    sqrt(n_B) / N`` from which the minority rows coincide
    (:func:`theory.ce_convex.coincidence_level`; ``delta`` the label smoothing, the one of
    ``info`` or 0, the level that :func:`theory.ce_convex.minority_collapse_threshold` finds by
    bisection on certified optima); an MSE regularised bias: none."""
    if not info or info.get("loss") not in ("mse", "ce") or info.get("K_B", 0) < 2:
        return []
    K_A, n_A, K_B = int(info["K_A"]), int(info["n_A"]), int(info["K_B"])
    lo, hi = float(np.min(ratio_range)), float(np.max(ratio_range))
    n_B = np.array([m for m in range(1, n_A) if lo <= n_A / m <= hi], dtype=np.int64)
    if n_B.size == 0:
        return []
    ratio = n_A / n_B
    N = K_A * n_A + K_B * n_B
    if info["loss"] == "ce":
        delta = float(info.get("label_smoothing", 0.0))
        level = [
            ce_convex.coincidence_level([n_A] * K_A + [int(m)] * K_B, int(m), delta) for m in n_B
        ]
        label = "collapse starts: lambda = (1 - delta) sqrt(n_B) / N" if delta else (
            "collapse starts: lambda = sqrt(n_B) / N"
        )  # fmt: skip
        return [{"label": label, "ratio": ratio, "lambda": np.array(level)}]
    if info.get("bias") == "free":
        win = [imbalanced_mse.minority_collapse_window(K_A, n_A, K_B, int(m)) for m in n_B]
        return [
            {"label": "collapse starts: lambda^2 = n_B / N^2", "ratio": ratio,
             "lambda": np.array([w.lambda_low for w in win])},
            {"label": "minority dies: lambda^2 = K n_A n_B / N^3", "ratio": ratio,
             "lambda": np.array([w.lambda_high for w in win]), "ls": ":"},
        ]  # fmt: skip
    if info.get("bias") == "none":
        return [{"label": "minority dies: lambda^2 = n_B / N^2", "ratio": ratio,
                 "lambda": np.sqrt(n_B) / N, "ls": ":"}]  # fmt: skip
    return []


def meta(step: Step, problem) -> dict:
    """``table.meta["imbalance"]``: the step and what its predicted boundaries need."""
    return {
        "K_A": step.K_A, "n_A": step.n_A, "K_B": step.K_B, "minority": list(step.minority),
        "class_sizes": list(step.sizes), "loss": problem.loss, "bias": problem.bias_mode,
        "lambda_H": float(problem.lambda_H), "lambda_W": float(problem.lambda_W),
        "feature_dim": problem.feature_dim,
        "label_smoothing": float(getattr(problem, "label_smoothing", 0.0)),
    }  # fmt: skip
