r"""The per-singular-value scalar problem of the P-factor UFM (docs/theory.md section 0, item 5).

With ``P`` factors, ``alpha = 1/N`` and ``gamma = (beta_1 ... beta_P)^{1/P}``, a target singular
value ``y > 0`` is fitted by the singular value ``sigma >= 0`` of the output that minimises

.. math::  g(\sigma) = \frac{\alpha}{2}(\sigma - y)^2 + \frac{P}{2}\gamma\,\sigma^{2/P}.

Writing ``sigma = y s`` gives ``g = alpha y^2 h(s)`` with the normalised problem

.. math::  h(s) = \tfrac12 (s - 1)^2 + \tfrac{P}{2}\kappa\, s^{2/P},
           \qquad \kappa = \kappa_P = \gamma\, y^{2/P - 2} / \alpha ,

so everything depends on ``(kappa, P)`` only. ``h'(s) = s^{-q}(kappa - phi(s))`` with
``q = 1 - 2/P`` and ``phi(s) = s^q (1 - s)``: the stationary points are the roots of
``phi(s) = kappa``, i.e. of ``alpha (y - sigma) = gamma sigma^{2/P - 1}``.

* ``P = 2``: ``phi(s) = 1 - s``, the root ``s = 1 - kappa`` is the unique minimiser for
  ``kappa < 1`` (soft thresholding, continuous transition, ``kappa_crit = 1``).
* ``P >= 3``: ``phi`` rises from 0 to its maximum ``phi_max = phi(s_m)`` at
  ``s_m = q/(1 + q) = (P-2)/(2P-2)`` and falls back to 0 at ``s = 1``. Roots exist iff
  ``kappa <= phi_max``; the largest one (in ``[s_m, 1)``) is a local minimum and ``s = 0`` is
  always a local minimum. The optimum is whichever has the smaller value. They tie at
  ``kappa_crit = ((P-2)/(P-1))^{(P-2)/P} / (P-1)`` where the root is ``s = (P-2)/(P-1)``:
  the transition is first order (derived exactly in :mod:`theory.symbolic_deep`).

Numerics (float64 numpy, vectorised): the largest root is found in ``u = 1 - s`` (so that the
residual ``y - sigma = y u`` keeps full relative precision when ``kappa`` is small), on the
bracket ``[0, 1 - s_m]`` where ``F(u) = log u + q log(1 - u) - log kappa`` is increasing:
bisection to a bracket of relative width ~1e-24, then safeguarded Newton steps on ``F``.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "jump",
    "kappa_crit",
    "phi_max",
    "scalar_objective",
    "largest_root",
    "optimal_scale",
]


def _check_P(P) -> int:
    if isinstance(P, bool) or not isinstance(P, int | np.integer) or P < 2:
        raise ValueError(f"P (the number of factors) must be an int >= 2, got {P!r}")
    return int(P)


def kappa_crit(P: int) -> float:
    """``kappa_P^crit = ((P-2)/(P-1))^{(P-2)/P} / (P-1)`` (``1`` for ``P = 2``)."""
    P = _check_P(P)
    return float(((P - 2) / (P - 1)) ** ((P - 2) / P) / (P - 1))


def jump(P: int) -> float:
    """``s = sigma*/y`` just below the threshold: ``(P-2)/(P-1)`` (``0`` for ``P = 2``)."""
    P = _check_P(P)
    return (P - 2) / (P - 1)


def phi_max(P: int) -> float:
    """Largest ``kappa`` with a nonzero stationary point: ``max_s s^q (1 - s)``, ``q = 1-2/P``
    (``1`` for ``P = 2``). Between ``kappa_crit`` and ``phi_max`` the nonzero local minimum
    exists but is worse than ``s = 0``."""
    P = _check_P(P)
    q = 1.0 - 2.0 / P
    sm = q / (1.0 + q)
    return float(sm**q * (1.0 - sm))


def scalar_objective(s, kappa, P: int) -> np.ndarray:
    """``h(s) = (s - 1)^2/2 + (P/2) kappa s^{2/P}`` (``h(0) = 1/2``)."""
    P = _check_P(P)
    s = np.asarray(s, dtype=np.float64)
    return 0.5 * (s - 1.0) ** 2 + 0.5 * P * np.asarray(kappa, np.float64) * s ** (2.0 / P)


def largest_root(kappa, P: int) -> np.ndarray:
    """``u = 1 - s`` for the largest root ``s`` of ``s^{1-2/P}(1 - s) = kappa``, elementwise;
    NaN where no root exists (``kappa > phi_max(P)``) or ``kappa`` is not finite; ``u = 0`` at
    ``kappa = 0``. Returned as ``u`` (not ``s``) so that ``1 - s`` keeps relative precision."""
    P = _check_P(P)
    k = np.atleast_1d(np.asarray(kappa, dtype=np.float64))
    if np.any(k < 0):
        raise ValueError("kappa must be >= 0")
    if P == 2:
        u = np.where(k <= 1.0, k, np.nan)
        return u.reshape(np.shape(kappa))
    q = 1.0 - 2.0 / P
    umax = 1.0 / (1.0 + q)  # = 1 - s_m; F is increasing on (0, umax]
    ok = np.isfinite(k) & (k > 0) & (k <= phi_max(P))
    kk = np.where(ok, k, 0.5 * phi_max(P))
    logk = np.log(kk)

    def F(u):
        return np.log(u) + q * np.log1p(-u) - logk

    lo = np.zeros_like(kk)
    hi = np.full_like(kk, umax)
    # phi(1 - u) ~ u for small u, so u ~ kappa: start the bracket there when it is valid.
    guess = np.minimum(kk, umax)
    below = F(guess) <= 0
    lo = np.where(below, guess, lo)
    hi = np.where(below, hi, guess)
    for _ in range(90):
        mid = 0.5 * (lo + hi)
        neg = F(np.where(mid > 0, mid, np.finfo(float).tiny)) <= 0
        lo = np.where(neg, mid, lo)
        hi = np.where(neg, hi, mid)
    u = 0.5 * (lo + hi)
    for _ in range(4):  # Newton on F, kept inside the bracket
        dF = 1.0 / u - q / (1.0 - u)
        step = F(u) / np.where(dF > 0, dF, 1.0)
        u = np.clip(u - step, lo, hi)
    u = np.where(k == 0, 0.0, np.where(ok, u, np.nan))
    return u.reshape(np.shape(kappa))


def optimal_scale(kappa, P: int) -> tuple[np.ndarray, np.ndarray]:
    """The global minimiser of ``h`` and its value, elementwise: ``(s*, h(s*))``.

    ``s* = 1 - u`` (largest root) if that root exists and ``h(1 - u) < h(0) = 1/2`` (for
    ``P = 2``: if ``kappa < 1``), else
    ``s* = 0`` with value ``1/2`` (a tie at ``kappa = kappa_crit`` resolves to 0). ``kappa =
    inf`` (a zero target singular value) gives ``s* = 0``.
    """
    P = _check_P(P)
    k = np.asarray(kappa, dtype=np.float64)
    u = largest_root(k, P)
    has = np.isfinite(u)
    uu = np.where(has, u, 1.0)
    kk = np.where(np.isfinite(k), k, 0.0)
    val = 0.5 * uu**2 + 0.5 * P * kk * (1.0 - uu) ** (2.0 / P)
    # P = 2 is convex: the root is the minimiser whenever it is positive (comparing values
    # would lose the continuous transition to rounding, h = 1/2 - (1 - kappa)^2/2).
    keep = has & ((uu < 1.0) if P == 2 else (val < 0.5))
    s = np.where(keep, 1.0 - uu, 0.0)
    return s, np.where(keep, val, 0.5)
