"""The classification UFM with MSE or cross-entropy loss (Tirer & Bruna 2022; Zhu et al. 2021)."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp

from .. import metrics
from .._certificate import gradient_rounding, violation
from .._types import MSEData, Params
from .._validate import bias_option, check_int, check_lambda, float_dtype, labels_array
from ._base import Problem, check_feature_dim, check_variables_fit
from .regression import check_one_layer_init, one_layer_init

LOSSES = ("mse", "ce")


class ClassificationUFM(Problem):
    r"""Classification UFM: ``N`` samples with integer labels in ``[0, K)``.

    Samples first: features ``H (N, d)``, classifier ``W (K, d)``, bias ``b (K,)``, logits
    ``z_i = W h_i + b``. The objectives (THEORY.md sections 2 and 3; the data term is averaged
    over ``N``, the feature penalty is *not* divided by ``N``):

    * ``loss="mse"`` (Tirer & Bruna, ICML 2022; Zhou et al., ICML 2022), one-hot targets ``Y``::

          L = 1/(2N) ||H W^T + 1 b^T - Y||_F^2 + lambda_H/2 ||H||_F^2 + lambda_W/2 ||W||_F^2
              [+ lambda_b/2 ||b||^2]

    * ``loss="ce"`` (Zhu et al., NeurIPS 2021)::

          L = (1/N) sum_i [log sum_j exp(z_ij) - z_{i, y_i}] + lambda_H/2 ||H||_F^2
              + lambda_W/2 ||W||_F^2 [+ lambda_b/2 ||b||^2]

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
        bias: ``"none"``, ``"free"`` or a number ``lambda_b`` (not a bool: ``True`` is not
            ``lambda_b = 1``; :func:`ufm._validate.bias_option`, shared with
            ``theory.classification.optimum``).
        dtype: float32 or float64 (default: JAX's default float).

    Variables: :class:`ufm.Params` ``(H, W, b)``.
    """

    _leaves = ("labels", "lambda_H", "lambda_W", "lambda_b")
    _ndims = {"labels": 1, "lambda_H": 0, "lambda_W": 0, "lambda_b": 0}
    _static = ("num_classes", "feature_dim", "loss", "bias_mode")
    sweep_fields = ("lambda_H", "lambda_W", "lambda_b")

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
        self.num_classes, self.feature_dim = K, int(feature_dim)
        self.loss, self.bias_mode = loss, mode

    def __repr__(self) -> str:
        lb = f", lambda_b={self.lambda_b}" if self.bias_mode == "reg" else ""
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
        return self.bias_mode != "none"

    @property
    def is_mse(self) -> bool:
        return self.loss == "mse"

    @property
    def targets(self) -> jax.Array:
        """One-hot targets ``Y (N, K)``."""
        return jax.nn.one_hot(self.labels, self.num_classes, dtype=self.dtype)

    # -- the objective ---------------------------------------------------------------------
    def objective(self, params: Params) -> jax.Array:
        """The objective of the class docstring (a scalar)."""
        H, W, b = params
        val = (
            self.data_term(H @ W.T, b)
            + 0.5 * self.lambda_H * jnp.sum(H**2)
            + 0.5 * self.lambda_W * jnp.sum(W**2)
        )
        if self.bias_mode == "reg":
            val = val + 0.5 * self.lambda_b * jnp.sum(b**2)
        return val

    def data_term(self, Z: jax.Array, b: jax.Array) -> jax.Array:
        """The data term at logits ``Z + 1 b^T`` (``Z = H W^T``; ``b`` ignored without bias)."""
        if self.has_bias:
            Z = Z + b
        if self.loss == "mse":
            return 0.5 / self.num_samples * jnp.sum((Z - self.targets) ** 2)
        picked = jnp.take_along_axis(Z, self.labels[:, None], axis=1)[:, 0]
        return jnp.mean(jax.nn.logsumexp(Z, axis=1) - picked)

    def factor_penalty(self) -> jax.Array:
        """``sqrt(lambda_W lambda_H)``: the nuclear-norm weight of ``Z = H W^T`` (THEORY.md §0)."""
        return jnp.sqrt(self.lambda_W * self.lambda_H)

    def certificate(self, params: Params) -> tuple[jax.Array, jax.Array]:
        """The convex-reduction certificate of ``ufm/_certificate.py`` (MSE and CE alike)."""
        # MSE: |Y| = the one-hot targets; CE: softmax - onehot has entries of size <= 1.
        scale = self.targets if self.is_mse else jnp.ones_like(self.targets)
        rounding = gradient_rounding(params, scale)
        return violation(self.data_term, self.factor_penalty(), params, rounding)

    def valid(self) -> jax.Array:
        """Traced check of what cannot be checked while tracing: lambdas >= 0, labels in
        ``[0, K)`` and no empty class."""
        y = self.labels
        counts = jnp.zeros(self.num_classes, jnp.int32).at[y].add(1, mode="drop")
        ok = (self.lambda_H >= 0) & (self.lambda_W >= 0) & (self.lambda_b >= 0)
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
