r"""Converters from the other loss normalisations in the literature to ufm's.

A *convention* writes the regression UFM objective as

    a ||H W^T + 1 b^T - Y||_F^2 + a_H lambda_H' ||H||_F^2 + a_W lambda_W' ||W||_F^2

with coefficients that depend on ``M`` (samples) and ``n`` (target dimension). Ours
(Andriopoulos et al., NeurIPS 2024, eq. 1) is ``a = 1/(2M)``, ``a_H = 1/(2M)``, ``a_W = 1/2``.
Dividing a convention's objective by ``2 M a`` gives ours, with

    lambda_H = a_H lambda_H' / a,      lambda_W = a_W lambda_W' / (M a),

so both have the same minimisers and ``their objective = 2 M a * ours``.

Named conventions (:data:`CONVENTIONS`):

``"andriopoulos2024"``
    Ours: ``1/(2M)||E||^2 + lambda_H/(2M)||H||^2 + lambda_W/2||W||^2`` (paper eq. 1).
``"element_mean"``
    ``1/(2Mn)||E||^2 + lambda_H/(2M)||H||^2 + lambda_W/2||W||^2``: the authors' MuJoCo code
    (Konokiii/NC_regression) uses ``0.5 * F.mse_loss``, which also averages over the ``n``
    target coordinates. Maps to ``lambda = n lambda'`` for both (docs/theory.md, normalisation
    traps).
``"feature_penalty_sum"``
    ``1/(2M)||E||^2 + lambda_H/2||H||^2 + lambda_W/2||W||^2``: the feature penalty is not
    divided by the number of samples, as in the classification UFMs of Tirer & Bruna (ICML 2022),
    Zhu et al. (NeurIPS 2021) and the deep-linear UFM code (Fsoft-AIC/
    Neural-Collapse-in-Deep-Linear-Networks). Maps to ``lambda_H = M lambda_H'``.
``"no_half"``
    ``1/M||E||^2 + lambda_H/M||H||^2 + lambda_W||W||^2``: every 1/2 dropped, as in the
    population-risk form of the UFM with sum-normalised squared loss and unhalved ridge
    penalties (e.g. Mixon, Parshall & Pi, arXiv 2011.11619, write the unregularised loss
    without the 1/2). This is twice ours with the same lambdas: the map is the identity and only
    the objective doubles; we list it so that nobody halves or doubles lambdas by mistake.

Label smoothing (:func:`convert_label_smoothing`): ufm's ``label_smoothing = delta`` is
PyTorch's (target ``1 - delta + delta/K`` on the true class, ``delta/K`` elsewhere); a
convention with ``1 - delta`` on the true class and ``delta/(K-1)`` elsewhere (fairseq) maps
to ``delta' = delta K/(K-1)``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import jax
import numpy as np

from ._validate import check_finite, check_int, check_real_dtype, is_concrete


@dataclasses.dataclass(frozen=True)
class Convention:
    """Coefficients ``(a, a_H, a_W)`` of a normalisation, as functions of ``(M, n)``."""

    data: Callable[[int, int], float]
    feature: Callable[[int, int], float]
    weight: Callable[[int, int], float]
    source: str = ""


CONVENTIONS: dict[str, Convention] = {
    "andriopoulos2024": Convention(
        lambda M, n: 1 / (2 * M),
        lambda M, n: 1 / (2 * M),
        lambda M, n: 0.5,
        "Andriopoulos et al., NeurIPS 2024, eq. 1 (ours)",
    ),
    "element_mean": Convention(
        lambda M, n: 1 / (2 * M * n),
        lambda M, n: 1 / (2 * M),
        lambda M, n: 0.5,
        "Konokiii/NC_regression: 0.5 * F.mse_loss (mean over the M n entries)",
    ),
    "feature_penalty_sum": Convention(
        lambda M, n: 1 / (2 * M),
        lambda M, n: 0.5,
        lambda M, n: 0.5,
        "Tirer & Bruna (ICML 2022), Zhu et al. (NeurIPS 2021), Súkeník et al. (NeurIPS 2023, "
        "deep UFM): lambda_H/2 ||H||^2",
    ),
    "no_half": Convention(
        lambda M, n: 1 / M,
        lambda M, n: 1 / M,
        lambda M, n: 1.0,
        "every 1/2 dropped: objective = 2 x ours, same lambdas",
    ),
}


def _convention(convention: str | Convention) -> Convention:
    if isinstance(convention, Convention):
        return convention
    if not isinstance(convention, str):
        raise TypeError(
            f"convention must be one of {sorted(CONVENTIONS)} or a ufm.Convention, got "
            f"{convention!r} of type {type(convention).__name__}"
        )
    if convention not in CONVENTIONS:
        raise ValueError(
            f"convention must be one of {sorted(CONVENTIONS)} or a ufm.Convention, "
            f"got {convention!r}"
        )
    return CONVENTIONS[convention]


def _lambda(x, name: str):
    """A lambda to convert: a real number or a numpy/JAX array of them (converted element by
    element), >= 0 and finite when concrete; returned as given."""
    if isinstance(x, bool | np.bool_) or not isinstance(
        x, int | float | np.integer | np.floating | np.ndarray | jax.Array
    ):
        raise TypeError(
            f"{name} must be a real number or a numpy/JAX array of them, got {x!r} of type "
            f"{type(x).__name__}"
            + (" (use np.asarray for several values)" if isinstance(x, list | tuple) else "")
        )
    if isinstance(x, np.ndarray | jax.Array):
        check_real_dtype(x.dtype, name, allow_bool=False, allow_low=True)
    if is_concrete(x):
        check_finite(np.asarray(x), name)
        if np.any(np.asarray(x) < 0):
            raise ValueError(f"{name} must be >= 0, got {x!r}")
    return x


def convert_lambdas(
    lambda_H,
    lambda_W,
    convention: str | Convention,
    *,
    num_samples: int,
    target_dim: int,
    to: str = "regression",
):
    """Map a convention's ``(lambda_H', lambda_W')`` to ufm's.

    ``to="regression"`` gives :class:`ufm.RegressionUFM`'s lambdas (``"andriopoulos2024"``);
    ``to="classification"`` gives :class:`ufm.ClassificationUFM`'s, whose feature penalty is not
    divided by ``N`` (the ``"feature_penalty_sum"`` convention): e.g. a paper that writes
    ``lambda_H'/(2N) ||H||^2`` maps to ``lambda_H = lambda_H' / N``. ``to="deep"`` gives
    :class:`ufm.DeepUFM`'s (Tirer & Bruna 2022, Súkeník et al. 2023: ``1/(2N)||Z - Y||^2 +
    lambda_H/2 ||H||^2 + sum_l lambda_W_l/2 ||W_l||^2``), the same map as classification with
    every layer's ``lambda_W_l`` converted like ``lambda_W`` (pass an array of ``L`` values).

    Returns ``(lambda_H, lambda_W, objective_scale)`` with
    ``their objective = objective_scale * ufm's objective`` at every ``(H, W, b)``.

    ``lambda_H``, ``lambda_W``: real numbers >= 0 or numpy/JAX arrays of them (converted
    element by element; not lists or strings); ``num_samples``, ``target_dim``: ints >= 1
    (numpy integers accepted).

    Example::

        lH, lW, _ = ufm.convert_lambdas(1e-3, 1e-3, "element_mean", num_samples=M, target_dim=n)
        problem = ufm.RegressionUFM(Y, lH, lW, feature_dim=256)
    """
    targets = {
        "regression": "andriopoulos2024",
        "classification": "feature_penalty_sum",
        "deep": "feature_penalty_sum",
    }
    if not isinstance(to, str) or to not in targets:
        raise ValueError(f"to must be 'regression', 'classification' or 'deep', got {to!r}")
    conv, ours = _convention(convention), CONVENTIONS[targets[to]]
    M = check_int(num_samples, "num_samples", minimum=1)
    n = check_int(target_dim, "target_dim", minimum=1)
    lambda_H = _lambda(lambda_H, "lambda_H")
    lambda_W = _lambda(lambda_W, "lambda_W")
    # Scale their objective by s = a*/a so that the data terms agree, then match the penalties.
    a, a_H, a_W = conv.data(M, n), conv.feature(M, n), conv.weight(M, n)
    for name, v in (("data", a), ("feature", a_H), ("weight", a_W)):
        if not (
            isinstance(v, int | float | np.integer | np.floating) and math.isfinite(v) and v > 0
        ):
            raise ValueError(
                f"convention {convention!r}: its {name} coefficient at (M, n) = ({M}, {n}) must "
                f"be a finite number > 0, got {v!r}"
            )
    s = ours.data(M, n) / a
    lH = s * a_H * lambda_H / ours.feature(M, n)
    lW = s * a_W * lambda_W / ours.weight(M, n)
    return lH, lW, 1.0 / s


#: Label-smoothing conventions: ``name -> (c(K), source)``, where ``c(K) delta`` is the target
#: mass a strength ``delta`` moves off the true class (spread evenly over the other ``K - 1``
#: classes); :func:`convert_label_smoothing` maps between them.
LABEL_SMOOTHING_CONVENTIONS: dict[str, tuple[Callable[[int], float], str]] = {
    "pytorch": (
        lambda K: (K - 1) / K,
        "torch.nn.CrossEntropyLoss(label_smoothing=delta), Keras/optax label smoothing, "
        "Szegedy et al. (CVPR 2016), Mueller et al. (NeurIPS 2019): (1 - delta) one-hot + "
        "delta uniform over the K classes (ours)",
    ),
    "off_target": (
        lambda K: 1.0,
        "1 - delta on the true class, delta/(K-1) on each other class (fairseq's "
        "label_smoothed_cross_entropy, wenet's LabelSmoothingLoss)",
    ),
}


def convert_label_smoothing(delta, convention: str, *, num_classes: int, to: str = "pytorch"):
    r"""Map a label-smoothing strength ``delta`` written in ``convention`` to the same soft
    targets written in ``to`` (default ``"pytorch"``: :class:`ufm.ClassificationUFM`'s
    ``label_smoothing``).

    Conventions (:data:`LABEL_SMOOTHING_CONVENTIONS`), for ``K`` classes:

    * ``"pytorch"``: target ``1 - delta + delta/K`` on the true class, ``delta/K`` elsewhere
      (``torch.nn.CrossEntropyLoss(label_smoothing=delta)``; Szegedy et al., CVPR 2016);
    * ``"off_target"``: ``1 - delta`` on the true class, ``delta/(K-1)`` elsewhere (fairseq).

    Both move the mass ``m`` off the true class, spread evenly: ``m = delta (K-1)/K`` (pytorch)
    and ``m = delta`` (off_target), so ``delta_pytorch = K/(K-1) delta_off_target``.

    ``delta``: a real number or numpy/JAX array (element by element), >= 0 and finite; the
    result must be a PyTorch strength in ``[0, 1)`` (the true class keeps more
    than the uniform ``1/K``), else a ``ValueError``.

    Example::

        d = ufm.convert_label_smoothing(0.1, "off_target", num_classes=10)  # 0.111...
        problem = ufm.ClassificationUFM(y, 10, lH, lW, 16, loss="ce", label_smoothing=d)
    """
    K = check_int(num_classes, "num_classes", minimum=2)
    for name, value in (("convention", convention), ("to", to)):
        if not isinstance(value, str) or value not in LABEL_SMOOTHING_CONVENTIONS:
            raise ValueError(
                f"{name} must be one of {sorted(LABEL_SMOOTHING_CONVENTIONS)}, got {value!r}"
            )
    delta = _lambda(delta, "delta")
    c_from = LABEL_SMOOTHING_CONVENTIONS[convention][0](K)
    c_torch = LABEL_SMOOTHING_CONVENTIONS["pytorch"][0](K)
    mass = delta * c_from
    if is_concrete(mass) and np.any(np.asarray(mass) >= c_torch):
        raise ValueError(
            f"delta = {delta!r} in the {convention!r} convention leaves a target <= 1/K on the "
            f"true class (a PyTorch strength >= 1); it must be < {c_torch / c_from:g} for "
            f"K = {K}"
        )
    return mass / LABEL_SMOOTHING_CONVENTIONS[to][0](K)
