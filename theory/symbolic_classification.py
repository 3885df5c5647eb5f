r"""Symbolic (sympy) derivation of the classification-UFM thresholds and optimal losses.

Sources
-------
* Tirer & Bruna, "Extended Unconstrained Features Model for Exploring Deep Neural Collapse",
  ICML 2022 (arXiv 2202.08087): MSE UFM, bias-free and free-bias cases.
* Zhou, Li, Ding, You, Qu, Zhu, "On the Optimization Landscape of Neural Collapse under MSE
  Loss", ICML 2022 (arXiv 2203.01238): simplex ETF with an unregularised bias.
* Zhu, Ding, Zhou, Li, You, Sulam, Qu, "A Geometric Analysis of Neural Collapse with
  Unconstrained Features", NeurIPS 2021 (arXiv 2105.02375): cross-entropy UFM.
* ``docs/theory.md``: section 0 (master lemma), section 2 (a)-(c) and section 3.  Several
  of those items are tagged [derived]/[recalled]; this module re-derives them rather than
  restating them.

Setting
-------
``K`` classes, ``n`` samples per class, ``N = K n``, targets ``Y = I_K \otimes 1_n^T``
(paper convention: samples are columns).  The objective is

.. math::

    f = \frac{1}{N} \sum_{\text{samples}} \ell(W h + b) + \frac{\lambda_W}{2}\|W\|^2
        + \frac{\lambda_H}{2}\|H\|^2 \; \Big(+ \frac{\lambda_b}{2}\|b\|^2\Big),

with the feature penalty *not* divided by ``N``.  For MSE, ``\ell(z) = \frac12\|z - y\|^2``.

Derivations (each function performs the sympy steps, it does not just restate the result)
-----------------------------------------------------------------------------------------
**Master lemma (docs/theory.md section 0).**  For a fixed singular value ``sigma`` of
``Z = W H``, the cheapest split ``sigma = a b`` with penalty
``(beta_W/2) a^2 + (beta_H/2) b^2`` is found by setting the derivative in ``a`` to zero:
``a^2 = sqrt(beta_H/beta_W) sigma``, cost ``sqrt(beta_W beta_H) sigma`` (the nuclear-norm
form).  Each singular direction of the target with value ``y`` then
solves ``min_{sigma >= 0} (alpha/2)(sigma - y)^2 + sqrt(beta_W beta_H) sigma``.

**(a) MSE, no bias.**  ``Y Y^T = n I_K``: ``K`` singular values ``sqrt(n)``.  ``alpha = 1/N``,
``beta_W = lambda_W``, ``beta_H = lambda_H``.  The stationary point is
``sigma = sqrt(n) - tau = sqrt(n)(1 - kappa)`` with ``tau = N sqrt(lambda_W lambda_H)`` and
``kappa = K sqrt(n lambda_W lambda_H)``; it is positive iff ``kappa < 1`` (root of
``sigma(kappa) = 0``, negative slope).  Per direction the optimum is ``(kappa - kappa^2/2)/K``,
so ``f* = kappa - kappa^2/2`` (``kappa < 1``) and ``1/2`` otherwise.  Class-mean logits
``W Hbar = (1 - kappa) I``, ``W W^T = (1-kappa) sqrt(n lambda_H/lambda_W) I``,
``Hbar^T Hbar = (1-kappa) sqrt(lambda_W/(n lambda_H)) I``, ``W^T = sqrt(n lambda_H/lambda_W)
Hbar``.

**(b) MSE, free bias.**  Eliminating ``b`` replaces ``Y`` by ``Y (I - 1 1^T/N) =
(I - J) \otimes 1_n^T``, with Gram ``n (I - J)``: ``K - 1`` singular values ``sqrt(n)`` and one
zero (no cost, no contribution).  ``f* = ((K-1)/K)(kappa - kappa^2/2)``, or ``(K-1)/(2K)``;
``b* = Y 1/N - Z* 1/N = 1/K``.

**(c) MSE, ridge bias.**  ``b 1_N^T = sqrt(N) b v_0^T`` with ``v_0 = 1_N/sqrt(N)``, so the bias
only touches the column direction ``v_0``.  The problem in ``Z`` (weighted least squares plus
nuclear norm) is strictly convex and invariant under class and within-class permutations, so
its unique optimum is ``Z = A \otimes 1_n^T`` with ``A = a I + c 1 1^T``: diagonal in the
singular basis of ``Y``, with ``K - 1`` centred directions (exactly as in (b)) and the mean
direction ``u_0 v_0^T`` (``u_0 = 1_K/sqrt(K)``, target value ``sqrt(n)``), on which
``b = beta u_0`` and

.. math::  g(\sigma_0, \beta) = \frac{\alpha}{2}(\sigma_0 - \sqrt n + \sqrt N \beta)^2
           + \sqrt{\lambda_W\lambda_H}\,\sigma_0 + \frac{\lambda_b}{2}\beta^2 .

Minimising over ``beta`` first leaves ``(alpha gamma/2)(sigma_0 - sqrt n)^2`` with
``gamma = lambda_b/(1 + lambda_b)``; so the mean direction is the scalar problem with ``alpha``
replaced by ``alpha gamma``, giving ``s_0 = sigma_0/sqrt(n) = (1 - kappa(1 + 1/lambda_b))_+``,
``b* = kappa/(lambda_b K) 1`` if ``s_0 > 0`` else ``1/(K(1+lambda_b)) 1``, pure ETF iff
``kappa >= lambda_b/(1+lambda_b)``; all as in docs/theory.md.  Not stated in docs/theory.md,
derived here:

.. math::  f^* = \tfrac{K-1}{K}\,\phi(\kappa)
           + \tfrac1K\begin{cases}\kappa - \frac{\kappa^2}{2}(1 + 1/\lambda_b) & \kappa <
           \lambda_b/(1+\lambda_b)\\ \frac{\lambda_b}{2(1+\lambda_b)} & \text{otherwise}
           \end{cases}

with ``phi(kappa) = kappa - kappa^2/2`` if ``kappa < 1`` else ``1/2``.

**Cross-entropy (docs/theory.md section 3).**  At the ETF with self-dual features and diagonal
logit ``t`` the penalty, minimised over the split ``t = ||w_k|| ||hbar_k||``, is
``(lambda_W/2)||W||^2 + (lambda_H/2)||H||^2 = K s t`` with ``s = sqrt(n lambda_W lambda_H)``
(derived below; no factor discrepancy with docs/theory.md).  ``F(t) = log(1 + (K-1) e^{-Kt/(K-1)}) +
K s t`` is convex, ``F'(0) = K s - 1``, ``t* = ((K-1)/K) log((1 - (K-1)s)/s)`` for ``K s < 1``
and ``f* = F(t*) = -log(1 - (K-1)s) + (K-1) s log((1 - (K-1)s)/s)``; otherwise ``t* = 0`` and
``f* = log K``.

Use :func:`numeric` to evaluate any returned expression; it fills ``kappa`` and ``s`` from
``K, n, lambda_W, lambda_H`` when they are not given.  The four derivation functions are cached
(their results are immutable); a first call takes about a second each.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import sympy

__all__ = [
    "KAPPA_DEF",
    "S_DEF",
    "CrossEntropy",
    "MSEBiasFree",
    "MSEFreeBias",
    "MSERegularisedBias",
    "K",
    "cross_entropy",
    "kappa",
    "lambda_H",
    "lambda_W",
    "lambda_b",
    "mse_bias_free",
    "mse_free_bias",
    "mse_regularised_bias",
    "n",
    "numeric",
    "s",
    "sigma",
    "t",
]

# --------------------------------------------------------------------------------------------
# Symbols
# --------------------------------------------------------------------------------------------

K = sympy.Symbol("K", positive=True)
n = sympy.Symbol("n", positive=True)
lambda_W = sympy.Symbol("lambda_W", positive=True)
lambda_H = sympy.Symbol("lambda_H", positive=True)
lambda_b = sympy.Symbol("lambda_b", positive=True)
t = sympy.Symbol("t", positive=True)
kappa = sympy.Symbol("kappa", positive=True)
s = sympy.Symbol("s", positive=True)
#: singular value of ``Z = W H`` along one target direction (real; ``>= 0`` is imposed by hand).
sigma = sympy.Symbol("sigma", real=True)

_SYMBOLS = {str(x): x for x in (K, n, lambda_W, lambda_H, lambda_b, t, kappa, s, sigma)}

#: ``kappa = K sqrt(n lambda_W lambda_H)`` and ``s = sqrt(n lambda_W lambda_H)``.
KAPPA_DEF = K * sympy.sqrt(n * lambda_W * lambda_H)
S_DEF = sympy.sqrt(n * lambda_W * lambda_H)
# lambda_H written through kappa: lets every expression be rewritten in (K, n, lambda_W, kappa).
_LAMBDA_H_OF_KAPPA = kappa**2 / (K**2 * n * lambda_W)


def _in_kappa(expr: sympy.Expr) -> sympy.Expr:
    """Rewrite ``expr`` (in ``lambda_H``) through ``kappa`` and simplify."""
    return sympy.simplify(sympy.expand(expr.subs(lambda_H, _LAMBDA_H_OF_KAPPA)))


def _positive_below_root(expr: sympy.Expr, var: sympy.Symbol) -> sympy.Expr:
    """For ``expr`` affine in ``var`` with a provably negative slope, return the root ``r``:
    then ``expr > 0`` iff ``var < r``.  Raises if the premise cannot be proved."""
    poly = sympy.Poly(sympy.expand(expr), var)
    if poly.degree() != 1:
        raise ValueError(f"{expr} is not affine in {var}")
    slope = poly.coeff_monomial(var)
    if sympy.simplify(slope).is_negative is not True:
        raise ValueError(f"cannot prove the slope {slope} is negative")
    (root,) = sympy.solve(sympy.Eq(expr, 0), var)
    return sympy.simplify(root)


# --------------------------------------------------------------------------------------------
# Master-lemma building blocks (docs/theory.md section 0, items 1-3)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _BalancedSplit:
    """``min_{a>0} (beta_W/2) a^2 + (beta_H/2) (sigma/a)^2`` for ``sigma > 0``."""

    cost: sympy.Expr  # sqrt(beta_W beta_H) sigma
    a_sq: sympy.Expr  # a^2 = sqrt(beta_H/beta_W) sigma   (the W side)
    b_sq: sympy.Expr  # b^2 = sqrt(beta_W/beta_H) sigma   (the H side)


def _balanced_split(beta_W: sympy.Expr, beta_H: sympy.Expr) -> _BalancedSplit:
    a, sg = sympy.symbols("a sigma_pos", positive=True)
    pen = beta_W / 2 * a**2 + beta_H / 2 * (sg / a) ** 2
    (a_star,) = sympy.solve(sympy.diff(pen, a), a)  # unique positive root
    assert sympy.simplify(sympy.diff(pen, a, 2).subs(a, a_star)).is_positive
    cost = sympy.simplify(pen.subs(a, a_star))
    return _BalancedSplit(
        cost=cost.subs(sg, sigma),
        a_sq=sympy.simplify(a_star**2).subs(sg, sigma),
        b_sq=sympy.simplify((sg / a_star) ** 2).subs(sg, sigma),
    )


@dataclass(frozen=True)
class _ScalarShrinkage:
    """``min_{sigma >= 0} (alpha/2)(sigma - y)^2 + c sigma`` (convex)."""

    objective: sympy.Expr
    stationary: sympy.Expr  # argmin over the reals: y - c/alpha
    value_active: sympy.Expr  # objective at the stationary point
    value_zero: sympy.Expr  # objective at sigma = 0


def _scalar_shrinkage(alpha: sympy.Expr, y: sympy.Expr, c: sympy.Expr) -> _ScalarShrinkage:
    g = alpha / 2 * (sigma - y) ** 2 + c * sigma
    (stat,) = sympy.solve(sympy.Eq(sympy.diff(g, sigma), 0), sigma)
    assert sympy.simplify(sympy.diff(g, sigma, 2)).is_positive  # convex: stationary = argmin
    return _ScalarShrinkage(
        objective=g,
        stationary=sympy.simplify(stat),
        value_active=sympy.simplify(g.subs(sigma, stat)),
        value_zero=sympy.simplify(g.subs(sigma, 0)),
    )


# MSE problem data common to (a)-(c): alpha = 1/N, target singular value sqrt(n),
# nuclear-norm weight sqrt(lambda_W lambda_H) (from the balanced split).
_ALPHA = 1 / (K * n)
_Y_SV = sympy.sqrt(n)


def _mse_direction():
    split = _balanced_split(lambda_W, lambda_H)
    c = sympy.simplify(split.cost / sigma)
    return split, c, _scalar_shrinkage(_ALPHA, _Y_SV, c)


# --------------------------------------------------------------------------------------------
# (a) MSE, no bias
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MSEBiasFree:
    """docs/theory.md section 2(a).  Expressions in ``kappa`` unless they need a ratio of
    lambdas."""

    kappa_definition: sympy.Expr  # K sqrt(n lambda_W lambda_H) = tau / sqrt(n)
    tau: sympy.Expr  # soft threshold sqrt(beta_W beta_H)/alpha = N sqrt(lambda_W lambda_H)
    nuclear_weight: sympy.Expr  # sqrt(lambda_W lambda_H): min penalty per unit singular value
    scalar_objective: sympy.Expr  # (alpha/2)(sigma - sqrt n)^2 + sqrt(lambda_W lambda_H) sigma
    sigma_stationary: sympy.Expr  # sqrt(n)(1 - kappa)
    threshold: sympy.Expr  # kappa_c = 1: root of sigma_stationary(kappa) = 0
    sigma_star: sympy.Expr  # Piecewise
    direction_value_active: sympy.Expr  # (kappa - kappa^2/2)/K
    direction_value_zero: sympy.Expr  # 1/(2K)
    loss_active: sympy.Expr  # kappa - kappa^2/2
    loss_zero: sympy.Expr  # 1/2
    loss: sympy.Expr  # Piecewise
    logit_scale: sympy.Expr  # W Hbar = logit_scale * I_K; Piecewise (1 - kappa)_+
    WWt_scale: sympy.Expr  # W W^T = WWt_scale * I_K (kappa < 1)
    HbarHbar_scale: sympy.Expr  # Hbar^T Hbar = HbarHbar_scale * I_K (kappa < 1)
    self_duality: sympy.Expr  # W^T = self_duality * Hbar


@functools.cache
def mse_bias_free() -> MSEBiasFree:
    """Derive docs/theory.md section 2(a) from the master lemma: ``K`` directions of singular value
    ``sqrt(n)``, ``alpha = 1/N``, ``beta_W = lambda_W``, ``beta_H = lambda_H``."""
    split, c, sc = _mse_direction()
    tau = sympy.simplify(c / _ALPHA)
    sig_k = _in_kappa(sc.stationary)
    thr = _positive_below_root(sig_k, kappa)
    active = _in_kappa(sc.value_active)
    zero = sympy.simplify(sc.value_zero)
    below = kappa < thr
    loss_active = sympy.simplify(K * active)  # K identical directions; alpha already has 1/N
    loss_zero = sympy.simplify(K * zero)
    logit = sympy.simplify(sig_k / _Y_SV)  # Z* = (sigma*/sqrt n) Y, so W Hbar = that * I
    # W W^T = a^2 I (a = W-side factor of sigma*). The H-side factor b^2 is spread over the n
    # columns of a class (right singular vector e_k (x) 1_n / sqrt n): ||hbar_k||^2 = b^2 / n.
    ratio_w = sympy.simplify(split.a_sq / sigma)  # sqrt(lambda_H/lambda_W)
    ratio_h = sympy.simplify(split.b_sq / sigma)  # sqrt(lambda_W/lambda_H)
    ww = ratio_w * sig_k
    hh = sympy.simplify(ratio_h * sig_k / n)
    duality = sympy.simplify(sympy.sqrt(ratio_w / (ratio_h / n)))
    return MSEBiasFree(
        kappa_definition=sympy.simplify(tau / _Y_SV),
        tau=tau,
        nuclear_weight=c,
        scalar_objective=sc.objective,
        sigma_stationary=sig_k,
        threshold=thr,
        sigma_star=sympy.Piecewise((sig_k, below), (0, True)),
        direction_value_active=active,
        direction_value_zero=zero,
        loss_active=loss_active,
        loss_zero=loss_zero,
        loss=sympy.Piecewise((loss_active, below), (loss_zero, True)),
        logit_scale=sympy.Piecewise((logit, below), (0, True)),
        WWt_scale=ww,
        HbarHbar_scale=hh,
        self_duality=duality,
    )


# --------------------------------------------------------------------------------------------
# (b) MSE, free (unregularised) bias
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MSEFreeBias:
    """docs/theory.md section 2(b): the centred target ``(I - J) (x) 1_n^T``."""

    centred_directions: sympy.Expr  # K - 1 (trace of the projection I - J)
    threshold: sympy.Expr  # 1
    loss_active: sympy.Expr  # ((K-1)/K)(kappa - kappa^2/2)
    loss_zero: sympy.Expr  # (K-1)/(2K)
    loss: sympy.Expr  # Piecewise
    logit_scale: sympy.Expr  # W Hbar = logit_scale (I - J)
    WWt_scale: sympy.Expr  # W W^T = WWt_scale (I - J) (kappa < 1)
    bias: sympy.Expr  # b* = bias * 1_K


@functools.cache
def mse_free_bias() -> MSEFreeBias:
    """Derive docs/theory.md section 2(b): eliminate ``b`` (``b* = (Y - Z)1/N``), leaving the
    centred target ``Y(I - 11^T/N) = (I - J) (x) 1_n^T`` whose Gram is ``n (I - J)``.
    ``J = 11^T/K`` is idempotent (``1^T 1 = K``), so ``I - J`` is a projection with trace
    ``K - 1``: ``K - 1`` singular values ``sqrt(n)`` and one zero (optimum ``sigma = 0`` at
    zero cost)."""
    one_t_one = K  # 1_K^T 1_K
    j_sq_over_j = sympy.simplify(one_t_one / K)  # J^2 = (1^T 1 / K) J
    assert j_sq_over_j == 1
    rank = sympy.simplify(K - one_t_one / K)  # trace(I - J)
    a = mse_bias_free()
    # zero singular value of the target: (alpha/2)(sigma - 0)^2 + c sigma is minimised at 0.
    zero_dir = _scalar_shrinkage(_ALPHA, sympy.Integer(0), sympy.sqrt(lambda_W * lambda_H))
    assert sympy.simplify(zero_dir.stationary).is_negative and zero_dir.value_zero == 0
    active = sympy.simplify(rank * a.direction_value_active)
    zero = sympy.simplify(rank * a.direction_value_zero)
    below = kappa < a.threshold
    # b* = Y 1_N / N - Z* 1_N / N, Y 1_N = n 1_K and Z* 1_N = 0 (rows of Z* are centred).
    bias = sympy.simplify(n / (K * n))
    return MSEFreeBias(
        centred_directions=rank,
        threshold=a.threshold,
        loss_active=active,
        loss_zero=zero,
        loss=sympy.Piecewise((active, below), (zero, True)),
        logit_scale=a.logit_scale,
        WWt_scale=a.WWt_scale,
        bias=bias,
    )


# --------------------------------------------------------------------------------------------
# (c) MSE, ridge-regularised bias
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MSERegularisedBias:
    """docs/theory.md section 2(c): ``W Hbar = centred_scale (I - J) + s0 J``, ``b* = bias 1_K``."""

    gamma: sympy.Expr  # effective data weight on the mean direction: lambda_b/(1+lambda_b)
    beta_of_sigma0: sympy.Expr  # ridge-optimal bias coefficient for fixed sigma_0
    s0_stationary: sympy.Expr  # 1 - kappa(1 + 1/lambda_b)
    etf_threshold: sympy.Expr  # lambda_b/(1+lambda_b): pure ETF iff kappa >= this
    s0: sympy.Expr  # Piecewise (1 - kappa(1 + 1/lambda_b))_+
    centred_scale: sympy.Expr  # Piecewise (1 - kappa)_+
    bias_active: sympy.Expr  # kappa/(lambda_b K)  (s0 > 0)
    bias_etf: sympy.Expr  # 1/(K(1+lambda_b))  (s0 = 0)
    bias: sympy.Expr  # Piecewise
    mean_value_active: sympy.Expr  # (1/K)(kappa - (kappa^2/2)(1 + 1/lambda_b))
    mean_value_zero: sympy.Expr  # lambda_b/(2K(1+lambda_b))
    loss: sympy.Expr  # Piecewise sum: centred part (b) + mean direction


@functools.cache
def mse_regularised_bias() -> MSERegularisedBias:
    """Derive docs/theory.md section 2(c) from the joint scalar problem on the mean direction
    ``g(sigma_0, beta)`` (see the module docstring)."""
    beta = sympy.Symbol("beta", real=True)
    c = sympy.sqrt(lambda_W * lambda_H)
    Nn = K * n
    g = (
        _ALPHA / 2 * (sigma - _Y_SV + sympy.sqrt(Nn) * beta) ** 2
        + c * sigma
        + lambda_b / 2 * beta**2
    )
    # Ridge step: eliminate beta for fixed sigma_0.
    (beta_star,) = sympy.solve(sympy.diff(g, beta), beta)
    reduced = sympy.factor(sympy.simplify(g.subs(beta, beta_star) - c * sigma))
    gamma = sympy.simplify(reduced / (_ALPHA / 2 * (sigma - _Y_SV) ** 2))
    assert not gamma.has(sigma)
    # The mean direction is now a scalar shrinkage problem with alpha -> alpha * gamma.
    sc = _scalar_shrinkage(_ALPHA * gamma, _Y_SV, c)
    s0_stat = _in_kappa(sc.stationary / _Y_SV)
    thr = _positive_below_root(s0_stat, kappa)
    active_region = kappa < thr
    # Cross-check against the joint stationarity system in (sigma_0, beta).
    joint = sympy.solve([sympy.diff(g, sigma), sympy.diff(g, beta)], [sigma, beta], dict=True)
    assert len(joint) == 1
    assert sympy.simplify(_in_kappa(joint[0][sigma] / _Y_SV) - s0_stat) == 0
    # b* = beta u_0 = (beta / sqrt K) 1_K.
    bias_of_sigma = beta_star / sympy.sqrt(K)
    bias_active = _in_kappa(bias_of_sigma.subs(sigma, sc.stationary))
    bias_etf = sympy.simplify(bias_of_sigma.subs(sigma, 0))
    mean_active = _in_kappa(sc.value_active)
    mean_zero = sympy.simplify(sc.value_zero)
    b = mse_free_bias()
    return MSERegularisedBias(
        gamma=gamma,
        beta_of_sigma0=sympy.simplify(beta_star),
        s0_stationary=s0_stat,
        etf_threshold=thr,
        s0=sympy.Piecewise((s0_stat, active_region), (0, True)),
        centred_scale=mse_bias_free().logit_scale,
        bias_active=bias_active,
        bias_etf=bias_etf,
        bias=sympy.Piecewise((bias_active, active_region), (bias_etf, True)),
        mean_value_active=mean_active,
        mean_value_zero=mean_zero,
        loss=b.loss + sympy.Piecewise((mean_active, active_region), (mean_zero, True)),
    )


# --------------------------------------------------------------------------------------------
# Cross-entropy
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CrossEntropy:
    """docs/theory.md section 3: the scale problem ``F(t)`` at the self-dual simplex ETF."""

    s_definition: sympy.Expr  # sqrt(n lambda_W lambda_H); kappa = K s
    rho_W_sq: sympy.Expr  # ||w_k||^2 = t sqrt(n lambda_H/lambda_W)
    hbar_sq: sympy.Expr  # ||hbar_k||^2 = t sqrt(lambda_W/(n lambda_H))
    W_sq_norm: sympy.Expr  # ||W||^2 = K rho_W^2
    H_sq_norm: sympy.Expr  # ||H||^2 = K t sqrt(n lambda_W/lambda_H)
    penalty: sympy.Expr  # (lambda_W/2)||W||^2 + (lambda_H/2)||H||^2 = K s t
    ce_at_etf: sympy.Expr  # CE of one sample with logits t, -t/(K-1)
    F: sympy.Expr  # ce_at_etf + K s t
    dF: sympy.Expr
    d2F: sympy.Expr  # > 0: F convex
    dF_at_zero: sympy.Expr  # K s - 1
    threshold: sympy.Expr  # s_c = 1/K
    t_stationary: sympy.Expr  # ((K-1)/K) log((1 - (K-1)s)/s)
    t_star: sympy.Expr  # Piecewise
    loss_active: sympy.Expr  # F(t*), simplified
    loss_zero: sympy.Expr  # log K
    loss: sympy.Expr  # Piecewise


@functools.cache
def cross_entropy() -> CrossEntropy:
    """Derive the CE scale problem and its solution (docs/theory.md section 3)."""
    # Penalty at the self-dual ETF: w_k = a e_k, hbar_k = b e_k (unit ETF directions e_k), so the
    # diagonal logit is t = a b. Minimise (lambda_W/2) K a^2 + (lambda_H/2) n K b^2 over a.
    a = sympy.Symbol("a", positive=True)
    pen_a = lambda_W / 2 * K * a**2 + lambda_H / 2 * n * K * (t / a) ** 2
    (a_star,) = sympy.solve(sympy.diff(pen_a, a), a)
    rho_w_sq = sympy.simplify(a_star**2)
    hbar_sq = sympy.simplify((t / a_star) ** 2)
    w_norm = sympy.simplify(K * rho_w_sq)
    h_norm = sympy.simplify(n * K * hbar_sq)
    penalty = sympy.simplify(lambda_W / 2 * w_norm + lambda_H / 2 * h_norm)
    s_def = S_DEF
    penalty_s = sympy.simplify(penalty.subs(lambda_H, s**2 / (n * lambda_W)))
    # CE(z, k) = log sum_j e^{z_j} - z_k with z_k = t and z_j = -t/(K-1) for j != k.
    ce = sympy.log(sympy.exp(t) + (K - 1) * sympy.exp(-t / (K - 1))) - t
    ce_simpl = sympy.log(1 + (K - 1) * sympy.exp(-K * t / (K - 1)))
    # log is injective on the reals, so comparing the exponentials proves ce == ce_simpl.
    assert sympy.simplify(sympy.expand(sympy.exp(ce) - sympy.exp(ce_simpl))) == 0
    F = ce_simpl + penalty_s
    dF = sympy.simplify(sympy.diff(F, t))
    d2F = sympy.simplify(sympy.diff(F, t, 2))
    dF0 = sympy.simplify(dF.subs(t, 0))
    # Solve F'(t) = 0 through u = e^{K t/(K-1)} > 0 (a rational equation in u).
    u = sympy.Symbol("u", positive=True)
    dF_u = sympy.simplify(dF.subs(t, (K - 1) / K * sympy.log(u)))
    (u_star,) = sympy.solve(sympy.Eq(dF_u, 0), u)
    t_stat = sympy.simplify((K - 1) / K * sympy.log(sympy.together(u_star)))
    # t* > 0 iff u* > 1 iff s (u* - 1) > 0 (s > 0); s (u* - 1) is affine in s with slope -K.
    thr = _positive_below_root(sympy.expand(s * (u_star - 1)), s)
    assert sympy.simplify(thr - _positive_below_root(-dF0, s)) == 0  # same as F'(0) < 0
    below = s < thr
    # f* = F(t*).  On the active region q := 1 - (K-1)s > 0, and u* = q/s.  Evaluate the CE part
    # in q (s = (1-q)/(K-1)), where its log argument simplifies to 1/q, and the penalty part
    # K s t* = (K-1) s log(u*) directly; then put q = 1 - (K-1)s back.
    q = sympy.Symbol("q", positive=True)
    s_of_q = (1 - q) / (K - 1)
    assert sympy.simplify(u_star.subs(s, s_of_q) - q / s_of_q) == 0
    ce_at_u = ce_simpl.subs(t, (K - 1) / K * sympy.log(u))  # log(1 + (K-1)/u)
    ce_star = sympy.log(sympy.simplify(ce_at_u.args[0].subs(u, q / s_of_q)))
    assert sympy.simplify(ce_star + sympy.log(q)) == 0
    pen_star = sympy.simplify(penalty_s.subs(t, (K - 1) / K * sympy.log(u)))
    assert sympy.simplify(pen_star - (K - 1) * s * sympy.log(u)) == 0
    loss_active = (-sympy.log(q) + (K - 1) * s * sympy.log(q / s)).subs(q, 1 - (K - 1) * s)
    assert sympy.simplify(sympy.exp(F.subs(t, t_stat)) - sympy.exp(loss_active)) == 0
    loss_zero = sympy.simplify(F.subs(t, 0))
    return CrossEntropy(
        s_definition=s_def,
        rho_W_sq=rho_w_sq,
        hbar_sq=hbar_sq,
        W_sq_norm=w_norm,
        H_sq_norm=h_norm,
        penalty=penalty_s,
        ce_at_etf=ce_simpl,
        F=F,
        dF=dF,
        d2F=d2F,
        dF_at_zero=dF0,
        threshold=thr,
        t_stationary=t_stat,
        t_star=sympy.Piecewise((t_stat, below), (0, True)),
        loss_active=loss_active,
        loss_zero=loss_zero,
        loss=sympy.Piecewise((loss_active, below), (loss_zero, True)),
    )


# --------------------------------------------------------------------------------------------
# Numeric evaluation
# --------------------------------------------------------------------------------------------


def numeric(expr: sympy.Expr, **values: float) -> float:
    """Evaluate ``expr`` at ``values`` (keyed by symbol name: ``K, n, lambda_W, lambda_H,
    lambda_b, t, kappa, s, sigma``) to a Python float, with 30-digit intermediate precision.

    ``kappa`` and ``s`` are filled from ``K, n, lambda_W, lambda_H`` when not given."""
    unknown = set(values) - set(_SYMBOLS)
    if unknown:
        raise ValueError(f"unknown symbols {sorted(unknown)}; known: {sorted(_SYMBOLS)}")
    subs = {_SYMBOLS[k]: sympy.sympify(v) for k, v in values.items()}
    raw = {K, n, lambda_W, lambda_H}
    if raw <= subs.keys():
        subs.setdefault(kappa, KAPPA_DEF.subs(subs))
        subs.setdefault(s, S_DEF.subs(subs))
    out = sympy.sympify(expr).subs(subs)
    if out.free_symbols:
        raise ValueError(f"missing values for {sorted(map(str, out.free_symbols))}")
    return float(sympy.N(out, 30))
