"""The regression unconstrained feature model (Andriopoulos et al., NeurIPS 2024, eq. 1)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .. import metrics
from .._certificate import gradient_rounding, violation
from .._linalg import mm
from .._types import MSEData, Params
from .._validate import bias_option, check_finite, check_lambda, check_shape, float_array
from ._base import Problem, check_feature_dim, check_variables_fit, gaussian


class RegressionUFM(Problem):
    r"""Regression UFM with targets ``Y`` of shape ``(M, n)``.

    The objective (Andriopoulos, Dong, Guo, Zhao, Ross, NeurIPS 2024, arXiv 2409.04180, eq. 1),
    written samples first (``H`` of shape ``(M, d)``, ``W`` of shape ``(n, d)``, ``b`` of shape
    ``(n,)``), with the bias unregularised::

        L(H, W, b) = 1/(2M) ||H W^T + 1 b^T - Y||_F^2 + lambda_H/(2M) ||H||_F^2
                     + lambda_W/2 ||W||_F^2

    With ``bias="none"`` the term ``1 b^T`` is absent (``b`` is fixed at 0). Variables:
    :class:`ufm.Params` ``(H, W, b)``.

    Numeric fields (``targets``, ``lambda_H``, ``lambda_W``) are pytree leaves, so a batch of
    problems can be stacked (:func:`ufm.stack`) and solved under ``jax.vmap``; ``feature_dim``
    and ``bias`` are static structure.

    Args:
        targets: ``Y``, shape ``(M, n)`` with ``M >= 2``; finite, real, float32 or float64
            (integers are converted to the default float; complex and float16 raise).
        lambda_H: feature regularisation, a real scalar >= 0 (not a bool or string).
        lambda_W: weight regularisation, a real scalar >= 0.
        feature_dim: ``d >= 1`` (a Python or numpy int). The variables ``H (M, d)``, ``W (n, d)``
            and ``b`` must fit in the memory available (``ufm._validate.check_memory``).
        bias: ``"free"`` (the default: the unregularised bias ``b``) or ``"none"`` (no bias);
            ``True``/``False`` are aliases of ``"free"``/``"none"``. The setting every problem
            shares (:func:`ufm._validate.bias_option`); a regularised bias (a number
            ``lambda_b``) is :class:`ufm.ClassificationUFM`'s only. Read back as
            :attr:`bias_mode` (and :attr:`has_bias`, :attr:`bias`: whether ``b`` is present).

    Use :func:`ufm.convert_lambdas` to translate lambdas from the other normalisations in the
    literature.
    """

    _leaves = ("targets", "lambda_H", "lambda_W")
    _ndims = {"targets": 2, "lambda_H": 0, "lambda_W": 0}
    _static = ("feature_dim", "bias")
    sweep_fields = ("lambda_H", "lambda_W")

    def __init__(self, targets, lambda_H, lambda_W, feature_dim: int, bias: str | bool = "free"):
        targets = float_array(targets, "targets")
        if targets.ndim != 2:
            raise ValueError(
                f"targets must be a 2-D array of shape (M, n) (samples first), got shape "
                f"{targets.shape}; reshape a 1-D target vector to (M, 1)"
            )
        M, n = targets.shape
        if M < 2:
            raise ValueError(f"targets must have at least M = 2 samples (rows), got M = {M}")
        if n < 1:
            raise ValueError(f"targets must have at least one column (n >= 1), got n = {n}")
        check_finite(targets, "targets")
        lambda_H = check_lambda(lambda_H, "lambda_H", targets.dtype)
        lambda_W = check_lambda(lambda_W, "lambda_W", targets.dtype)
        feature_dim = check_feature_dim(feature_dim)
        mode, _ = bias_option(bias, targets.dtype, regularised=False, owner="RegressionUFM")
        check_variables_fit(M, n, feature_dim, targets.dtype)
        self.targets = targets
        self.lambda_H = lambda_H
        self.lambda_W = lambda_W
        self.feature_dim = feature_dim
        self.bias = mode == "free"  # static: whether b is present

    def __repr__(self) -> str:
        M, n = self.targets.shape[-2:]
        return (
            f"RegressionUFM(M={M}, n={n}, feature_dim={self.feature_dim}, bias={self.bias_mode!r}, "
            f"lambda_H={self.lambda_H}, lambda_W={self.lambda_W}, dtype={self.targets.dtype})"
        )

    # -- sizes -----------------------------------------------------------------------------
    @property
    def num_samples(self) -> int:
        """``M``."""
        return self.targets.shape[-2]

    @property
    def target_dim(self) -> int:
        """``n``."""
        return self.targets.shape[-1]

    @property
    def dtype(self):
        return self.targets.dtype

    @property
    def has_bias(self) -> bool:
        """Whether the model has the bias ``b`` (also :attr:`bias`)."""
        return self.bias

    @property
    def bias_mode(self) -> str:
        """The bias setting: ``"free"`` or ``"none"``."""
        return "free" if self.bias else "none"

    is_mse = True

    # -- the objective ---------------------------------------------------------------------
    def objective(self, params: Params) -> jax.Array:
        """``L(H, W, b)`` exactly as in the class docstring (a scalar)."""
        H, W, b = params
        M = self.num_samples
        return (
            self.data_term(H @ W.T, b)
            + 0.5 * self.lambda_H / M * jnp.sum(H**2)
            + 0.5 * self.lambda_W * jnp.sum(W**2)
        )

    def linearise(self, y: Params, scales: Params):
        r"""The objective, the gradient's small parts and two squared norms, exactly.

        The exact gradient of the class docstring's ``L`` is, with the residual
        ``E = H W^T + 1 b^T - Y`` of shape ``(M, n)``::

            dL/dH = (E W + lambda_H H) / M,   dL/dW = E^T H / M + lambda_W W,
            dL/db = E^T 1 / M

        The gradient solvers (``ufm/_iterate.py``) run on ``y = params / scales`` leaf-wise
        (:meth:`precondition_scales`), so ``dL/dy = scales * dL/dparams``; in particular
        ``dL/dy_H = E V + c y_H`` with the small ``V = s_H s_W y_W / M`` of shape ``(n, d)``
        and the scalar ``c = s_H^2 lambda_H / M`` (:func:`_feature_gradient`). Returns
        ``(L, aux, ||dL/dy||^2, ||y||^2)`` with ``aux = (E, dL/dy_W, dL/dy_b)``: no array of
        size ``M d`` is written. ``y_H`` is read four times: the products ``y_H (s_H s_W
        y_W)^T`` and ``E^T y_H`` (``precision="highest"``), ``||y_H||^2`` and
        ``||dL/dy_H||^2`` (``dL/dy_H`` fused into its reduction; XLA:CPU fuses no two
        reductions into one pass). The optimiser's update rebuilds ``dL/dy_H`` elementwise
        (:meth:`gradient`), where XLA fuses it into the update, so the gradient is never
        stored either. ``||dL/dy_H||`` is summed from its entries, not expanded into
        ``||E V||^2 + 2 c <E V, y_H> + ...``, whose terms cancel near a stationary point.
        """
        y_H, y_W, y_b = y
        s_H, s_W, s_b = scales
        W, b = s_W * y_W, s_b * y_b
        M = self.num_samples
        E = mm(y_H, (s_H * W).T) - self.targets
        if self.bias:
            E = E + b
        V, c = _feature_coefficients(y_W, scales, self.lambda_H, M)
        # ``c`` through a barrier: the reduction below then has a scalar of its own, which XLA
        # broadcasts inside the reduction's fusion. Shared with the optimiser's update (which
        # multiplies ``y_H`` by the same ``c``), the broadcast would be written out as an
        # ``M x d`` array and read back, two more passes a step.
        g_H = _feature_gradient(y_H, E, V, jax.lax.optimization_barrier(c))
        # Separate passes: XLA:CPU does not fuse reductions with one another.
        g_W = s_W * (s_H * mm(E.T, y_H) / M + self.lambda_W * W)
        yH_sq = jnp.sum(y_H**2)
        gH_sq = jnp.sum(g_H**2)
        g_b = s_b * jnp.sum(E, axis=0) / M if self.bias else jnp.zeros_like(y_b)
        W_sq = jnp.sum(W**2)
        value = (
            0.5 / M * jnp.sum(E**2)
            + 0.5 * self.lambda_H / M * s_H**2 * yH_sq
            + 0.5 * self.lambda_W * W_sq
        )
        grad_sq = gH_sq + jnp.sum(g_W**2) + jnp.sum(g_b**2)
        y_sq = yH_sq + jnp.sum(y_W**2) + jnp.sum(y_b**2)
        return value, (E, g_W, g_b), grad_sq, y_sq

    def gradient(self, y: Params, aux, scales: Params) -> Params:
        """``dL/dy`` from :meth:`linearise`'s ``aux``; its ``H`` block is elementwise in
        ``y_H``."""
        E, g_W, g_b = aux
        V, c = _feature_coefficients(y.W, scales, self.lambda_H, self.num_samples)
        return Params(_feature_gradient(y.H, E, V, c), g_W, g_b)

    def data_term(self, Z: jax.Array, b: jax.Array) -> jax.Array:
        """``1/(2M) ||Z + 1 b^T - Y||^2`` for predictions ``Z = H W^T`` (``b`` ignored without
        bias)."""
        E = Z - self.targets
        if self.bias:
            E = E + b
        return 0.5 / self.num_samples * jnp.sum(E**2)

    def factor_penalty(self) -> jax.Array:
        """``sqrt(beta_W beta_H)`` of the penalty ``beta_W/2 ||W||^2 + beta_H/2 ||H||^2``:
        ``sqrt(lambda_W lambda_H / M)`` (docs/theory.md section 0)."""
        return jnp.sqrt(self.lambda_W * self.lambda_H / self.num_samples)

    def certificate(self, params: Params) -> tuple[jax.Array, jax.Array]:
        """The convex-reduction certificate of ``ufm/_certificate.py``."""
        rounding = gradient_rounding(params, jnp.abs(self.targets))
        curvature = 1.0 / self.num_samples  # data term (1/2M)||Z + 1 b^T - Y||^2, b free
        return violation(self.data_term, self.factor_penalty(), params, rounding, curvature)

    def valid(self) -> jax.Array:
        """Traced check of the values that cannot be checked while tracing (lambdas >= 0)."""
        return (self.lambda_H >= 0) & (self.lambda_W >= 0)

    def trajectory_metrics(self, params: Params) -> dict[str, jax.Array]:
        """NRC1, NRC2 and NRC3 with ``gamma = lambda_H lambda_W`` (recorded by ``ufm.solve``)."""
        H, W, _ = params
        n = self.target_dim
        return {
            "nrc1": metrics.nrc1(H, n, center=self.bias),
            "nrc2": metrics.nrc2(H, W),
            "nrc3": metrics.nrc3(W, self.targets, self.lambda_H * self.lambda_W, center=self.bias),
        }

    def default_init(self, key: jax.Array, scale: float = 0.1) -> Params:
        """The papers' initialisation: ``H, W ~ N(0, scale^2)`` entrywise, ``b = 0``."""
        return one_layer_init(
            key, self.num_samples, self.target_dim, self.feature_dim, self.dtype, scale
        )

    def check_init(self, init) -> Params:
        return check_one_layer_init(init, self)

    def exact_metrics(self, W, optimum) -> dict[str, jax.Array]:
        """NRC3 (it needs ``W`` only); NRC1 and NRC2 are 0 by construction on the exact
        solver's path, where ``H`` lies in ``W``'s row space, and not measured."""
        gamma = self.lambda_H * self.lambda_W
        return {"nrc3": metrics.nrc3(W, self.targets, gamma, center=self.bias)}

    def exact_data(self) -> MSEData:
        """The exact solver's view: ridge ``rho = lambda_H`` (see ``ufm/_exact.py``)."""
        zero = np.zeros((), self.dtype)  # numpy: no eager JAX program for a constant
        return MSEData(
            self.targets,
            self.lambda_H,
            self.lambda_W,
            zero,
            self.bias_mode,
            self.feature_dim,
        )

    def precondition_scales(self) -> Params:
        """Gradient solvers optimise ``H / sqrt(M)``, ``W`` and ``b``.

        The feature block's curvature is ``(||W||^2 + lambda_H)/M`` per row, the weight block's
        ``O(1)``; ``s_H = sqrt(M)`` makes both ``O(1)``."""
        one = jnp.ones((), self.dtype)
        return Params(jnp.sqrt(self.num_samples * one), one, one)

    def target_moments(self) -> tuple[jax.Array, jax.Array]:
        r"""Target mean ``ybar`` (n,) and the covariance ``Sigma`` (n, n) the optimum depends on.

        With a bias, ``Sigma = (Y - ybar)^T (Y - ybar) / M`` (normalised by ``M``, not
        ``M - 1``, as in the paper); without, ``ybar = 0`` and ``Sigma = Y^T Y / M``.
        """
        Y = self.targets
        M = self.num_samples
        mean = jnp.mean(Y, axis=0) if self.bias else jnp.zeros(Y.shape[1], Y.dtype)
        Yc = Y - mean
        Sigma = Yc.T @ Yc / M
        return mean, 0.5 * (Sigma + Sigma.T)


