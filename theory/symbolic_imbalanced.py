r"""Symbolic (sympy) derivation of the imbalanced MSE classification-UFM thresholds.

Objective (:class:`ufm.ClassificationUFM`, ``loss="mse"``; class sizes ``n_1 .. n_K``,
``N = sum_k n_k``; the feature penalty is not divided by ``N``)::

    L = 1/(2N) ||H W^T + 1 b^T - Y||_F^2 + lambda_H/2 ||H||_F^2 + lambda_W/2 ||W||_F^2

Sources: the soft-threshold of the target's singular values (Andriopoulos et al., NeurIPS 2024,
Thm 4.1; Dang et al., ICML 2023, imbalanced MSE classification); minority collapse (Fang et al.,
PNAS 2021). Each function performs the sympy steps; :mod:`theory.imbalanced_mse` evaluates the
results numerically.

**Bias-free per-class threshold** (:func:`bias_free_class_threshold`). ``Y^T Y = diag(n)``, so
the optimum is diagonal in class space and class ``k`` is its own scalar problem: ``n_k``
collapsed samples with feature ``h``, classifier row ``w`` and logit ``p = w . h``. The cheapest
split of ``p = a q`` (``||w|| = a``, ``||h|| = q``) under ``lambda_W a^2/2 + n_k lambda_H q^2/2``
is ``a^2 = sqrt(n_k lambda_H / lambda_W) p``, cost ``sqrt(n_k lambda_H lambda_W) p``; then

    f_k(p) = n_k/(2N) (p - 1)^2 + sqrt(n_k lambda_H lambda_W) p,
    p* = 1 - N sqrt(lambda_H lambda_W / n_k),

positive iff ``n_k > N^2 lambda_H lambda_W``; ``||w_k||^2 = sqrt(lambda_H/lambda_W)(sqrt(n_k) -
tau)``, ``tau = N sqrt(lambda_H lambda_W)``, and ``f_k(p*) = (tau sqrt(n_k) - tau^2/2)/N``
(``n_k/(2N)`` at ``p = 0``).

**Secular equation** (:func:`secular_identity`). With a free bias the class-space Gram of the
centred target is ``diag(n) - n n^T/N``. The matrix determinant lemma gives
``det(diag(n) - n n^T/N - mu I) = prod_k (n_k - mu) (1 - (1/N) sum_k n_k^2/(n_k - mu))`` and,
since ``sum_k n_k = N``, ``1 - (1/N) sum_k n_k^2/(n_k - mu) = -(mu/N) sum_k n_k/(n_k - mu)``.

**Two-level step** (:func:`two_level_coupled_root`): ``K_A n_A/(n_A - mu) + K_B n_B/(n_B - mu)
= 0`` has the root ``mu_c = (K_A + K_B) n_A n_B / (K_A n_A + K_B n_B)``.
"""

from __future__ import annotations

from typing import NamedTuple

import sympy as sp

__all__ = [
    "ClassThreshold",
    "bias_free_class_threshold",
    "secular_identity",
    "two_level_coupled_root",
]


class ClassThreshold(NamedTuple):
    """Sympy results of :func:`bias_free_class_threshold` (symbols ``n_k, N, lambda_H,
    lambda_W``): the optimal logit ``p*``, the class size at which it vanishes, ``||w_k||^2`` and
    the class's optimal share of the loss (for ``p* > 0``)."""

    logit: sp.Expr
    size_threshold: sp.Expr
    row_norm_sq: sp.Expr
    loss: sp.Expr
    symbols: tuple


def bias_free_class_threshold() -> ClassThreshold:
    """Derive the bias-free per-class problem (module docstring)."""
    nk, N, lH, lW, a, p, q = sp.symbols("n_k N lambda_H lambda_W a p q", positive=True)
    # Cheapest split of p = a q: minimise over a with q = p/a.
    pen = lW * a**2 / 2 + nk * lH * (p / a) ** 2 / 2
    (a2,) = [s**2 for s in sp.solve(sp.diff(pen, a), a) if s.is_positive is not False]
    cost = sp.simplify(pen.subs(a, sp.sqrt(a2)))
    # Scalar problem in p.
    pr = sp.symbols("p", real=True)
    f = nk / (2 * N) * (pr - 1) ** 2 + cost.subs(p, pr)
    (pstar,) = sp.solve(sp.diff(f, pr), pr)
    size = sp.solve(sp.Eq(pstar, 0), nk)
    (size,) = size
    row = sp.simplify(a2.subs(p, pstar))
    loss = sp.simplify(f.subs(pr, pstar))
    return ClassThreshold(sp.simplify(pstar), sp.simplify(size), row, loss, (nk, N, lH, lW))


def secular_identity(K: int) -> sp.Expr:
    """``det(diag(n) - n n^T/N - mu I) - prod_k (n_k - mu) (-(mu/N) sum_k n_k/(n_k - mu))`` for
    ``K`` symbolic sizes with ``N = sum_k n_k``, simplified (it is identically zero)."""
    n = sp.symbols(f"n1:{K + 1}", positive=True)
    mu = sp.symbols("mu")
    N = sum(n)
    M = sp.diag(*n) - sp.Matrix(n) * sp.Matrix(n).T / N - mu * sp.eye(K)
    secular = -(mu / N) * sum(nk / (nk - mu) for nk in n)
    rhs = sp.prod([nk - mu for nk in n]) * secular
    return sp.simplify(sp.expand(M.det() - sp.together(rhs)))


def two_level_coupled_root() -> tuple[sp.Expr, tuple]:
    """The root of ``K_A n_A/(n_A - mu) + K_B n_B/(n_B - mu) = 0`` and the symbols
    ``(K_A, n_A, K_B, n_B)``."""
    KA, nA, KB, nB = sp.symbols("K_A n_A K_B n_B", positive=True)
    mu = sp.symbols("mu")
    (root,) = sp.solve(sp.together(KA * nA / (nA - mu) + KB * nB / (nB - mu)), mu)
    return sp.factor(root), (KA, nA, KB, nB)
