r"""Closed-form global optimum of the regression UFM, in every regime.

Source: Andriopoulos, Dong, Guo, Zhao, Ross, "The Prevalence of Neural Collapse in Neural
Multivariate Regression", NeurIPS 2024 (arXiv 2409.04180), Theorem 4.1 (``c < lambda_min``,
``n <= d``), extended here to every regime (docs/theory.md section 1, [derived]).

Objective (samples first, ``Y (M, n)``, ``H (M, d)``, ``W (n, d)``, ``b (n,)``)::

    L(H, W, b) = 1/(2M) ||H W^T + 1 b^T - Y||_F^2 + lambda_H/(2M) ||H||_F^2
                 + lambda_W/2 ||W||_F^2

Let ``Sigma = (Y - ybar)^T (Y - ybar) / M = U diag(l_1 >= ... >= l_n) U^T`` (the uncentred
``Y^T Y / M`` and ``ybar = 0`` when ``bias=False``) and ``c = lambda_H lambda_W``. Direction ``i``
is kept iff ``l_i > c`` and ``i <= d``; ``r`` = number kept (the collapse rank). Then

* ``W W^T = sqrt(lambda_H/lambda_W) sum_{kept} (sqrt(l_i) - sqrt(c)) u_i u_i^T``
  ``= sqrt(lambda_H/lambda_W) (Sigma^{1/2} - sqrt(c) I)_+`` when ``n <= d``;
* ``W = (lambda_H/lambda_W)^{1/4} U_r diag(sqrt(sqrt(l_i) - sqrt(c))) R`` for any ``R`` with
  orthonormal rows (we return ``R`` = the first ``r`` rows of ``I_d``);
* ``H = sqrt(lambda_W/lambda_H) (Y - ybar) Sigma^{+1/2} W`` (pseudo-inverse square root);
* ``b = ybar``; predictions ``H W^T + 1 b^T = (Y - ybar) U diag((1 - sqrt(c/l_i))_kept) U^T
  + 1 ybar^T``;
* ``L* = sum_{kept} (sqrt(c l_i) - c/2) + sum_{others} l_i/2``; the zero solution
  ``(W, H, b) = (0, 0, ybar)`` when ``c >= l_1``.

Zero regularisation (Thm 4.3 of the paper). With ``lambda_H = lambda_W = 0`` and no bias the
loss ``1/(2M) ||H W^T - Y||^2`` has global minima (value 0) at *every* ``W`` of rank ``n``
with ``H = Y (W^+)^T + Z (I_d - W^+ W)^T`` for arbitrary ``Z``: nothing forces collapse, and
the features keep whatever energy they had outside the row space of ``W``.
:func:`zero_regularisation_check` verifies this numerically against ``lambda > 0``. The limit
is discontinuous: for ``lambda_H = lambda_W -> 0`` the optimum tends to ``W W^T = Sigma^{1/2}``.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ufm import metrics
from ufm._linalg import eigh_desc, full_precision
from ufm._solve import solve
from ufm._types import Params
from ufm._validate import check_int, check_key, float_array, is_concrete, positive_number
from ufm.problems import RegressionUFM


class RegressionOptimum(NamedTuple):
    """The closed-form optimum (one of the minimisers where ``W``, ``H`` are not unique).

    Attributes (``n`` targets, ``d`` features, ``M`` samples):
        eigenvalues: ``(n,)`` eigenvalues of ``Sigma``, descending.
        eigenvectors: ``(n, n)`` matching eigenvectors (columns).
        c: ``lambda_H lambda_W``.
        rank: number of kept directions ``min(d, #{l_i > c})`` (int array).
        WWT: ``(n, n)``, unique.
        W: ``(n, d)`` and H: ``(M, d)``: the minimiser with ``R = [I_r 0]``.
        bias: ``(n,)``, unique (``ybar``, or 0 without bias).
        predictions: ``(M, n)``, unique.
        feature_gram_core: ``(n, n)`` ``K`` with ``H H^T = Yc K Yc^T`` (the ``M x M`` sample
            Gram of the features, unique; see :meth:`feature_gram`).
        loss: optimal objective value.
        centred_targets: ``Yc = Y - ybar`` ``(M, n)``.
    """

    eigenvalues: jax.Array
    eigenvectors: jax.Array
    c: jax.Array
    rank: jax.Array
    WWT: jax.Array
    W: jax.Array
    H: jax.Array
    bias: jax.Array
    predictions: jax.Array
    feature_gram_core: jax.Array
    loss: jax.Array
    centred_targets: jax.Array

    def feature_gram(self) -> jax.Array:
        """The ``(M, M)`` feature Gram ``H H^T`` (materialised: mind memory for large M)."""
        Yc = self.centred_targets
        return Yc @ self.feature_gram_core @ Yc.T


def _check_positive(problem: RegressionUFM) -> None:
    if not isinstance(problem, RegressionUFM):
        raise TypeError(f"problem must be a ufm.RegressionUFM, got {type(problem).__name__}")
    problem.check_unbatched()
    why = _zero_lambda(problem)
    if why:
        raise ValueError(why)


def _zero_lambda(problem) -> str:
    """Why a problem with a (concrete) zero lambda has no closed form, or ``""``."""
    for name in ("lambda_H", "lambda_W"):
        v = getattr(problem, name)
        if is_concrete(v) and float(v) <= 0:
            return (
                f"{name} must be > 0 for a closed-form optimum, got {float(v)}; at zero "
                "regularisation the minimisers are not unique (see zero_regularisation_check)"
            )
    return ""


@full_precision
def optimum_of(problem: RegressionUFM) -> RegressionOptimum:
    """:func:`optimum` for a :class:`ufm.RegressionUFM` (works under ``jax.vmap``)."""
    _check_positive(problem)
    lH, lW = problem.lambda_H, problem.lambda_W
    n, d = problem.target_dim, problem.feature_dim
    mean, Sigma = problem.target_moments()
    lam, U = eigh_desc(Sigma)
    # Eigenvalues at rounding level are exactly 0 (as in ufm._exact.moments): Sigma of M <= n
    # samples with a bias, or of collinear targets, has a null direction that rounding turns
    # into ~eps ||Sigma||, which a tiny c = lambda_H lambda_W would count as a kept direction.
    lam = jnp.where(lam > max(n, 10) * jnp.finfo(lam.dtype).eps * lam[0], lam, 0.0)
    c = lH * lW
    kept = (lam > c) & (jnp.arange(n) < d)
    safe_lam = jnp.where(kept, lam, 1.0)
    g = jnp.where(kept, jnp.sqrt(safe_lam) - jnp.sqrt(c), 0.0)  # (sqrt(l_i) - sqrt(c))_+
    ratio = jnp.sqrt(lH / lW)
    WWT = ratio * (U * g) @ U.T
    r = min(n, d)
    # W = (lH/lW)^{1/4} U diag(sqrt(g)) [I_r 0]: the kept directions come first (descending).
    core = jnp.sqrt(jnp.sqrt(lH / lW)) * (U[:, :r] * jnp.sqrt(g[:r]))
    W = jnp.zeros((n, d), Sigma.dtype).at[:, :r].set(core)
    Yc = problem.targets - mean
    inv_sqrt = jnp.where(kept, 1.0 / jnp.sqrt(safe_lam), 0.0)
    H = jnp.sqrt(lW / lH) * ((Yc @ U) * inv_sqrt) @ (U.T @ W)
    shrink = jnp.where(kept, 1.0 - jnp.sqrt(c / safe_lam), 0.0)
    predictions = ((Yc @ U) * shrink) @ U.T + mean
    K = jnp.sqrt(lW / lH) * (U * jnp.where(kept, g / safe_lam, 0.0)) @ U.T
    loss = jnp.sum(jnp.where(kept, jnp.sqrt(c * safe_lam) - c / 2, lam / 2))
    return RegressionOptimum(
        eigenvalues=lam,
        eigenvectors=U,
        c=c,
        rank=jnp.sum(kept).astype(jnp.int32),
        WWT=WWT,
        W=W,
        H=H,
        bias=mean,
        predictions=predictions,
        feature_gram_core=K,
        loss=loss,
        centred_targets=Yc,
    )


@full_precision
def optimum(targets, lambda_H, lambda_W, feature_dim: int, bias: bool = True) -> RegressionOptimum:
    """Closed-form global optimum of the regression UFM (see the module docstring).

    Args:
        targets: ``Y`` ``(M, n)``.
        lambda_H: the feature regularisation strength, > 0.
        lambda_W: the weight regularisation strength, > 0.
        feature_dim: ``d``.
        bias: whether the model has the free (unregularised) bias.
    """
    return optimum_of(RegressionUFM(targets, lambda_H, lambda_W, feature_dim, bias))


# ---------------------------------------------------------------------------------------------
# Zero regularisation
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ZeroRegularisationCheck:
    """Outcome of :func:`zero_regularisation_check` (numpy arrays, one entry per init).

    Attributes:
        loss_zero: final losses at ``lambda = 0`` (should be ~0: global minima).
        nrc1_zero: NRC1 at ``lambda = 0`` (bounded away from 0: no collapse).
        nrc1_positive: NRC1 at ``lambda > 0`` from the same inits (~0: collapse).
        status_zero: the solver statuses at ``lambda = 0``.
        status_positive: the solver statuses at ``lambda > 0``.
    """

    loss_zero: np.ndarray
    nrc1_zero: np.ndarray
    nrc1_positive: np.ndarray
    status_zero: np.ndarray
    status_positive: np.ndarray

    def passed(self, loss_tol: float = 1e-10, nrc1_min: float = 0.05, nrc1_max: float = 1e-8):
        """Zero loss and NRC1 >= ``nrc1_min`` at lambda = 0; NRC1 <= ``nrc1_max`` at lambda > 0."""
        return bool(
            np.all(self.status_zero == 0)
            and np.all(self.status_positive == 0)
            and np.all(self.loss_zero <= loss_tol)
            and np.all(self.nrc1_zero >= nrc1_min)
            and np.all(self.nrc1_positive <= nrc1_max)
        )


def zero_regularisation_check(
    targets,
    feature_dim: int,
    *,
    lambda_positive: float = 1e-2,
    num_inits: int = 4,
    init_scale: float = 1.0,
    key: jax.Array | None = None,
    max_steps: int = 5_000,
) -> ZeroRegularisationCheck:
    """Solve the bias-free regression UFM at ``lambda_H = lambda_W = 0`` and at
    ``lambda_H = lambda_W = lambda_positive`` from the same random inits (preconditioned
    L-BFGS on all variables, ``H, W ~ N(0, init_scale^2)``), and report loss and NRC1.

    Thm 4.3 (Andriopoulos et al. 2024): at zero regularisation the minima have zero loss and
    keep the features' energy outside the ``n``-dimensional principal subspace (NRC1 > 0);
    with ``lambda > 0`` every minimiser is collapsed (NRC1 = 0). Needs ``feature_dim > n``.
    """
    Y = float_array(targets, "targets")
    if Y.ndim != 2:
        raise ValueError(f"targets must be a 2-D array of shape (M, n), got shape {Y.shape}")
    M, n = Y.shape
    feature_dim = check_int(feature_dim, "feature_dim", minimum=1)
    num_inits = check_int(num_inits, "num_inits", minimum=1)
    max_steps = check_int(max_steps, "max_steps", minimum=0)
    lambda_positive = positive_number(lambda_positive, "lambda_positive")
    init_scale = positive_number(init_scale, "init_scale")
    if feature_dim <= n:
        raise ValueError(
            f"feature_dim must exceed n = {n} for features to have room outside the principal "
            f"subspace, got {feature_dim}"
        )
    key = jax.random.PRNGKey(0) if key is None else check_key(key)
    keys = jax.random.split(key, num_inits)
    dt = Y.dtype

    def run(lam, k):
        problem = RegressionUFM(Y, lam, lam, feature_dim, bias=False)
        kh, kw = jax.random.split(k)
        init = Params(
            init_scale * jax.random.normal(kh, (M, feature_dim), dt),
            init_scale * jax.random.normal(kw, (n, feature_dim), dt),
            jnp.zeros((n,), dt),
        )
        # At lambda = 0 the optimal value is 0, so the test needs an absolute tolerance.
        sol = solve(problem, "lbfgs", init=init, max_steps=max_steps, atol=1e-12)
        # Bias-free model: PCA of the uncentred features, as theory.compare does.
        return sol.loss, metrics.nrc1(sol.params.H, n, center=False), sol.status

    zero = jax.vmap(lambda k: run(jnp.zeros((), dt), k))(keys)
    pos = jax.vmap(lambda k: run(jnp.asarray(lambda_positive, dt), k))(keys)
    return ZeroRegularisationCheck(
        loss_zero=np.asarray(zero[0]),
        nrc1_zero=np.asarray(zero[1]),
        nrc1_positive=np.asarray(pos[1]),
        status_zero=np.asarray(zero[2]),
        status_positive=np.asarray(pos[2]),
    )
