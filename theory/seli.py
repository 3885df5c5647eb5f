r"""The SELI geometry: the bias-free cross-entropy UFM as ``lambda -> 0``, any class sizes
(docs/theory.md section 12).

Thrampoulidis, Kini, Vakilian, Behnia, "Imbalance Trouble: Revisiting Neural-Collapse
Geometry", NeurIPS 2022 (arXiv 2208.05512), Sec. 3: the simplex-encoded label (SEL) matrix, the
SELI geometry (simplex-encoded-labels interpolation), its main theorem (every solution of the
unconstrained-features SVM, ``min ||W||_F^2 + ||H||_F^2`` subject to unit margins, is SELI when
``d >= K - 1``) and the regularisation-path result that follows it (the minimisers of the
bias-free cross-entropy UFM, normalised, converge to UFM-SVM solutions as ``lambda -> 0``).

Samples first (``H (N, d)``, ``W (K, d)``), labels ``y_i``, class sizes ``n_1 .. n_K``,
``N = sum n_k``, ``J = 1 1^T / K``. The SEL matrix is ``Zhat`` (``K x N``),
``Zhat[c, i] = 1{c = y_i} - 1/K``, with SVD ``Zhat = U Lambda V^T`` (rank ``K - 1``:
``1^T Zhat = 0``). SELI::

    W W^T ∝ U Lambda U^T,      H H^T ∝ V Lambda V^T,      H W^T ∝ Zhat^T,

(the paper's ``W^T W``, ``H^T H``, ``W^T H`` with features first), i.e. the balanced
factorisation ``W = U Lambda^{1/2}``, ``H = V Lambda^{1/2}`` (up to a rotation of the feature
space) of the logit matrix ``Zhat^T``, which minimises ``||Z||_*`` subject to unit margins (the
UFM-SVM's convex form); every margin ``z_{y_i} - z_c`` equals 1 at that scale. ``H`` is
class-collapsed.

Class space (no ``N``-sized array). ``Y = diag(sqrt(n)) E^T`` with ``E = Y^T diag(n)^{-1/2}``
(``N x K``, orthonormal columns) and ``1_N = E sqrt(n)``, so

    Zhat = A E^T,      A = (I - J) diag(sqrt(n))    (K x K),

and the SVD ``A = P Sigma Q^T`` gives ``Zhat``'s: ``U = P``, ``Lambda = Sigma``, ``V = E Q``. With
``D = diag(n)^{-1/2}`` and the uncentred class means ``mu = D E^T H`` (``K x d``)::

    W W^T = P Sigma P^T,      mu mu^T = D Q Sigma Q^T D,      mu W^T = D A^T = I - J

(``logits``: class-mean logits, row ``c`` is ``W mu_c``, the SEL column of class ``c``).

Normalisation: the point with ``||W||_F = ||H||_F = 1``, i.e. everything above divided by
``||Zhat||_* = tr Sigma`` (``tr(W W^T) = sum_c n_c ||mu_c||^2 = 1``, logits ``(I - J) /
||Zhat||_*``, every margin ``1 / ||Zhat||_*``). ``W W^T`` depends on the class proportions only;
scaling every ``n_k`` by ``c`` scales ``mu mu^T`` by ``1/c`` and the logits by ``1/sqrt(c)``.
For this package's penalties ``lambda_H/2 ||H||^2 + lambda_W/2 ||W||^2`` with ``lambda_H !=
lambda_W`` the limit directions are the same (rescale ``W`` by ``(lambda_H/lambda_W)^{1/4}`` and
``H`` by its inverse: the logits do not change); at finite ``lambda`` use the certified convex
optimum instead. Width: ``d >= K - 1``.

Balanced classes give the simplex ETF, ``W W^T = (I - J)/(K - 1)``. For a two-level step
imbalance (``K_A = K_B = 5``, majority size ``R`` times the minority's) two minority rows have
cosine 0.0334, 0.338, 0.873 and a minority row's norm over a majority row's is 0.612, 0.416,
0.301 for ``R = 10, 100, 10^4``. No minority collapse at ``lambda -> 0`` for any finite ``R``:
for two classes of the same size ``m``, ``e_c - e_c'`` is a singular vector of ``A`` (left and
right) with singular value ``sqrt(m)``, so ``||w_c - w_c'||^2 = 2 sqrt(m) / ||Zhat||_* > 0``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ufm._validate import float_dtype

from .imbalanced_mse import _sizes

__all__ = ["SELIGeometry", "seli"]


class SELIGeometry(NamedTuple):
    """The SELI geometry for class sizes ``n`` (``K x K``, normalised to ``||W||_F = ||H||_F = 1``).

    Attributes:
        WWT: ``W W^T = P Sigma P^T / tr Sigma`` ``(K, K)``, trace 1.
        class_mean_gram: ``mu mu^T = D Q Sigma Q^T D / tr Sigma`` of the uncentred class means
            ``(K, K)``.
        logits: class-mean logits ``W mu_c`` (row ``c``), ``(I - J) / tr Sigma`` ``(K, K)``.
        bias: zeros ``(K,)`` (the SELI limit is that of the bias-free model).
        singular_values: ``Sigma``, the singular values of ``Zhat``, descending ``(K,)``; the
            last is exactly 0.
        nuclear_norm: ``||Zhat||_* = tr Sigma``; multiply the logits and Grams by it for the
            unit-margin scale of the UFM-SVM.
        rank: ``K - 1``, the rank of ``Zhat`` (the smallest width ``d`` that realises SELI).
    """

    WWT: jax.Array
    class_mean_gram: jax.Array
    logits: jax.Array
    bias: jax.Array
    singular_values: jax.Array
    nuclear_norm: jax.Array
    rank: int


def seli(class_sizes, dtype=None) -> SELIGeometry:
    """The SELI geometry of the bias-free cross-entropy UFM with class sizes ``n = class_sizes``
    (module docstring: formulas, normalisation ``||W||_F = ||H||_F = 1``, source).

    Args:
        class_sizes: ``K >= 2`` positive integers (concrete), ``n_k`` samples in class ``k``.
        dtype: float32 or float64 of the returned arrays (default: JAX's default float). The
            computation is a ``K x K`` SVD in float64 numpy.

    Example: the SELI distance of a trained classifier ``W``::

        ufm.metrics.gram_distance(W @ W.T, theory.classification.seli(sizes).WWT)
    """
    dt = float_dtype(dtype)
    n = _sizes(class_sizes).astype(np.float64)
    K = n.shape[0]
    A = (np.eye(K) - np.full((K, K), 1.0 / K)) * np.sqrt(n)[None, :]  # Zhat = A E^T
    P, sig, Qt = np.linalg.svd(A)
    sig = sig.copy()
    sig[K - 1] = 0.0  # 1^T A = 0: the K-th singular value is 0, its computed value is rounding
    total = float(np.sum(sig))
    WWT = (P * sig) @ P.T / total
    Dq = Qt.T / np.sqrt(n)[:, None]  # D Q
    gram = (Dq * sig) @ Dq.T / total
    logits = (np.eye(K) - np.full((K, K), 1.0 / K)) / total
    return SELIGeometry(
        jnp.asarray(0.5 * (WWT + WWT.T), dt),
        jnp.asarray(0.5 * (gram + gram.T), dt),
        jnp.asarray(logits, dt),
        jnp.zeros((K,), dt),
        jnp.asarray(sig, dt),
        jnp.asarray(total, dt),
        K - 1,
    )