# Up to this many targets, ``E V`` is written as a sum of rank-one terms, elementwise in ``y_H``
# (XLA fuses it into the optimiser's update); beyond it, one matrix product.
_RANK_ONE_MAX = 8


def _feature_coefficients(y_W, scales, lambda_H, M):
    """``(V, c)`` of ``dL/dy_H = E V + c y_H``: ``V = s_H s_W y_W / M`` of shape ``(n, d)``
    and the scalar ``c = s_H^2 lambda_H / M``. Every factor of ``dL/dy_H`` that is not an
    ``M x d`` or ``M x n`` array is gathered here, so the ``M x d`` work is the same few
    operations whatever the scales (``precondition=False`` included)."""
    s_H, s_W, _ = scales
    return (s_H * s_W / M) * y_W, s_H**2 * lambda_H / M


def _feature_gradient(y_H, E, V, c):
    """``E V + c y_H``, shape ``(M, d)``."""
    n = E.shape[1]
    if n <= _RANK_ONE_MAX:
        EV = sum(E[:, k : k + 1] * V[k] for k in range(n))
    else:
        EV = mm(E, V)
    return EV + c * y_H


def one_layer_init(key, num_samples, num_outputs, feature_dim, dtype, scale=0.1) -> Params:
    """``H (N, d), W (n, d) ~ N(0, scale^2)`` entrywise and ``b = 0``."""
    kh, kw = jax.random.split(key)
    return Params(
        gaussian(kh, (num_samples, feature_dim), dtype, scale),
        gaussian(kw, (num_outputs, feature_dim), dtype, scale),
        jnp.zeros((num_outputs,), dtype),
    )


def check_one_layer_init(init, problem, rows: int | None = None, rows_name: str = "N") -> Params:
    """A user's ``Params(H, W, b)`` (or a 3-tuple) checked against the problem's sizes (``H``
    has ``rows`` rows, default ``problem.num_samples``); ``b`` is set to 0 for a problem
    without bias."""
    if not isinstance(init, Params):
        if isinstance(init, tuple | list) and len(init) == 3:
            init = Params(*init)
        else:
            raise TypeError(f"init must be a ufm.Params(H, W, b) or None, got {type(init)}")
    M = problem.num_samples if rows is None else rows
    n, d = problem.target_dim, problem.feature_dim
    init = Params(*(float_array(x, f"init.{k}", problem.dtype) for k, x in init._asdict().items()))
    check_shape(init.H, (M, d), "init.H", f"({rows_name}, d) = ({M}, {d})")
    check_shape(init.W, (n, d), "init.W", f"(n, d) = ({n}, {d})")
    check_shape(init.b, (n,), "init.b", f"(n,) = ({n},)")
    for name, x in init._asdict().items():
        check_finite(x, f"init.{name}")
    if not problem.has_bias:
        init = init._replace(b=jnp.zeros_like(init.b))
    return init
