r"""Closed-form global optima of the deep / extended UFM (linear exactly; ReLU where established).

Model (samples first; Tirer & Bruna, ICML 2022, Sec. 4; Súkeník, Mondelli, Lampert, NeurIPS
2023). Targets ``Y (N, n)``, ``widths = (d_1, ..., d_L)``, ``H (N, d_1)``, ``W_l (d_{l+1}, d_l)``
for ``l < L`` and ``W_L (n, d_L)``; ``X_1 = H``, ``X_{l+1} = sigma(X_l W_l^T)``,
``Z = X_L W_L^T (+ 1 b^T)`` with ``sigma`` the identity (``"linear"``) or ReLU and ``b`` free::

    f = 1/(2N) ||Z - Y||_F^2 + lambda_H/2 ||H||_F^2 + sum_l lambda_{W_l}/2 ||W_l||_F^2

``widths = (d,)`` is the ordinary UFM (no activation is applied): ``theory.regression`` with
``lambda_H(regression) = N lambda_H`` and, for one-hot targets, ``theory.classification``.

Linear model, any targets (exact; docs/theory.md section 0 item 5 with ``P = L + 1`` factors,
section 6). A free bias is eliminated by centring: ``Yc = Y - 1 ybar^T``, ``b* = ybar``
(``Yc = Y`` and ``b = 0`` without bias). Let ``Yc = V diag(y) U^T`` (compact SVD, ``y`` descending),
``alpha = 1/N``, ``beta = (lambda_H, lambda_W_1, ..., lambda_W_L)`` and
``gamma = (prod beta)^{1/P}``. The smallest penalty of a product with singular values ``sigma_i``
is ``(P/2) gamma sum sigma_i^{2/P}``, so each direction solves
``g(sigma) = (alpha/2)(sigma - y_i)^2 + (P/2) gamma sigma^{2/P}`` (:mod:`theory._deep_scalar`):
with ``kappa_i = gamma y_i^{2/P-2} / alpha``, ``sigma_i* = y_i s_i`` where ``s_i`` is 0 or the
largest root of ``s^{1-2/P}(1 - s) = kappa_i``, compared by value (nonzero iff
``kappa_i < kappa_P^crit``; first-order jump to ``(P-2)/(P-1)`` for ``P >= 3``). At most
``min(widths)`` directions fit: the top ones are kept (the gain of a direction grows with
``y``); with a tie at the cap the minimiser is not unique. ``Z* = sum_kept sigma_i v_i u_i^T``.
Balanced factors: ``beta_j ||A_j||^2`` is the same for every factor, ``lambda_W_l W_l^T W_l =
lambda_W_{l-1} W_{l-1} W_{l-1}^T`` and ``lambda_W_1 W_1^T W_1 = lambda_H H^T H``; with
``c_1 = gamma/lambda_H``, ``c_{l+1} = gamma/lambda_W_l`` and ``C_l = c_1 ... c_l``:

* ``X_l X_l^T = C_l V diag(sigma^{2l/P}) V^T = Yc K_l Yc^T`` with the core
  ``K_l = U diag(C_l sigma^{2l/P} / y^2) U^T`` (unique; ``X_1 = H``);
* ``W_l W_l^T`` has the nonzero eigenvalues ``c_{l+1} sigma_i^{2/P}`` (the matrices of inner
  layers are unique only up to rotations), ``W_L W_L^T = c_{L+1} U diag(sigma^{2/P}) U^T``;
* ``||H||^2 = c_1 sum sigma^{2/P}``, ``||W_l||^2 = c_{l+1} sum sigma^{2/P}``;
* ``f* = sum_i (y_i^2/N) h(s_i)``, ``h(s) = (s - 1)^2/2 + (P/2) kappa s^{2/P}`` (``h(0) = 1/2``).

ReLU (``L >= 2``), balanced one-hot targets ``Y = E`` (``K`` classes of ``n``), no bias, every
width ``>= K``. The linear optimum is feasible for the ReLU model (take every intermediate
class-mean frame non-negative), so ``f*_relu <= f*_linear``. Equality, with post-ReLU class
means forming a non-negative equinorm orthogonal frame with the linear Gram ``K_l`` (``l >= 2``)
and ``W_L W_L^T = c_{L+1} sigma^{2/P} I``:

* ``K = 2``, any ``L``: Súkeník et al. (2023), Theorem on the binary DUFM (proved there);
* ``L = 2``, any ``K``: Tirer & Bruna (2022), whose theorem needs an extra assumption;
  **established numerically** here (docs/theory.md section 2; best-of-restarts runs with
  ``K = 3, 4, 8``), not proved.

The first layer is *not* unique: the class means of ``H`` are collapsed and equinorm (norm as
in the linear model) but their angles vary between global minima (``K = 2``: any cosine in
``[-1, 0]`` gives the same loss, derived in :func:`binary_dnc` and seen in runs), so every
layer-1 Gram field is ``None``. For ``L >= 3`` and ``K >= 3`` deep neural collapse is **not**
predicted (Súkeník, Lampert, Mondelli, NeurIPS 2024, arXiv 2405.14468: low-rank solutions can
beat it); :func:`optimum` raises there, and :func:`dnc_candidate_loss` gives the loss of the
DNC candidate, an upper bound to compare numerical solutions with.

Everything is float64 numpy on concrete inputs (not jittable).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import _deep_scalar as scalar
from ._deep_inputs import (
    check_lambdas,
    check_model,
    check_targets,
    check_widths,
    one_hot,
    one_hot_balanced,
)

__all__ = [
    "BinaryDNC",
    "DeepOptimum",
    "binary_dnc",
    "dnc_candidate_loss",
    "kappa_crit",
    "one_hot_balanced",
    "optimum",
    "optimum_from_labels",
    "scope_error",
]

kappa_crit = scalar.kappa_crit


class DeepOptimum(NamedTuple):
    """Closed-form optimum (``m = min(N, n)``, ``r = rank``, layer ``l`` is index ``l - 1``).

    Attributes:
        P: number of factors ``L + 1``. widths, activation, has_bias: the model.
        lambdas: ``(P,)`` ``(lambda_H, lambda_W_1, ..., lambda_W_L)``.
        alpha: ``1/N``. gamma: ``(prod lambdas)^{1/P}``. kappa_crit: ``kappa_P^crit``.
        target_singular_values: ``(m,)`` ``y_i`` of ``Yc``, descending.
        target_directions: ``(n, m)`` the matching right singular vectors ``U`` (``I_K`` for
            balanced one-hot targets without bias).
        kappa: ``(m,)`` ``kappa_i = gamma y_i^{2/P-2} N`` (``inf`` where ``y_i = 0``).
        scale: ``(m,)`` ``s_i = sigma_i*/y_i``. singular_values: ``(m,)`` ``sigma_i*`` of
            ``Z* - 1 b^T``. rank: number of nonzero ``sigma_i*``. loss: optimal value.
        predictions: ``(N, n)`` ``Z*`` including ``1 b^T``. bias: ``(n,)`` ``ybar`` or 0.
        WWT: ``(n, n)`` ``W_L W_L^T``.
        feature_gram_cores: ``L`` arrays ``(n, n)``: ``X_l X_l^T = Yc K_l Yc^T`` (``None`` at
            layer 1 for ReLU). feature_spectra: ``L`` arrays ``(r,)``, the nonzero eigenvalues
            of ``X_l^T X_l`` (``None`` at layer 1 for ReLU).
        weight_spectra: ``L`` arrays ``(r,)``, the nonzero eigenvalues of ``W_l W_l^T``
            (``None`` for ``W_1`` with ReLU).
        factor_norms_sq: ``(P,)`` ``||H||^2, ||W_1||^2, ..., ||W_L||^2`` (unique, also ReLU).
        class_norms_sq: balanced one-hot targets only (else ``None``): ``(L,)`` the squared norm
            of every class mean of ``X_l`` (uncentred; equinorm), layer 1 included.
        centred_targets: ``Yc`` ``(N, n)``. provenance: what the prediction rests on.
    """

    P: int
    widths: tuple[int, ...]
    activation: str
    has_bias: bool
    lambdas: np.ndarray
    alpha: float
    gamma: float
    kappa_crit: float
    target_singular_values: np.ndarray
    target_directions: np.ndarray
    kappa: np.ndarray
    scale: np.ndarray
    singular_values: np.ndarray
    rank: int
    loss: float
    predictions: np.ndarray
    bias: np.ndarray
    WWT: np.ndarray
    feature_gram_cores: tuple
    feature_spectra: tuple
    weight_spectra: tuple
    factor_norms_sq: np.ndarray
    class_norms_sq: np.ndarray | None
    centred_targets: np.ndarray
    provenance: str

    def _layer(self, layer: int) -> int:
        L = len(self.widths)
        if isinstance(layer, bool) or not isinstance(layer, int) or not 1 <= layer <= L:
            raise ValueError(f"layer must be an int in [1, {L}], got {layer!r}")
        return layer - 1

    def feature_gram(self, layer: int) -> np.ndarray | None:
        """The ``(N, N)`` sample Gram ``X_l X_l^T`` of layer ``l`` (1-based; materialised;
        ``None`` where it is not unique)."""
        K = self.feature_gram_cores[self._layer(layer)]
        Yc = self.centred_targets
        return None if K is None else Yc @ K @ Yc.T

    def class_mean_gram(self, layer: int, labels, num_classes: int) -> np.ndarray | None:
        """``M_l M_l^T`` ``(C, C)`` of the uncentred class means ``M_l`` of ``X_l`` for any
        ``labels (N,)`` (``None`` where the layer's Gram is not unique)."""
        K = self.feature_gram_cores[self._layer(layer)]
        lab = np.asarray(labels)
        Yc = self.centred_targets
        if lab.shape != (Yc.shape[0],) or lab.min() < 0 or lab.max() >= num_classes:
            raise ValueError(f"labels must have shape ({Yc.shape[0]},) with values in [0, C)")
        E = np.eye(num_classes)[lab]
        A = (E.T @ Yc) / np.maximum(E.sum(0), 1)[:, None]  # class means of Yc
        return None if K is None else A @ K @ A.T

    def minimiser(self) -> tuple[np.ndarray, tuple[np.ndarray, ...], np.ndarray]:
        """One global minimiser ``(H, (W_1, ..., W_L), b)``, every intermediate frame ``[I_r; 0]``
        (non-negative features for one-hot targets, so it also minimises the ReLU model)."""
        r, P = self.rank, self.P
        y, U = self.target_singular_values[:r], self.target_directions[:, :r]
        root = self.singular_values[:r] ** (1.0 / P)
        c = np.sqrt(self.gamma / self.lambdas)
        V = self.centred_targets @ U / y
        dims = (*self.widths, U.shape[0])
        H = np.zeros((V.shape[0], dims[0]))
        H[:, :r] = c[0] * V * root
        Ws = []
        for l in range(len(self.widths)):
            W = np.zeros((dims[l + 1], dims[l]))
            if l == len(self.widths) - 1:
                W[:, :r] = c[l + 1] * U * root
            else:
                W[:r, :r] = c[l + 1] * np.diag(root)
            Ws.append(W)
        return H, tuple(Ws), self.bias.copy()


class BinaryDNC(NamedTuple):
    """Deep neural collapse for ``K = 2`` (:func:`binary_dnc`); layer ``l`` is index ``l - 1``.

    Attributes:
        optimum: the :class:`DeepOptimum` (ReLU) it is read from. loss, zero (``W = H = 0``).
        class_mean_grams: ``L`` entries ``(2, 2)``, ``a_l^2 I`` for ``l >= 2`` (post-ReLU
            orthogonal, equinorm); ``None`` at ``l = 1``.
        first_layer_norm_sq: ``||hbar_1||^2 = ||hbar_2||^2`` of the class means of ``H``.
        first_layer_cosine_range: ``(-1, 0)``: every cosine between them in this range is
            optimal (the antipodal ``hbar_1 = -hbar_2`` is one of them).
        WWT: ``W_L W_L^T`` ``(2, 2)`` ``∝ I``. weight_spectra: ``L`` entries, ``None`` for ``W_1``.
    """

    optimum: DeepOptimum
    loss: float
    zero: bool
    class_mean_grams: tuple
    first_layer_norm_sq: float
    first_layer_cosine_range: tuple[float, float]
    WWT: np.ndarray
    weight_spectra: tuple


# ---------------------------------------------------------------------------------------------
# The optimum
# ---------------------------------------------------------------------------------------------


def _relu_provenance(onehot, w: tuple[int, ...], bias: bool) -> str:
    if bias:
        raise NotImplementedError(
            "bias=True with activation='relu' (L >= 2) has no established closed form; use "
            "bias=False or activation='linear'"
        )
    if onehot is None:
        raise ValueError(
            "targets must be balanced one-hot rows for activation='relu' with L >= 2 (the "
            "closed form is known only there); use activation='linear' for other targets"
        )
    K = onehot[0]
    if min(w) < K:
        raise NotImplementedError(
            f"activation='relu' needs every width >= K = {K} for the predicted orthogonal "
            f"frames, got widths = {w}"
        )
    if K == 2:
        return "proved for K = 2: Sukenik, Mondelli, Lampert (NeurIPS 2023); layer 1 not unique"
    if len(w) == 2:
        return (
            "established numerically for L = 2 (Tirer & Bruna, ICML 2022, Sec. 4, with an extra "
            "assumption; this project's best-of-restarts runs), not proved; layer 1 not unique"
        )
    raise NotImplementedError(
        f"activation='relu' with L = {len(w)} >= 3 layers and K = {K} >= 3 classes: deep neural "
        "collapse is not predicted to be optimal (Sukenik, Lampert, Mondelli, NeurIPS 2024: "
        "low-rank solutions can beat it); dnc_candidate_loss gives an upper bound"
    )


def scope_error(targets, widths, activation: str = "linear", bias: bool = False) -> str:
    """Why :func:`optimum` predicts nothing for this model (``""`` when it does): the ReLU
    model with ``L >= 2`` outside the established cases (bias, targets that are not balanced
    one-hot rows, a width below ``K``, ``L >= 3`` with ``K >= 3``). Arguments as in
    :func:`optimum`, checked there (this function does not validate them)."""
    w = tuple(int(d) for d in widths)
    if activation != "relu" or len(w) < 2:
        return ""
    try:
        _relu_provenance(one_hot_balanced(np.asarray(targets, np.float64)), w, bool(bias))
    except (NotImplementedError, ValueError) as err:
        return str(err)
    return ""


def optimum(
    targets, lambda_H, lambda_W, widths, activation: str = "linear", bias: bool = False
) -> DeepOptimum:
    """Closed-form global optimum of the deep UFM (module docstring for the math and scope).

    Args:
        targets: ``Y (N, n)``. lambda_H: ``> 0``. lambda_W: ``> 0``, a scalar (every layer) or a
            sequence of ``L`` values. widths: ``(d_1, ..., d_L)`` ints ``>= 1``.
        activation: ``"linear"`` (any targets) or ``"relu"`` (``L = 1``: same as linear; ``L >=
            2``: balanced one-hot targets, no bias, widths ``>= K``, and ``K = 2`` or ``L = 2``).
        bias: free unregularised output bias.
    Raises ValueError/TypeError for bad arguments and NotImplementedError outside the scope.
    """
    lam, w = check_model(lambda_H, lambda_W, widths, activation, bias)
    Y = check_targets(targets)
    L, P = len(w), len(w) + 1
    onehot = one_hot_balanced(Y)
    relu = activation == "relu" and L >= 2
    provenance = (
        _relu_provenance(onehot, w, bool(bias))
        if relu
        else "exact: P-factor lemma (docs/theory.md section 0 item 5)"
    )
    N, n = Y.shape
    ybar = Y.mean(0) if bias else np.zeros(n)
    Yc = Y - ybar
    if onehot is not None and not bias:
        y, U = np.full(n, np.sqrt(onehot[1])), np.eye(n)  # canonical basis: ReLU-feasible
    else:
        _, y, Vt = np.linalg.svd(Yc, full_matrices=False)
        U = Vt.T
    y = np.where(y > np.finfo(float).eps * y[0] * max(N, n), y, 0.0)
    alpha = 1.0 / N
    gamma = float(np.exp(np.mean(np.log(lam))))
    with np.errstate(divide="ignore"):
        kappa = np.where(y > 0, gamma * N * np.where(y > 0, y, 1.0) ** (2.0 / P - 2.0), np.inf)
    s, h = scalar.optimal_scale(kappa, P)
    kept = (s > 0) & (np.arange(len(y)) < min(w))
    s = np.where(kept, s, 0.0)
    h = np.where(kept, h, 0.5)
    sig = y * s
    r = int(kept.sum())
    loss = float(np.sum(y**2 * h) / N)
    Ur, yr, sr = U[:, :r], y[:r], sig[:r]
    c = gamma / lam  # c_j: beta_j ||A_j||^2-balanced squared scales
    C = np.cumprod(c)
    predictions = (Yc @ U * np.where(kept, s, 0.0)) @ U.T + ybar
    cores = tuple((Ur * (C[l] * sr ** (2.0 * (l + 1) / P) / yr**2)) @ Ur.T for l in range(L))
    fspec = tuple(C[l] * sr ** (2.0 * (l + 1) / P) for l in range(L))
    wspec = tuple(c[l + 1] * sr ** (2.0 / P) for l in range(L))
    WWT = (Ur * wspec[-1]) @ Ur.T
    norms = c * np.sum(sr ** (2.0 / P))
    class_norms = None
    if onehot is not None:
        K, npc = onehot
        A = (Y.T @ Yc) / npc  # class means of Yc
        class_norms = np.array([np.mean(np.diag(A @ Kl @ A.T)) for Kl in cores])
    if relu:
        cores, fspec = (None, *cores[1:]), (None, *fspec[1:])
        wspec = (None, *wspec[1:])
    return DeepOptimum(
        P=P,
        widths=w,
        activation=activation,
        has_bias=bool(bias),
        lambdas=lam,
        alpha=alpha,
        gamma=gamma,
        kappa_crit=scalar.kappa_crit(P),
        target_singular_values=y,
        target_directions=U,
        kappa=kappa,
        scale=s,
        singular_values=sig,
        rank=r,
        loss=loss,
        predictions=predictions,
        bias=ybar,
        WWT=WWT,
        feature_gram_cores=cores,
        feature_spectra=fspec,
        weight_spectra=wspec,
        factor_norms_sq=norms,
        class_norms_sq=class_norms,
        centred_targets=Yc,
        provenance=provenance,
    )


def optimum_from_labels(
    labels, num_classes: int, lambda_H, lambda_W, widths, activation="linear", bias=False
) -> DeepOptimum:
    """:func:`optimum` for one-hot targets ``Y[i] = e_{labels[i]}`` (``N = len(labels)``)."""
    check_model(lambda_H, lambda_W, widths, activation, bias)
    return optimum(one_hot(labels, num_classes), lambda_H, lambda_W, widths, activation, bias)


def dnc_candidate_loss(num_classes: int, per_class: int, lambda_H, lambda_W, widths) -> float:
    """Loss of the deep-neural-collapse candidate, bias-free one-hot targets, any ``K``, ``L``.

    The candidate keeps all ``K`` target directions (singular values ``sqrt(n)``) with orthogonal
    frames at every layer: it has the linear per-singular-value value ``h(1 - u)`` with
    ``kappa = K n^{1/P} gamma`` and ``1 - u`` the largest root, whether or not that beats the zero
    solution (loss 1/2). It is feasible for the linear and the ReLU model (every width must be
    ``>= K``), so it bounds the ReLU optimum from above; for ``L >= 3`` and ``K >= 3`` the optimum
    may be lower (not predicted here). ``NaN`` when no nonzero stationary point exists
    (``kappa > phi_max(P)``)."""
    w = check_widths(widths)
    lam = check_lambdas(lambda_H, lambda_W, len(w))
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
    if isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1:
        raise ValueError(f"per_class must be an int >= 1, got {per_class!r}")
    if min(w) < num_classes:
        raise ValueError(f"every width must be >= num_classes = {num_classes}, got {w}")
    P = len(w) + 1
    kappa = num_classes * per_class ** (1.0 / P) * float(np.exp(np.mean(np.log(lam))))
    u = float(scalar.largest_root(kappa, P))
    return float(scalar.scalar_objective(1.0 - u, kappa, P)) if np.isfinite(u) else np.nan


def binary_dnc(per_class: int, lambda_H, lambda_W, widths) -> BinaryDNC:
    """Predicted per-layer structure for ``K = 2`` (Súkeník, Mondelli, Lampert, NeurIPS 2023):
    within-class collapse at every layer; post-ReLU class means (``l >= 2``) orthogonal and
    equinorm with Gram ``a_l^2 I``; ``W_L W_L^T ∝ I`` and inner weights aligned with the class
    means (``W_l W_l^T`` with two equal eigenvalues for ``2 <= l <= L``); loss as the linear model.

    Layer 1 is not unique [derived here, seen in runs]: with class means ``hbar_k`` of norm ``b``
    and cosine ``rho``, ``W_1`` must map them to ``v_k`` with ``(v_k)_+ = a e_k``; taking
    ``v_1 = (a, -c)``, ``v_2 = (-c, a)`` costs ``||W_1||^2 = (2a^2 + 2c^2 + 4 rho a c) /
    (b^2 (1 - rho^2))``, minimised by ``c = -rho a`` at ``2 a^2 / b^2`` for every ``rho`` in
    ``[-1, 0]``, the same as the orthogonal frame. So the antipodal ``hbar_1 = -hbar_2`` (as
    docs/theory.md recalls the paper) is one optimum, not the only one; its norm is unique."""
    if len(check_widths(widths)) < 2:
        raise ValueError(f"binary_dnc needs widths with L >= 2 layers (a ReLU), got {widths}")
    if isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1:
        raise ValueError(f"per_class must be an int >= 1, got {per_class!r}")
    opt = optimum_from_labels(np.repeat([0, 1], per_class), 2, lambda_H, lambda_W, widths, "relu")
    grams = (None, *(np.eye(2) * a for a in opt.class_norms_sq[1:]))
    return BinaryDNC(
        optimum=opt,
        loss=opt.loss,
        zero=opt.rank == 0,
        class_mean_grams=grams,
        first_layer_norm_sq=float(opt.class_norms_sq[0]),
        first_layer_cosine_range=(-1.0, 0.0),
        WWT=opt.WWT,
        weight_spectra=opt.weight_spectra,
    )
