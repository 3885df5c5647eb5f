"""The classification UFM with MSE or cross-entropy loss (Tirer & Bruna 2022; Zhu et al. 2021)."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np

from .. import metrics
from .._certificate import gradient_rounding, violation
from .._linalg import eps_of, mm
from .._types import MSEData, Params
from .._validate import (
    bias_option,
    check_int,
    check_label_smoothing,
    check_lambda,
    float_dtype,
    is_concrete,
    labels_array,
)
from ._base import Problem, Reduction, check_feature_dim, check_variables_fit
from .regression import _feature_gradient, check_one_layer_init, one_layer_init

LOSSES = ("mse", "ce")


class ClassificationUFM(Problem):
    r"""Classification UFM: ``N`` samples with integer labels in ``[0, K)``.

    Samples first: features ``H (N, d)``, classifier ``W (K, d)``, bias ``b (K,)``, logits
    ``z_i = W h_i + b``. The objectives (docs/theory.md sections 2 and 3; the data term is averaged
    over ``N``, the feature penalty is *not* divided by ``N``):

    * ``loss="mse"`` (Tirer & Bruna, ICML 2022; Zhou et al., ICML 2022), one-hot targets ``Y``::

          L = 1/(2N) ||H W^T + 1 b^T - Y||_F^2 + lambda_H/2 ||H||_F^2 + lambda_W/2 ||W||_F^2
              [+ lambda_b/2 ||b||^2]

    * ``loss="ce"`` (Zhu et al., NeurIPS 2021), with label smoothing ``delta`` in PyTorch's
      convention (``torch.nn.CrossEntropyLoss(label_smoothing=delta)``; Szegedy et al., CVPR
      2016): soft targets ``q_i = (1 - delta) e_{y_i} + (delta/K) 1``::

          L = (1/N) sum_i [log sum_j exp(z_ij) - sum_j q_ij z_ij] + lambda_H/2 ||H||_F^2
              + lambda_W/2 ||W||_F^2 [+ lambda_b/2 ||b||^2]

      (``delta = 0``, the default: plain cross-entropy ``log sum_j exp(z_ij) - z_{i, y_i}``;
      docs/theory.md section 3, and section 10 for the smoothed optimum).

    ``bias="none"`` (no ``b``), ``"free"`` (unregularised ``b``) or a number ``lambda_b >= 0``
    (regularised ``b``; a traced value under ``jax.vmap``). Balanced and imbalanced classes are
    both accepted; every class needs at least one sample. Conventions that divide the feature
    penalty by ``N`` map to this one with ``lambda_H = lambda_H' / N``
    (``ufm.convert_lambdas(..., "andriopoulos2024", to="classification")``).

    Args:
        labels: integer array ``(N,)``, checked before any conversion to int32 (so a label
            beyond the int32 range is refused, not wrapped); strings, floats, bools raise.
        num_classes: ``K >= 2`` (a Python or numpy int).
        lambda_H, lambda_W: real scalars >= 0.
        feature_dim: ``d >= 1``; the theorems need ``d >= K`` (MSE, no bias) or ``d >= K - 1``
            (otherwise): smaller ``d`` warns and still solves. The variables and the one-hot
            targets must fit in the memory available.
        loss: ``"mse"`` or ``"ce"``.
        bias: ``"none"`` (the default), ``"free"`` or a number ``lambda_b >= 0``;
            ``True``/``False`` are aliases of ``"free"``/``"none"`` (never ``lambda_b =
            1/0``). The setting every problem shares (:func:`ufm._validate.bias_option`, also
            ``theory.classification.optimum``'s). Read back as :attr:`bias_mode` (``"none"``,
            ``"free"`` or ``"reg"``) with :attr:`lambda_b`, and :attr:`has_bias`.
        dtype: float32 or float64 (default: JAX's default float).
        label_smoothing: ``delta``, a real number in ``[0, 1)`` (default 0), stored as
            :attr:`label_smoothing` in ``dtype``, a traced leaf (sweepable). Defined for the
            cross-entropy loss only: ``loss="mse"`` with ``delta > 0`` is a ``ValueError`` (the
            smoothed MSE target is an affine map of the one-hot one, a different problem that
            this class does not define). Other conventions: ``ufm.convert_label_smoothing``.

    Variables: :class:`ufm.Params` ``(H, W, b)``.
    """

    _leaves = ("labels", "lambda_H", "lambda_W", "lambda_b", "label_smoothing")
    _ndims = {"labels": 1, "lambda_H": 0, "lambda_W": 0, "lambda_b": 0, "label_smoothing": 0}
    _static = ("num_classes", "feature_dim", "loss", "bias_mode")
    sweep_fields = ("lambda_H", "lambda_W", "lambda_b", "label_smoothing")

    def __init__(
        self,
        labels,
        num_classes: int,
        lambda_H,
        lambda_W,
        feature_dim: int,
        loss: str = "mse",
        bias="none",
        dtype=None,
        label_smoothing=0.0,
    ):
        K = check_int(num_classes, "num_classes", minimum=2)
        labels = labels_array(labels, K)
        if labels.shape[0] < 2:
            raise ValueError(f"labels must hold at least N = 2 samples, got {labels.shape[0]}")
        if not isinstance(loss, str) or loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
        dtype = float_dtype(dtype)
        lambda_H = check_lambda(lambda_H, "lambda_H", dtype)
        lambda_W = check_lambda(lambda_W, "lambda_W", dtype)
        mode, lambda_b = bias_option(bias, dtype)
        delta = check_label_smoothing(label_smoothing, dtype)
        if loss == "mse" and is_concrete(delta) and float(delta) != 0:
            raise ValueError(
                f"label_smoothing = {float(delta)} needs loss='ce': label smoothing is defined "
                "for the cross-entropy loss here (use label_smoothing=0 with loss='mse')"
            )
        feature_dim = check_feature_dim(feature_dim)
        N = labels.shape[0]
        check_variables_fit(N, K, feature_dim, dtype, extra=[("one-hot targets", (N, K))])
        # MSE without bias, or with a regularised one (mean direction kept when
        # kappa < lambda_b/(1+lambda_b)), has rank-K logits: d >= K; otherwise a simplex ETF.
        need = K if (loss == "mse" and mode in ("none", "reg")) else K - 1
        if feature_dim < need:
            warnings.warn(
                f"feature_dim = {feature_dim} < {need}: the closed-form optima of "
                f"theory.classification assume feature_dim >= {need} for loss={loss!r}, "
                f"bias={mode!r}; solving anyway",
                UserWarning,
                stacklevel=2,
            )
        self.labels = labels
        self.lambda_H, self.lambda_W, self.lambda_b = lambda_H, lambda_W, lambda_b
        self.label_smoothing = delta
        self.num_classes, self.feature_dim = K, int(feature_dim)
        self.loss, self.bias_mode = loss, mode

    def __repr__(self) -> str:
        lb = f", lambda_b={self.lambda_b}" if self.bias_mode == "reg" else ""
        ls = self.label_smoothing
        if not (is_concrete(ls) and jnp.ndim(ls) == 0 and float(ls) == 0):
            lb += f", label_smoothing={ls}"
        return (
            f"ClassificationUFM(N={self.num_samples}, K={self.num_classes}, "
            f"feature_dim={self.feature_dim}, loss={self.loss!r}, bias={self.bias_mode!r}, "
            f"lambda_H={self.lambda_H}, lambda_W={self.lambda_W}{lb}, dtype={self.dtype})"
        )

    # -- sizes -----------------------------------------------------------------------------
    @property
    def num_samples(self) -> int:
        return self.labels.shape[-1]

    @property
    def target_dim(self) -> int:
        """``K`` (the number of outputs)."""
        return self.num_classes

    @property
    def dtype(self):
        return self.lambda_H.dtype

    @property
    def has_bias(self) -> bool:
        """Whether the model has the bias ``b`` (free or regularised)."""
        return self.bias_mode != "none"

    @property
    def is_mse(self) -> bool:
        return self.loss == "mse"

    @property
    def targets(self) -> jax.Array:
        """One-hot targets ``Y (N, K)``."""
        return jax.nn.one_hot(self.labels, self.num_classes, dtype=self.dtype)

    @property
    def smoothed_targets(self) -> jax.Array:
        """The cross-entropy targets ``Q = (1 - delta) Y + delta/K (N, K)`` (``delta`` =
        :attr:`label_smoothing`; ``Y`` when ``delta = 0``)."""
        delta = self.label_smoothing
        return (1 - delta) * self.targets + delta / self.num_classes

    # -- the objective ---------------------------------------------------------------------
    def objective(self, params: Params) -> jax.Array:
        """The objective of the class docstring (a scalar)."""
        H, W, b = params
        val = (
            self.data_term(H @ W.T, b)
            + 0.5 * self.lambda_H * self.feature_sq(H)
            + 0.5 * self.lambda_W * jnp.sum(W**2)
        )
        if self.bias_mode == "reg":
            val = val + 0.5 * self.lambda_b * jnp.sum(b**2)
        return val

    def feature_sq(self, H: jax.Array) -> jax.Array:
        """``||H||_F^2``, the feature penalty's sum over samples."""
        return jnp.sum(H**2)

    def linearise(self, y: Params, scales: Params):
        r"""The objective, the gradient's small parts and two squared norms, exactly.

        With ``E = N dD/dZ`` of shape ``(N, K)`` for the data term ``D`` at the logits ``Z =
        H W^T + 1 b^T`` (MSE: ``E = Z - Y``; CE: ``E = softmax(Z) - Q``, ``Q`` the smoothed
        targets), the exact gradient of the class docstring's ``L`` is::

            dL/dH = E W / N + lambda_H H,   dL/dW = E^T H / N + lambda_W W,
            dL/db = E^T 1 / N [+ lambda_b b]

        In the solver's variables ``y = params / scales`` (:meth:`precondition_scales`),
        ``dL/dy_H = E V + c y_H`` with the small ``V = s_H s_W y_W / N`` of shape ``(K, d)``
        and the scalar ``c = s_H^2 lambda_H``, so the ``N x d`` work is the same operations
        whatever the scales (``precondition=False`` included; ``ufm/problems/_base.py``).
        Returns ``(L, aux, ||dL/dy||^2, ||y||^2)`` with ``aux = (E, dL/dy_W, dL/dy_b)``, as
        ``RegressionUFM.linearise`` does (which describes the passes over ``y_H``);
        :meth:`gradient` rebuilds ``dL/dy_H`` inside the optimiser's update.
        """
        y_H, y_W, y_b = y
        s_H, s_W, s_b = scales
        W, b = s_W * y_W, s_b * y_b
        N = self.num_samples
        Z = mm(y_H, (s_H * W).T)
        if self.has_bias:
            Z = Z + b
        if self.is_mse:
            E = Z - self.targets
            data = 0.5 / N * jnp.sum(E**2)
        else:
            lse = jax.nn.logsumexp(Z, axis=1)
            E = jnp.exp(Z - lse[:, None]) - self.smoothed_targets
            picked = jnp.take_along_axis(Z, self.labels[:, None], axis=1)[:, 0]
            data = jnp.mean(lse - _smoothed(self, picked, Z))
        V, c = self._feature_coefficients(y_W, scales)
        # ``c`` through a barrier, as in ``RegressionUFM.linearise``: the norm's reduction then
        # broadcasts its own scalar instead of sharing an ``N x d`` one with the update.
        g_H = _feature_gradient(y_H, E, V, jax.lax.optimization_barrier(c))
        # Separate passes: XLA:CPU does not fuse reductions with one another.
        g_W = s_W * (s_H * mm(E.T, y_H) / N + self.lambda_W * W)
        yH_sq = jnp.sum(y_H**2)
        gH_sq = jnp.sum(g_H**2)
        if self.has_bias:
            g_b = jnp.sum(E, axis=0) / N
            if self.bias_mode == "reg":
                g_b = g_b + self.lambda_b * b
                data = data + 0.5 * self.lambda_b * jnp.sum(b**2)
            g_b = s_b * g_b
        else:
            g_b = jnp.zeros_like(y_b)
        value = data + 0.5 * self.lambda_H * s_H**2 * yH_sq + 0.5 * self.lambda_W * jnp.sum(W**2)
        grad_sq = gH_sq + jnp.sum(g_W**2) + jnp.sum(g_b**2)
        y_sq = yH_sq + jnp.sum(y_W**2) + jnp.sum(y_b**2)
        return value, (E, g_W, g_b), grad_sq, y_sq

    def gradient(self, y: Params, aux, scales: Params) -> Params:
        """``dL/dy`` from :meth:`linearise`'s ``aux``; its ``H`` block is elementwise in
        ``y_H``."""
        E, g_W, g_b = aux
        V, c = self._feature_coefficients(y.W, scales)
        return Params(_feature_gradient(y.H, E, V, c), g_W, g_b)

    def _feature_coefficients(self, y_W, scales):
        """``(V, c)`` of ``dL/dy_H = E V + c y_H``: ``V = s_H s_W y_W / N`` (``(K, d)``) and
        ``c = s_H^2 lambda_H``."""
        s_H, s_W, _ = scales
        return (s_H * s_W / self.num_samples) * y_W, s_H**2 * self.lambda_H

    def data_term(self, Z: jax.Array, b: jax.Array) -> jax.Array:
        """The data term at logits ``Z + 1 b^T`` (``Z = H W^T``; ``b`` ignored without bias)."""
        if self.has_bias:
            Z = Z + b
        if self.loss == "mse":
            return 0.5 / self.num_samples * jnp.sum((Z - self.targets) ** 2)
        picked = jnp.take_along_axis(Z, self.labels[:, None], axis=1)[:, 0]
        return jnp.mean(jax.nn.logsumexp(Z, axis=1) - _smoothed(self, picked, Z))

    def factor_penalty(self) -> jax.Array:
        """``sqrt(lambda_W lambda_H)``: the nuclear-norm weight of ``Z = H W^T``
        (docs/theory.md section 0)."""
        return jnp.sqrt(self.lambda_W * self.lambda_H)

    def certificate(self, params: Params) -> tuple[jax.Array, jax.Array]:
        """The convex-reduction certificate of ``ufm/_certificate.py`` (MSE and CE alike)."""
        # MSE: |Y| = the one-hot targets; CE: softmax - q (q = the smoothed targets, entries in
        # [0, 1], summing to 1 like softmax) has entries of size <= 1.
        scale = self.targets if self.is_mse else jnp.ones_like(self.targets)
        rounding = gradient_rounding(params, scale)
        return violation(self.data_term, self.factor_penalty(), params, rounding, self._curvature())

    def _curvature(self):
        """The data term's curvature in ``Z`` where it is isotropic (MSE with a free bias or
        none: ``1/N``), for the rank-constrained certificate; else None."""
        iso = self.is_mse and self.bias_mode in ("none", "free")
        return 1.0 / self.num_samples if iso else None

    def valid(self) -> jax.Array:
        """Traced check of what cannot be checked while tracing: lambdas >= 0, labels in
        ``[0, K)``, no empty class, ``label_smoothing`` in ``[0, 1)`` (``0`` for MSE)."""
        y = self.labels
        counts = jnp.zeros(self.num_classes, jnp.int32).at[y].add(1, mode="drop")
        ok = (self.lambda_H >= 0) & (self.lambda_W >= 0) & (self.lambda_b >= 0)
        delta = self.label_smoothing
        ok = ok & ((delta == 0) if self.is_mse else (delta >= 0) & (delta < 1))
        return ok & jnp.all((y >= 0) & (y < self.num_classes)) & jnp.all(counts > 0)

    def default_init(self, key: jax.Array, scale: float = 0.1) -> Params:
        """``H, W ~ N(0, scale^2)`` entrywise, ``b = 0`` (the published direct-UFM protocol)."""
        return one_layer_init(
            key, self.num_samples, self.num_classes, self.feature_dim, self.dtype, scale
        )

    def check_init(self, init) -> Params:
        return check_one_layer_init(init, self)

    def precondition_scales(self) -> Params:
        """Gradient solvers optimise ``H / sqrt(N)``, ``W / sqrt(N)`` and ``b``.

        Curvatures as written: the feature block ``(W^T W)/N + lambda_H`` per row, the weight
        block ``H^T H / N + lambda_W`` (a second moment of the features, which at the optimum
        is ``lambda_W/(n lambda_H)``-times ``W^T W / K``, i.e. also ``O(1/N)`` at the balanced
        scale), the bias block ``O(1)``. The scaling puts the three at comparable sizes.
        Measured with L-BFGS on K = 4, n = 100, d = 64, lambda = 5e-4, free bias
        (``benchmarks/classification.py``): MSE 274 steps with the scaling, 503 without; CE 80
        with, 64 without (L-BFGS largely adapts by itself; we keep one default for both losses).
        """
        s = jnp.sqrt(jnp.asarray(self.num_samples, self.dtype))
        return Params(s, s, jnp.ones((), self.dtype))

    def exact_metrics(self, W, optimum) -> dict[str, jax.Array]:
        """NC2 and NC3 from the class means ``h_c = W^T K^{-1} (e_c - b)`` (the targets are
        one-hot); NC1 and NC4 need the features sample by sample and are not measured."""
        K = self.num_classes
        mu = exact_class_means(K, W, optimum)
        labels = np.arange(K)
        return {
            "nc2": metrics.nc2(mu, W, labels, K)["etf_means"],
            "nc3": metrics.nc3(mu, W, labels, K, center=False),
        }

    def exact_data(self) -> MSEData | None:
        """The exact solver's view (MSE only, else ``None``): one-hot targets, ridge
        ``rho = N lambda_H``."""
        if self.loss != "mse":
            return None
        return MSEData(
            self.targets,
            self.num_samples * self.lambda_H,
            self.lambda_W,
            self.lambda_b,
            self.bias_mode,
            self.feature_dim,
        )

    def reduction(self) -> Reduction:
        r"""The class-mean reduction: the same problem over ``K`` class-mean features.

        Write ``n_k`` for the size of class ``k`` and ``l_k(z)`` for the loss of class ``k`` at
        logits ``z`` (``|z - e_k|^2/2`` or ``logsumexp(z) - q_k . z``, ``q_k`` the smoothed
        target of class ``k``). For fixed ``(W, b)`` the
        objective is a sum over samples of ``phi_k(h_i) = l_k(W h_i + b)/N + lambda_H/2
        |h_i|^2``, the same convex function for every sample of class ``k``. Hence:

        * the objective restricted to class-collapsed features ``h_i = hbar_{y_i}``,
          ``F(Hbar, W, b) = sum_k n_k phi_k(hbar_k) + lambda_W/2 ||W||^2 [+ lambda_b/2
          ||b||^2]`` (:class:`ClassMeanUFM`), has the same infimum as the full objective:
          replacing each ``h_i`` by its class mean never increases it (Jensen, any
          ``lambda_H >= 0``);
        * gradients correspond exactly: at ``H = expand(Hbar)`` the full gradient in ``h_i``
          is ``grad_{hbar_k} F / n_k`` and the gradients in ``W`` and ``b`` are equal, so
          ``expand`` maps stationary points to stationary points with the same value; for
          ``lambda_H > 0`` each ``phi_k`` is strictly convex, so every stationary point of the
          full problem is class-collapsed and the two problems have the same stationary
          points (and global minimisers);
        * with :meth:`ClassMeanUFM.precondition_scales` (``hbar_k`` scaled by
          ``sqrt(N/n_k)``, against ``sqrt(N)`` for ``h_i``), the solvers' variables have the
          same norm and gradient norm as the full problem's at the expanded point, so the
          scale-free stopping test of ``ufm/_iterate.py`` gives the same answer, and
          :meth:`ClassMeanUFM.certificate` equals the full certificate there.

        Preconditioned gradient descent and momentum are linear in the gradient, so their
        reduced iterates are exactly the class means of the full ones from a collapsed init.
        ``nc1`` (within-class variability) is 0 by construction on ``expand(...)``. Cost: the
        reduced objective is ``O(K^2 d)`` instead of ``O(N K d)``; the data enter only
        through the class sizes.
        """
        labels = self.labels
        return Reduction(
            ClassMeanUFM(self),
            lambda p: Params(jnp.take(p.H, labels, axis=0), p.W, p.b),
            ("nc1",),
        )

    def trajectory_metrics(self, params: Params) -> dict[str, jax.Array]:
        """NC1, NC2 (ETF distance of the centred class means), NC3 (with the uncentred class
        means: the self-duality ``W^T ∝ H-bar`` of every UFM optimum, including the bias-free
        MSE orthogonal frame and the regularised-bias mixture), NC4."""
        H, W, b = params
        K, y = self.num_classes, self.labels
        return {
            "nc1": metrics.nc1(H, y, K),
            "nc2": metrics.nc2(H, W, y, K)["etf_means"],
            "nc3": metrics.nc3(H, W, y, K, center=False),
            "nc4": metrics.nc4(H, W, b if self.has_bias else None, y, K),
        }


class ClassMeanUFM(Problem):
    r"""A :class:`ClassificationUFM` restricted to class-collapsed features (its
    :meth:`~ClassificationUFM.reduction`): variables ``Params(Hbar (K, d), W (K, d), b (K,))``,
    one feature row per class, and the objective (class sizes ``n_k``, ``N = sum_k n_k``)::

        F = sum_k (n_k/N) l_k(W hbar_k + b) + lambda_H/2 sum_k n_k |hbar_k|^2
            + lambda_W/2 ||W||_F^2 [+ lambda_b/2 ||b||^2]

    with ``l_k(z) = |z - e_k|^2/2`` (MSE) or ``logsumexp(z) - q_k . z`` (CE, ``q_k = (1 -
    delta) e_k + delta/K``: label smoothing ``delta``, ``q_k = e_k`` without). It equals the full
    objective at ``h_i = hbar_{y_i}``. Built from a (validated) classification problem:
    ``ClassMeanUFM(problem)``; the lambdas stay traced leaves.
    """

    # The full problem's leaves, then the class sizes ``n_k`` (K,), in the problem's dtype:
    # counted once here, not by a scatter over the N labels at every objective evaluation
    # (which cost 1.2 ms a step of L-BFGS at N = 10^6, K = 10, d = 16).
    _leaves = (*ClassificationUFM._leaves, "counts")
    _ndims = {**ClassificationUFM._ndims, "counts": 1}
    _static = ClassificationUFM._static
    sweep_fields = ClassificationUFM.sweep_fields

    def __init__(self, problem: ClassificationUFM):
        if not isinstance(problem, ClassificationUFM):
            raise TypeError(f"problem must be a ClassificationUFM, got {type(problem).__name__}")
        leaves, aux = problem._flatten()
        for k, v in zip(ClassificationUFM._leaves, leaves, strict=True):
            setattr(self, k, v)
        for k, v in zip(self._static, aux, strict=True):
            setattr(self, k, v)
        K = self.num_classes
        self.counts = jnp.zeros(K, self.dtype).at[self.labels].add(1.0, mode="drop")

    def __repr__(self) -> str:
        return "ClassMeanUFM(" + repr(self.full())[len("ClassificationUFM(") :]

    def full(self) -> ClassificationUFM:
        """The classification problem this one reduces."""
        leaves, aux = self._flatten()
        return ClassificationUFM._unflatten(aux, leaves[: len(ClassificationUFM._leaves)])

    num_samples = ClassificationUFM.num_samples
    target_dim = ClassificationUFM.target_dim
    dtype = ClassificationUFM.dtype
    has_bias = ClassificationUFM.has_bias
    is_mse = ClassificationUFM.is_mse
    factor_penalty = ClassificationUFM.factor_penalty
    valid = ClassificationUFM.valid
    _curvature = ClassificationUFM._curvature

    # ``F`` of the class docstring: the full objective's formula with the penalty below.
    objective = ClassificationUFM.objective

    def feature_sq(self, H: jax.Array) -> jax.Array:
        """``sum_k n_k |hbar_k|^2``: ``||H||_F^2`` of the expanded features."""
        return jnp.sum(self.counts[:, None] * H**2)

    def data_term(self, Z: jax.Array, b: jax.Array) -> jax.Array:
        """``sum_k (n_k/N) l_k(z_k + b)`` at class logits ``Z (K, K)`` (row ``k``: class ``k``)."""
        if self.has_bias:
            Z = Z + b
        weights = self.counts / self.num_samples
        if self.loss == "mse":
            per = 0.5 * jnp.sum((Z - jnp.eye(self.num_classes, dtype=Z.dtype)) ** 2, axis=1)
        else:
            per = jax.nn.logsumexp(Z, axis=1) - _smoothed(self, jnp.diagonal(Z), Z)
        return jnp.sum(weights * per)

    def certificate(self, params: Params) -> tuple[jax.Array, jax.Array]:
        """The full problem's certificate at the expanded variables, from ``K x K`` quantities.

        The full gradient ``G = grad_Z data`` has the rows ``g_k / n_k`` (``g_k`` the reduced
        gradient in ``zbar_k``) ``n_k`` times, so ``G^T G = sum_k g_k g_k^T / n_k``: the
        certificate of ``ufm/_certificate.py`` on ``(diag(sqrt(n)) Hbar, W, b)`` with the data
        term of ``Z' = diag(sqrt(n)) Zbar``. The rounding bound is the full problem's."""
        H, W, b = params
        root = jnp.sqrt(self.counts)[:, None]
        K, d = self.num_classes, self.feature_dim
        scale = jnp.eye(K, dtype=H.dtype) if self.is_mse else jnp.ones((K, K), H.dtype)
        mag = (d + 4) * (jnp.abs(H) @ jnp.abs(W).T) + jnp.abs(b) + scale
        rounding = eps_of(mag) * jnp.linalg.norm(root * mag) / self.num_samples
        return violation(
            lambda Z, b: self.data_term(Z / root, b),
            self.factor_penalty(),
            Params(root * H, W, b),
            rounding,
            self._curvature(),  # (1/2N) sum_k ||z'_k + sqrt(n_k)(b - e_k)||^2: still 1/N
        )

    def default_init(self, key: jax.Array, scale: float = 0.1) -> Params:
        """``Hbar, W ~ N(0, scale^2)`` entrywise, ``b = 0`` (the full problem's per-sample
        scale)."""
        K = self.num_classes
        return one_layer_init(key, K, K, self.feature_dim, self.dtype, scale)

    def check_init(self, init) -> Params:
        """A user's ``Params(Hbar (K, d), W (K, d), b (K,))``."""
        return check_one_layer_init(init, self, rows=self.num_classes, rows_name="K")

    def precondition_scales(self) -> Params:
        """``hbar_k`` scaled by ``sqrt(N/n_k)`` (one scale a row), ``W`` by ``sqrt(N)``, ``b``
        by 1: then ``|y|`` and ``|grad_y F|`` equal the full problem's (scales ``sqrt(N)``,
        ``sqrt(N)``, 1) at the expanded point, as ``|grad_{hbar_k}| = n_k |grad_{h_i}|``."""
        N = jnp.asarray(self.num_samples, self.dtype)
        return Params(jnp.sqrt(N / self.counts)[:, None], jnp.sqrt(N), jnp.ones((), self.dtype))

    def trajectory_metrics(self, params: Params) -> dict[str, jax.Array]:
        """The full problem's metrics at the expanded variables (``nc1 = 0`` by construction)."""
        return self.full().trajectory_metrics(self.full().reduction().expand(params))


def _smoothed(problem, picked: jax.Array, Z: jax.Array) -> jax.Array:
    """``q_i . z_i = (1 - delta) z_{i, y_i} + delta mean_j z_ij`` for each row of ``Z (N, K)``
    (``picked``: ``z_{i, y_i}``, shape ``(N,)``), without forming ``q``."""
    delta = problem.label_smoothing
    return (1 - delta) * picked + delta * jnp.mean(Z, axis=1)


def exact_class_means(num_classes: int, W, optimum):
    """Class means ``(K, r)`` in the coordinates of ``W = A Q`` on the exact solver's ``n x n``
    path (``optimum``: its ``ReducedOptimum``): the targets are one-hot, so class ``c``'s
    features are ``h_c = W^T K^{-1} (e_c - b)``."""
    eye = jnp.eye(num_classes, dtype=W.dtype)
    return (eye - optimum.bias[None, :]) @ optimum.inverse @ W
