"""The regression unconstrained feature model (Andriopoulos et al., NeurIPS 2024, eq. 1)."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from ._validate import check_finite, check_nonnegative_scalar, float_array


class Params(NamedTuple):
    """Variables of a UFM, samples first.

    Attributes:
        H: features, shape ``(M, d)``.
        W: linear head, shape ``(n, d)``.
        b: bias, shape ``(n,)`` (all zeros when the problem has no bias).
    """

    H: jax.Array
    W: jax.Array
    b: jax.Array


def random_params(key, num_samples, num_outputs, feature_dim, dtype, scale=0.1) -> Params:
    """``H (N, d), W (n, d) ~ N(0, scale^2)`` entrywise and ``b = 0``."""
    kh, kw = jax.random.split(key)
    return Params(
        scale * jax.random.normal(kh, (num_samples, feature_dim), dtype),
        scale * jax.random.normal(kw, (num_outputs, feature_dim), dtype),
        jnp.zeros((num_outputs,), dtype),
    )


@jax.tree_util.register_pytree_node_class
class RegressionUFM:
    r"""Regression UFM with targets ``Y`` of shape ``(M, n)``.

    The objective (Andriopoulos, Dong, Guo, Zhao, Ross, NeurIPS 2024, arXiv 2409.04180, eq. 1),
    written samples first (``H`` of shape ``(M, d)``, ``W`` of shape ``(n, d)``, ``b`` of shape
    ``(n,)``), with the bias unregularised::

        L(H, W, b) = 1/(2M) ||H W^T + 1 b^T - Y||_F^2 + lambda_H/(2M) ||H||_F^2
                     + lambda_W/2 ||W||_F^2

    With ``bias=False`` the term ``1 b^T`` is absent (``b`` is fixed at 0).

    Numeric fields (``targets``, ``lambda_H``, ``lambda_W``) are pytree leaves, so a batch of
    problems can be stacked (:func:`ufm.stack`) and solved under ``jax.vmap``; ``feature_dim``
    and ``bias`` are static structure.

    Args:
        targets: ``Y``, shape ``(M, n)`` with ``M >= 2``; finite.
        lambda_H: feature regularisation, scalar >= 0.
        lambda_W: weight regularisation, scalar >= 0.
        feature_dim: ``d >= 1``.
        bias: whether the model has the free bias ``b``.

    Use :func:`ufm.convert_lambdas` to translate lambdas from the other normalisations in the
    literature.
    """

    def __init__(self, targets, lambda_H, lambda_W, feature_dim: int, bias: bool = True):
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
        lambda_H = float_array(lambda_H, "lambda_H", targets.dtype)
        lambda_W = float_array(lambda_W, "lambda_W", targets.dtype)
        check_nonnegative_scalar(lambda_H, "lambda_H")
        check_nonnegative_scalar(lambda_W, "lambda_W")
        if isinstance(feature_dim, bool) or not isinstance(feature_dim, int | jnp.integer):
            raise TypeError(f"feature_dim must be an int >= 1, got {feature_dim!r}")
        if feature_dim < 1:
            raise ValueError(f"feature_dim must be an int >= 1, got {feature_dim}")
        if not isinstance(bias, bool):
            raise TypeError(f"bias must be True or False, got {bias!r}")
        self.targets = targets
        self.lambda_H = lambda_H
        self.lambda_W = lambda_W
        self.feature_dim = int(feature_dim)
        self.bias = bias

    # -- pytree ----------------------------------------------------------------------------
    def tree_flatten(self):
        return (self.targets, self.lambda_H, self.lambda_W), (self.feature_dim, self.bias)

    @classmethod
    def tree_unflatten(cls, aux, children):
        obj = object.__new__(cls)
        obj.targets, obj.lambda_H, obj.lambda_W = children
        obj.feature_dim, obj.bias = aux
        return obj

    def __repr__(self) -> str:
        M, n = self.targets.shape[-2:]
        return (
            f"RegressionUFM(M={M}, n={n}, feature_dim={self.feature_dim}, bias={self.bias}, "
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

    def data_term(self, Z: jax.Array, b: jax.Array) -> jax.Array:
        """``1/(2M) ||Z + 1 b^T - Y||^2`` for predictions ``Z = H W^T`` (``b`` ignored without
        bias)."""
        E = Z - self.targets
        if self.bias:
            E = E + b
        return 0.5 / self.num_samples * jnp.sum(E**2)

    def factor_penalty(self) -> jax.Array:
        """``sqrt(beta_W beta_H)`` of the penalty ``beta_W/2 ||W||^2 + beta_H/2 ||H||^2``:
        ``sqrt(lambda_W lambda_H / M)`` (THEORY.md section 0)."""
        return jnp.sqrt(self.lambda_W * self.lambda_H / self.num_samples)

    def valid(self) -> jax.Array:
        """Traced check of the values that cannot be checked while tracing (lambdas >= 0)."""
        return (self.lambda_H >= 0) & (self.lambda_W >= 0)

    @property
    def has_bias(self) -> bool:
        return self.bias

    is_mse = True

    def trajectory_metrics(self, params: Params) -> dict[str, jax.Array]:
        """NRC1, NRC2 and NRC3 with ``gamma = lambda_H lambda_W`` (recorded by ``ufm.solve``)."""
        from . import metrics

        H, W, _ = params
        n = self.target_dim
        return {
            "nrc1": metrics.nrc1(H, n, center=self.bias),
            "nrc2": metrics.nrc2(H, W),
            "nrc3": metrics.nrc3(W, self.targets, self.lambda_H * self.lambda_W, center=self.bias),
        }

    def default_init(self, key: jax.Array, scale: float = 0.1) -> Params:
        """The papers' initialisation: ``H, W ~ N(0, scale^2)`` entrywise, ``b = 0``."""
        return random_params(
            key, self.num_samples, self.target_dim, self.feature_dim, self.dtype, scale
        )

    def mse_data(self):
        """The exact solver's view: ridge ``rho = lambda_H`` (see ``ufm/_exact.py``)."""
        from ._exact import MSEData

        zero = jnp.zeros((), self.dtype)
        return MSEData(
            self.targets, self.lambda_H, self.lambda_W, zero, "free" if self.bias else "none"
        )

    def precondition_scales(self) -> tuple[jax.Array, jax.Array]:
        """``(s_H, s_W)``: gradient solvers optimise ``H / s_H`` and ``W / s_W``.

        The feature block's curvature is ``(||W||^2 + lambda_H)/M`` per row, the weight block's
        ``O(1)``; ``s_H = sqrt(M)`` makes both ``O(1)``."""
        one = jnp.ones((), self.dtype)
        return jnp.sqrt(self.num_samples * one), one

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


def stack(problems):
    """Stack a sequence of problems with equal shapes into one batched problem for ``jax.vmap``.

    Example::

        batch = ufm.stack([ufm.RegressionUFM(Y, lam, lam, 16) for lam in (1e-3, 1e-2)])
        sols = jax.vmap(ufm.solve)(batch)
    """
    problems = list(problems)
    if not problems:
        raise ValueError("problems must be a non-empty sequence")
    structs = {jax.tree_util.tree_structure(p) for p in problems}
    if len(structs) != 1:
        raise ValueError(
            "problems must share their type, feature_dim and bias to be stacked, got "
            f"{[repr(p) for p in problems]}"
        )
    shapes = {tuple(jnp.shape(x) for x in jax.tree_util.tree_leaves(p)) for p in problems}
    if len(shapes) != 1:
        raise ValueError(f"problems must have equal array shapes to be stacked, got {shapes}")
    return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *problems)
