r"""Symbolic (sympy) derivation of the balanced label-smoothing optimum (docs/theory.md
section 10; :mod:`theory.label_smoothing` evaluates it numerically).

Setting: :mod:`theory.symbolic_classification`'s (``K`` classes of ``n`` samples, the feature
penalty not divided by ``N``) with the smoothed cross-entropy ``logsumexp(z) - q . z`` of
PyTorch's convention, ``q = (1 - delta) e_k + (delta/K) 1`` (Guo et al., TMLR 2025, study this
loss in the UFM). Steps, each performed here rather than restated:

1. On the self-dual simplex ETF the logits of a class-``k`` sample are ``z_k = t`` and
   ``z_j = -t/(K-1)``; ``q . z = (1 - delta) t`` and ``q . 1 = 1`` (shift invariance).
2. The data term is ``log(1 + (K-1) exp(-K t/(K-1))) + delta t``; with the penalty ``K s t`` of
   :func:`theory.symbolic_classification.cross_entropy`, ``F(t) = log(1 + (K-1)
   exp(-K t/(K-1))) + (K s + delta) t``, convex, with ``F'(0) = K s + delta - 1``.
3. ``F'(t) = 0`` through ``u = exp(K t/(K-1))``: ``u* = (K - (K-1)(K s + delta))/(K s +
   delta)``; ``t* > 0`` iff ``s < (1 - delta)/K`` (the zero threshold ``K s + delta >= 1``).
4. ``F(t*)`` equals plain cross-entropy's ``f*`` at ``s + delta/K``.
5. As ``s -> 0`` the margin ``K t*/(K-1)`` tends to ``log(1 + K(1 - delta)/delta)`` and
   ``F(t*)`` to the entropy of ``q``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import sympy

from .symbolic_classification import K, _positive_below_root, cross_entropy, s, t

__all__ = ["SmoothedCrossEntropy", "delta", "smoothed_cross_entropy"]

delta = sympy.Symbol("delta", positive=True)


@dataclass(frozen=True)
class SmoothedCrossEntropy:
    """The derived expressions (sympy) of the module docstring's steps."""

    data_at_etf: sympy.Expr  # log(1 + (K-1) e^{-K t/(K-1)}) + delta t
    F: sympy.Expr  # data_at_etf + K s t
    dF: sympy.Expr
    d2F: sympy.Expr  # > 0
    dF_at_zero: sympy.Expr  # K s + delta - 1
    threshold: sympy.Expr  # s_c = (1 - delta)/K
    t_stationary: sympy.Expr  # ((K-1)/K) log((K - (K-1)(K s + delta))/(K s + delta))
    loss_active: sympy.Expr  # F(t*), plain CE's f* at s + delta/K
    limit_margin: sympy.Expr  # log(1 + K (1 - delta)/delta)
    limit_loss: sympy.Expr  # entropy of q


@functools.cache
def smoothed_cross_entropy() -> SmoothedCrossEntropy:
    """Derive the smoothed scale problem and its solution (module docstring, steps 1-5)."""
    plain = cross_entropy()
    # 1. logits and targets of a class-0 sample, for a concrete K (the sums need a length),
    # then the same identities checked symbolically in K.
    for k in (2, 3, 5):
        z = [t] + [-t / (k - 1)] * (k - 1)
        q = [1 - delta + delta / k] + [delta / k] * (k - 1)
        qz = sum(qi * zi for qi, zi in zip(q, z, strict=True))
        assert sympy.simplify(qz - (1 - delta) * t) == 0
        assert sympy.simplify(sum(q) - 1) == 0
        lse = sympy.log(sum(sympy.exp(zi) for zi in z))
        data = lse - qz
        closed = sympy.log(1 + (k - 1) * sympy.exp(-k * t / (k - 1))) + delta * t
        assert sympy.simplify(sympy.expand(sympy.exp(data) - sympy.exp(closed))) == 0
    # 2. In K: the true-class part (1 - delta + delta/K) t plus (K-1) off-class parts
    # (delta/K)(-t/(K-1)) is (1 - delta) t; the log-sum-exp minus t is plain CE's term.
    qz = (1 - delta + delta / K) * t + (K - 1) * (delta / K) * (-t / (K - 1))
    assert sympy.simplify(qz - (1 - delta) * t) == 0
    data_at_etf = plain.ce_at_etf + delta * t  # logsumexp(z) - q.z = [lse - t] + delta t
    F = data_at_etf + plain.penalty
    dF = sympy.simplify(sympy.diff(F, t))
    d2F = sympy.simplify(sympy.diff(F, t, 2))
    assert sympy.simplify(d2F - plain.d2F) == 0  # delta t is linear: same curvature, convex
    dF0 = sympy.simplify(dF.subs(t, 0))
    assert sympy.simplify(dF0 - (K * s + delta - 1)) == 0
    # 3. F'(t) = 0 through u = e^{K t/(K-1)}.
    u = sympy.Symbol("u", positive=True)
    dF_u = sympy.simplify(dF.subs(t, (K - 1) / K * sympy.log(u)))
    (u_star,) = sympy.solve(sympy.Eq(dF_u, 0), u)
    sd = K * s + delta
    assert sympy.simplify(u_star - (K - (K - 1) * sd) / sd) == 0
    t_stat = (K - 1) / K * sympy.log((K - (K - 1) * sd) / sd)
    # t* > 0 iff u* > 1 iff (K s + delta)(u* - 1) > 0: affine in s with slope -K^2.
    thr = _positive_below_root(sympy.expand(sympy.simplify(sd * (u_star - 1))), s)
    assert sympy.simplify(thr - (1 - delta) / K) == 0
    # 4. F(t*) is plain CE's f* at s + delta/K (compare the exponentials: log is injective).
    loss_active = plain.loss_active.subs(s, s + delta / K)
    assert sympy.simplify(sympy.exp(F.subs(t, t_stat)) - sympy.exp(loss_active)) == 0
    # 5. lambda -> 0.
    margin = sympy.limit(K / (K - 1) * t_stat, s, 0)
    assert sympy.simplify(sympy.exp(margin) - (1 + K * (1 - delta) / delta)) == 0
    p, o = 1 - delta + delta / K, delta / K
    entropy = -p * sympy.log(p) - (K - 1) * o * sympy.log(o)
    limit_loss = sympy.limit(loss_active, s, 0)
    # The logarithms' arguments are positive for 0 < delta < 1, K >= 2: expand them.
    assert sympy.simplify(sympy.expand_log(limit_loss - entropy, force=True)) == 0
    return SmoothedCrossEntropy(
        data_at_etf=data_at_etf,
        F=F,
        dF=dF,
        d2F=d2F,
        dF_at_zero=dF0,
        threshold=thr,
        t_stationary=t_stat,
        loss_active=loss_active,
        limit_margin=sympy.log(1 + K * (1 - delta) / delta),
        limit_loss=entropy,
    )
