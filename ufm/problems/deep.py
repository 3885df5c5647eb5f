"""The deep (and extended) unconstrained feature model: ``L`` weight layers on free features.

Tirer & Bruna (ICML 2022, section 4) added a second weight layer and a ReLU to the UFM;
Súkeník, Mondelli & Lampert (NeurIPS 2023, arXiv 2305.13165) went to ``L`` layers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .. import metrics
from .._certificate import gradient_rounding, violation
from .._validate import (
    bias_option,
    check_finite,
    check_int,
    check_lambda,
    check_memory,
    check_shape,
    float_array,
    float_dtype,
    labels_array,
)
from ._base import Problem, gaussian

ACTIVATIONS = ("relu", "linear")


class DeepParams(NamedTuple):
    """Variables of a :class:`DeepUFM`, samples first.

    Attributes:
        H: free features ``X_1``, shape ``(N, d_1)``.
        Ws: the weights, first layer first: ``W_l`` of shape ``(d_{l+1}, d_l)`` for ``l < L``
            and ``W_L`` of shape ``(n, d_L)``.
        b: output bias, shape ``(n,)`` (zeros without bias).
    """

    H: jax.Array
    Ws: tuple[jax.Array, ...]
    b: jax.Array


class DeepUFM(Problem):
    r"""Deep UFM: ``Z = sigma(... sigma(H W_1^T) ...) W_L^T (+ 1 b^T)`` against targets ``Y``.

    For ``widths = (d_1, ..., d_L)``: ``X_1 = H`` of shape ``(N, d_1)``,
    ``X_{l+1} = sigma(X_l W_l^T)`` and ``Z = X_L W_L^T`` (plus a free, unregularised bias when
    ``bias="free"``), ``sigma`` the ReLU or the identity. The objective (the convention of Tirer &
    Bruna 2022 and Súkeník et al. 2023: data term averaged over ``N``, penalties *not* divided by
    ``N``)::

        f = 1/(2N) ||Z - Y||_F^2 + lambda_H/2 ||H||_F^2 + sum_l lambda_{W_l}/2 ||W_l||_F^2

    ``widths = (d, d)`` with ``activation="relu"`` is the extended UFM of Tirer & Bruna;
    ``widths = (d,)`` is the ordinary one-layer UFM (for one-hot targets the MSE
    :class:`ufm.ClassificationUFM`, with its global-optimality certificate).

    The landscape is *not* benign for ``L >= 2`` (docs/theory.md section 8): the origin is a strict
    local minimum and spurious stationary points appear near the first-order transition. So a
    ``successful`` status here means a stationary point that passed the stopping test, never
    more (for ``L >= 2``); solve with ``restarts=R`` and compare with :mod:`theory.deep`.
    :meth:`default_init` starts away from the origin's basin (see there).

    Args:
        targets: ``Y (N, n)``, finite, ``N >= 2``.
        lambda_H: feature regularisation, scalar >= 0.
        lambda_W: weight regularisation, a scalar (every layer) or ``L`` values >= 0.
        widths: ``(d_1, ..., d_L)``, ints >= 1.
        activation: ``"relu"`` or ``"linear"``.
        bias: ``"none"`` (the default: no output bias) or ``"free"`` (the unregularised
            output bias ``b``); ``True``/``False`` are aliases of ``"free"``/``"none"``. The
            setting every problem shares (:func:`ufm._validate.bias_option`); a regularised
            bias (a number ``lambda_b``) is :class:`ufm.ClassificationUFM`'s only. Read back
            as :attr:`bias_mode` (and :attr:`has_bias`, :attr:`bias`: whether ``b`` is
            present).

    Use :meth:`from_labels` for one-hot targets (the classification setting; NC metrics are
    recorded then). Variables: :class:`ufm.DeepParams`.
    """

    _leaves = ("targets", "lambda_H", "lambda_W", "labels")
    _ndims = {"targets": 2, "lambda_H": 0, "lambda_W": 1, "labels": 1}
    _static = ("widths", "activation", "bias", "num_classes")
    sweep_fields = ("lambda_H", "lambda_W")

    def __init__(
        self,
        targets,
        lambda_H,
        lambda_W,
        widths: Sequence[int],
        activation: str = "relu",
        bias: str | bool = "none",
        *,
        dtype=None,
    ):
        targets = float_array(targets, "targets", dtype)
        if targets.ndim != 2:
            raise ValueError(
                f"targets must be a 2-D array of shape (N, n) (samples first), got shape "
                f"{targets.shape}"
            )
        N, n = targets.shape
        if N < 2 or n < 1:
            raise ValueError(f"targets must have shape (N, n) with N >= 2, n >= 1, got {(N, n)}")
        check_finite(targets, "targets")
        if isinstance(widths, str) or not isinstance(widths, Sequence | np.ndarray):
            raise TypeError(
                f"widths must be a sequence of ints >= 1 (d_1, ..., d_L), got {widths!r}"
            )
        widths = tuple(check_int(w, f"widths[{i}]", minimum=1) for i, w in enumerate(widths))
        if not widths:
            raise ValueError("widths must hold at least one layer width (d_1, ..., d_L), got ()")
        L = len(widths)
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
        dt = targets.dtype
        mode, _ = bias_option(bias, dt, regularised=False, owner="DeepUFM")
        lambda_H = check_lambda(lambda_H, "lambda_H", dt)
        if np.ndim(lambda_W) == 0:
            lambda_W = jnp.broadcast_to(check_lambda(lambda_W, "lambda_W", dt), (L,))
        elif np.shape(lambda_W) != (L,):
            raise ValueError(
                f"lambda_W must be a scalar or one value per layer, shape (L,) = ({L},) for "
                f"widths {widths}, got shape {np.shape(lambda_W)}"
            )
        else:
            lambda_W = jnp.stack(
                [check_lambda(lambda_W[i], f"lambda_W[{i}]", dt) for i in range(L)]
            )
        shapes = [(N, widths[0]), *zip([*widths[1:], n], widths, strict=True)]
        check_memory(
            shapes,
            dt,
            f"the widths d_1, ..., d_L = {', '.join(map(str, widths))} are too large for "
            f"N = {N} samples: the variables H (N, d_1) and W_l (d_(l+1), d_l)",
        )
        self.targets, self.lambda_H, self.lambda_W = targets, lambda_H, lambda_W
        self.labels, self.num_classes = None, None
        self.widths, self.activation = widths, activation
        self.bias = mode == "free"  # static: whether b is present

    @classmethod
    def from_labels(
        cls,
        labels,
        num_classes: int,
        lambda_H,
        lambda_W,
        widths: Sequence[int],
        activation: str = "relu",
        bias: str | bool = "none",
        *,
        dtype=None,
    ) -> DeepUFM:
        """The classification deep UFM: one-hot targets ``Y = onehot(labels)`` of shape
        ``(N, K)``; NC1-NC4 are recorded layer by layer."""
        K = check_int(num_classes, "num_classes", minimum=2)
        labels = labels_array(labels, K)
        dt = float_dtype(dtype)
        Y = jax.nn.one_hot(labels, K, dtype=dt)
        obj = cls(Y, lambda_H, lambda_W, widths, activation, bias, dtype=dt)
        obj.labels, obj.num_classes = labels.astype(jnp.int32), K
        return obj

    def __repr__(self) -> str:
        N, n = self.targets.shape[-2:]
        cls = f", K={self.num_classes}" if self.num_classes else ""
        return (
            f"DeepUFM(N={N}, n={n}{cls}, widths={self.widths}, activation={self.activation!r}, "
            f"bias={self.bias_mode!r}, lambda_H={self.lambda_H}, lambda_W={self.lambda_W}, "
            f"dtype={self.dtype})"
        )

    # -- sizes -----------------------------------------------------------------------------
    @property
    def num_samples(self) -> int:
        return self.targets.shape[-2]

    @property
    def target_dim(self) -> int:
        return self.targets.shape[-1]

    @property
    def num_layers(self) -> int:
        """``L``, the number of weight matrices."""
        return len(self.widths)

    @property
    def dtype(self):
        return self.targets.dtype

    @property
    def has_bias(self) -> bool:
        """Whether the output has the bias ``b`` (also :attr:`bias`)."""
        return self.bias

    @property
    def bias_mode(self) -> str:
        """The bias setting: ``"free"`` or ``"none"``."""
        return "free" if self.bias else "none"

    @property
    def smooth(self) -> bool:
        """Whether the objective is differentiable everywhere: ``False`` with a ReLU between
        two weight layers, whose kinks can keep a minimiser's gradient away from 0
        (``ufm.solve`` then also ends a run that makes no progress, status ``no_progress``)."""
        return self.activation != "relu" or self.num_layers == 1

    def weight_shapes(self) -> list[tuple[int, int]]:
        """``[(d_2, d_1), ..., (d_L, d_{L-1}), (n, d_L)]``."""
        outs = [*self.widths[1:], self.target_dim]
        return list(zip(outs, self.widths, strict=True))

    # -- the model -------------------------------------------------------------------------
    def _sigma(self, X):
        return jax.nn.relu(X) if self.activation == "relu" else X

    def layer_features(self, params: DeepParams) -> list[jax.Array]:
        """``[X_1, ..., X_L]``: the input of every weight layer (``X_1 = H``), ``(N, d_l)``."""
        X = params.H
        feats = [X]
        for W in params.Ws[:-1]:
            X = self._sigma(X @ W.T)
            feats.append(X)
        return feats

    def output(self, params: DeepParams) -> jax.Array:
        """``Z = X_L W_L^T (+ 1 b^T)``, shape ``(N, n)``."""
        Z = self.layer_features(params)[-1] @ params.Ws[-1].T
        return Z + params.b if self.bias else Z

    def objective(self, params: DeepParams) -> jax.Array:
        """``f`` exactly as in the class docstring (a scalar)."""
        E = self.output(params) - self.targets
        val = 0.5 / self.num_samples * jnp.sum(E**2) + 0.5 * self.lambda_H * jnp.sum(params.H**2)
        for lam, W in zip(self.lambda_W, params.Ws, strict=True):
            val = val + 0.5 * lam * jnp.sum(W**2)
        return val

    def valid(self) -> jax.Array:
        return (self.lambda_H >= 0) & jnp.all(self.lambda_W >= 0)

    def certificate(self, params: DeepParams):
        """For ``L = 1`` (the ordinary UFM) the convex-reduction certificate of
        ``ufm/_certificate.py``; none for ``L >= 2``."""
        if self.num_layers != 1:
            return super().certificate(params)

        def data_term(Z, b):
            E = Z + b - self.targets if self.bias else Z - self.targets
            return 0.5 / self.num_samples * jnp.sum(E**2)

        weight = jnp.sqrt(self.lambda_H * self.lambda_W[0])
        p = (params.H, params.Ws[0], params.b)
        rounding = gradient_rounding(p, jnp.abs(self.targets))
        return violation(data_term, weight, p, rounding, 1.0 / self.num_samples)

    def trajectory_metrics(self, params: DeepParams) -> dict[str, jax.Array]:
        """Layer-wise collapse, one value per layer (arrays of shape ``(L,)``): NC1-NC4 of
        :func:`ufm.metrics.deep_nc` for a problem built :meth:`from_labels`, else NRC1-NRC3 of
        :func:`ufm.metrics.deep_nrc`."""
        feats = self.layer_features(params)
        if self.labels is not None:
            out = metrics.deep_nc(
                feats,
                self.labels,
                self.num_classes,
                weights=params.Ws,
                biases=params.b if self.bias else None,
            )
            keys = ("nc1", "nc2", "nc3", "nc4")
        else:
            out = metrics.deep_nrc(feats, params.Ws, self.targets)
            keys = ("nrc1", "nrc2", "nrc3")
        return {k: out[k] for k in keys}

    # -- initialisation --------------------------------------------------------------------
    def default_init(self, key: jax.Array, scale: float = 1.0) -> DeepParams:
        r"""Gaussian factors at the scale of a balanced optimum, away from the origin's basin.

        With ``P = L + 1`` factors, penalties ``beta = (lambda_H, lambda_W_1, ...)``,
        ``gamma = (prod beta)^{1/P}`` and ``y`` the top singular value of the (centred, with a
        bias) targets, a balanced optimum gives every factor ``j`` singular values
        ``sqrt(gamma / beta_j) s^{1/P}`` with ``s <= y`` (docs/theory.md section 0, item 5). Each
        factor is drawn with i.i.d. ``N(0, std_j^2)`` entries whose Frobenius norm matches
        ``r`` such singular values at ``s = y`` (``r = min(widths, n)``). Random factors are not
        aligned, so their product is far smaller than the product of their norms (for ``L = 4``
        it started in the origin's basin in every restart); all factors are then multiplied by
        one constant that makes the output's Frobenius norm equal the targets'
        (``||Z_0|| = ||Y_c||``), which keeps them balanced. ``scale`` multiplies every factor
        afterwards. A small init (the papers' ``N(0, 0.1^2)`` or less) can start in the basin
        of the origin, which is a strict local minimum for ``L >= 2``; pass your own ``init``
        to reproduce it. Where a lambda is 0, ``gamma / beta_j`` is replaced by 1.
        """
        N, n, L = self.num_samples, self.target_dim, self.num_layers
        dt = self.dtype
        Y = self.targets - jnp.mean(self.targets, axis=0) if self.bias else self.targets
        y = jnp.sqrt(jnp.maximum(jnp.linalg.eigvalsh(Y.T @ Y)[-1], 0.0))
        y = jnp.where(y > 0, y, 1.0)
        betas = jnp.concatenate([self.lambda_H[None], self.lambda_W])
        P = L + 1
        positive = jnp.all(betas > 0)
        safe = jnp.where(positive, betas, 1.0)
        gamma = jnp.exp(jnp.mean(jnp.log(safe)))
        sv = jnp.sqrt(gamma / safe) * y ** (1.0 / P)  # (P,) target singular value per factor
        r = min(min(self.widths), n)
        shapes = [(N, self.widths[0]), *self.weight_shapes()]
        keys = jax.random.split(key, P)
        factors = []
        for j, (shape, k) in enumerate(zip(shapes, keys, strict=True)):
            std = sv[j] * float(np.sqrt(r / (shape[0] * shape[1])))
            factors.append(gaussian(k, shape, dt, std))
        params = DeepParams(factors[0], tuple(factors[1:]), jnp.zeros((n,), dt))
        out = jnp.linalg.norm(self.layer_features(params)[-1] @ params.Ws[-1].T)
        ratio = jnp.where(out > 0, jnp.linalg.norm(Y) / jnp.where(out > 0, out, 1.0), 1.0)
        c = scale * ratio ** (1.0 / P)
        return jax.tree_util.tree_map(lambda x: c * x, params)

    def check_init(self, init) -> DeepParams:
        if not isinstance(init, DeepParams):
            if isinstance(init, tuple | list) and len(init) == 3:
                init = DeepParams(*init)
            else:
                raise TypeError(
                    f"init must be a ufm.DeepParams(H, Ws, b) or None, got {type(init)}"
                )
        N, n, L = self.num_samples, self.target_dim, self.num_layers
        H = float_array(init.H, "init.H", self.dtype)
        check_shape(H, (N, self.widths[0]), "init.H", f"(N, d_1) = ({N}, {self.widths[0]})")
        if not isinstance(init.Ws, tuple | list) or len(init.Ws) != L:
            raise ValueError(f"init.Ws must be a sequence of L = {L} weight matrices")
        Ws = []
        for i, (W, shape) in enumerate(zip(init.Ws, self.weight_shapes(), strict=True)):
            W = float_array(W, f"init.Ws[{i}]", self.dtype)
            check_shape(W, shape, f"init.Ws[{i}]", str(shape))
            check_finite(W, f"init.Ws[{i}]")
            Ws.append(W)
        b = float_array(init.b, "init.b", self.dtype)
        check_shape(b, (n,), "init.b", f"(n,) = ({n},)")
        check_finite(H, "init.H")
        check_finite(b, "init.b")
        return DeepParams(H, tuple(Ws), b if self.bias else jnp.zeros_like(b))

    def precondition_scales(self) -> DeepParams:
        """Gradient solvers optimise ``H / sqrt(N)``, ``W_l / sqrt(N)`` and ``b``: the data term
        is averaged over ``N`` while the penalties are not, as in the classification UFM
        (:meth:`ufm.ClassificationUFM.precondition_scales`)."""
        s = jnp.sqrt(jnp.asarray(self.num_samples, self.dtype))
        return DeepParams(s, tuple(s for _ in self.widths), jnp.ones((), self.dtype))
