r"""Symbolic (sympy) derivation of the deep-UFM scalar problem: root equations and ``kappa_P^crit``.

Source: docs/theory.md section 0 item 5 (P-factor lemma, [derived]) and section 6; the deep linear
UFM of Súkeník, Mondelli, Lampert (NeurIPS 2023) and the extended UFM of Tirer & Bruna (ICML
2022) have ``P = L + 1`` factors. Numerical counterpart: :mod:`theory._deep_scalar`.

Derivations (each function performs the sympy steps; nothing is restated):

**Balanced penalty.** ``min sum_j (beta_j/2) a_j^2`` subject to ``a_1 ... a_P = sigma > 0``:
the Lagrange conditions ``beta_j a_j^2 = mu`` (all ``j``) and the constraint give
``mu = gamma sigma^{2/P}`` with ``gamma = (beta_1 ... beta_P)^{1/P}``, so the minimum is
``(P/2) gamma sigma^{2/P}`` (:func:`balanced_penalty`).

**Scalar problem.** ``g(sigma) = (alpha/2)(sigma - y)^2 + (P/2) gamma sigma^{2/P}``. With
``sigma = y t^P`` (``t = s^{1/P}``, which makes everything polynomial) and
``kappa = gamma y^{2/P-2}/alpha``, ``g = alpha y^2 h`` with
``h(t) = (t^P - 1)^2/2 + (P/2) kappa t^2``. ``dh/dt = P t (t^{P-2}(t^P - 1) + kappa)``, so the
nonzero stationary points are the roots of the polynomial (:func:`scalar_problem`,
``root_equation``)::

    kappa - t^{P-2} + t^{2P-2} = 0          (i.e. kappa = s^{1-2/P} (1 - s))

P = 2: ``kappa = 1 - t^2``; P = 3: ``kappa = t - t^4``; P = 4: ``kappa = t^2 - t^6``;
P = 5: ``kappa = t^3 - t^8``. The same equation read in ``sigma`` is
``alpha (y - sigma) = gamma sigma^{2/P - 1}``: the module checks that
``g'(y t^P) t^{P-2} / (alpha y)`` equals the polynomial above.

**Threshold (tangency).** The nonzero local minimum and ``sigma = 0`` (``h = 1/2``) tie where
``h = 1/2`` and ``dh/dt = 0`` hold together. Eliminating ``kappa`` with the root equation gives
``h - 1/2 = t^P ((1 - P)/2 t^P + (P - 2)/2)``: ``t^P = s = (P-2)/(P-1)`` (the jump), and
``kappa_crit = t^{P-2}(1 - t^P)`` there. For ``P = 2`` the only solution is ``t = 0``,
``kappa_crit = 1`` (continuous). The result is compared with the closed form of docs/theory.md
``((P-2)/(P-1))^{(P-2)/P}/(P-1)`` by exact simplification. The nonzero branch's optimal value
``h(s*(kappa))`` increases with ``kappa`` (envelope theorem: ``dh/dkappa = (P/2) s^{2/P} > 0``),
so the tie is crossed once: nonzero iff ``kappa < kappa_crit``.

**Existence.** Roots exist iff ``kappa <= phi_max = max_t t^{P-2}(1 - t^P)``, attained at
``t^P = (P-2)/(2P-2)`` (below the jump: the tangency lies on the local-minimum branch).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import sympy

__all__ = [
    "BalancedPenalty",
    "ScalarProblem",
    "alpha",
    "balanced_penalty",
    "gamma",
    "kappa",
    "largest_root_numeric",
    "scalar_problem",
    "sigma",
    "t",
    "y",
]

t = sympy.Symbol("t", nonnegative=True)
kappa = sympy.Symbol("kappa", positive=True)
sigma = sympy.Symbol("sigma", positive=True)
y = sympy.Symbol("y", positive=True)
alpha = sympy.Symbol("alpha", positive=True)
gamma = sympy.Symbol("gamma", positive=True)


def _check_P(P) -> int:
    if isinstance(P, bool) or not isinstance(P, int) or not 2 <= P <= 12:
        raise ValueError(f"P must be an int in [2, 12], got {P!r}")
    return P


@dataclass(frozen=True)
class BalancedPenalty:
    """``min sum_j (beta_j/2) a_j^2`` s.t. ``prod a_j = sigma`` (sympy expressions)."""

    betas: tuple  # the symbols beta_1 ... beta_P
    multiplier: sympy.Expr  # mu = beta_j a_j^2 (common value)
    factors: tuple  # a_j at the minimum
    value: sympy.Expr  # (P/2) gamma sigma^{2/P}, gamma = prod(beta)^{1/P}


@functools.cache
def balanced_penalty(P: int) -> BalancedPenalty:
    """Derive the P-factor penalty lemma (docs/theory.md section 0 item 5, first sentence)."""
    P = _check_P(P)
    betas = sympy.symbols(f"beta_1:{P + 1}", positive=True)
    mu = sympy.Symbol("mu", positive=True)
    # Stationarity of sum beta_j a_j^2/2 - mu (sum log a_j - log sigma): beta_j a_j^2 = mu.
    a = [sympy.sqrt(mu / b) for b in betas]
    (mu_star,) = sympy.solve(sympy.Eq(sympy.prod(a) ** 2, sigma**2), mu)
    factors = tuple(sympy.simplify(ai.subs(mu, mu_star)) for ai in a)
    value = sympy.simplify(sum(b * f**2 for b, f in zip(betas, factors, strict=True)) / 2)
    return BalancedPenalty(betas, sympy.simplify(mu_star), factors, value)


@dataclass(frozen=True)
class ScalarProblem:
    """The normalised scalar problem for ``P`` factors (all exact sympy objects).

    Attributes:
        P: the number of factors.
        objective: ``h(t)``, ``s = t^P``.
        root_equation: the polynomial in ``t`` and ``kappa`` whose roots are the nonzero
            stationary points.
        sigma_equation: ``alpha (y - sigma) - gamma sigma^{2/P-1}``.
        tangency_t: ``t`` at the threshold.
        jump: ``s = t^P`` there.
        kappa_crit: the derived threshold.
        kappa_crit_theory: the closed form of docs/theory.md.
        phi_max: the largest ``kappa`` with a nonzero root.
        s_max: the ``s`` of ``phi_max``.
        loss_at_crit: ``h`` at the tangency (``1/2``).
        tie: ``h - 1/2`` on the stationary branch (``kappa`` eliminated), factored.
    """

    P: int
    objective: sympy.Expr
    root_equation: sympy.Expr
    sigma_equation: sympy.Expr
    tangency_t: sympy.Expr
    jump: sympy.Expr
    kappa_crit: sympy.Expr
    kappa_crit_theory: sympy.Expr
    phi_max: sympy.Expr
    s_max: sympy.Expr
    loss_at_crit: sympy.Expr
    tie: sympy.Expr


@functools.cache
def scalar_problem(P: int) -> ScalarProblem:
    """Derive the root equation, the tangency threshold and the jump for ``P`` factors."""
    P = _check_P(P)
    s_expr = t**P
    h = (s_expr - 1) ** 2 / 2 + sympy.Rational(P, 2) * kappa * t**2  # s^{2/P} = t^2
    dh = sympy.expand(sympy.diff(h, t))
    root_eq = sympy.expand(sympy.cancel(dh / (P * t)))  # kappa - t^{P-2} + t^{2P-2}
    # The sigma form: g'(sigma) = alpha (sigma - y) + gamma sigma^{2/P - 1}.
    g = alpha / 2 * (sigma - y) ** 2 + sympy.Rational(P, 2) * gamma * sigma ** sympy.Rational(2, P)
    sigma_eq = sympy.expand(-sympy.diff(g, sigma))
    tp = sympy.Symbol("t_pos", positive=True)
    g_at = sigma_eq.subs(sigma, y * tp**P) * tp ** (P - 2) / (alpha * y)
    kappa_of = gamma * y ** sympy.Rational(2 - 2 * P, P) / alpha
    check = sympy.simplify(
        sympy.expand(g_at + root_eq.subs({t: tp, kappa: kappa_of}), power_base=True, force=True)
    )
    if check != 0:
        raise AssertionError(f"sigma form and t form of the root equation differ: {check}")
    # Tangency: h = 1/2 and root_eq = 0; eliminate kappa.
    (kappa_on_branch,) = sympy.solve(root_eq, kappa)
    tie = sympy.factor(sympy.expand(h.subs(kappa, kappa_on_branch) - sympy.Rational(1, 2)))
    roots = [r for r in sympy.solve(tie, t) if r.is_real and 0 <= r < 1]
    t_c = max(roots)
    kc = sympy.simplify(kappa_on_branch.subs(t, t_c))
    theory = (sympy.Rational(P - 2, P - 1)) ** sympy.Rational(P - 2, P) / (P - 1)
    # Existence: maximise phi(t) = t^{P-2}(1 - t^P) over t in [0, 1].
    dphi = sympy.diff(kappa_on_branch, t)
    crit = [r for r in sympy.solve(dphi, t) if r.is_real and 0 <= r < 1] if P > 2 else [0]
    t_m = max(crit)
    if not sympy.simplify(t_c**P - t_m**P).is_nonnegative:  # the tangency is on the min branch
        raise AssertionError(f"tangency t = {t_c} lies below the maximum of phi at {t_m}")
    return ScalarProblem(
        P=P,
        objective=h,
        root_equation=root_eq,
        sigma_equation=sigma_eq,
        tangency_t=t_c,
        jump=sympy.simplify(t_c**P),
        kappa_crit=kc,
        kappa_crit_theory=theory,
        phi_max=sympy.simplify(kappa_on_branch.subs(t, t_m)),
        s_max=sympy.simplify(t_m**P),
        loss_at_crit=sympy.simplify(h.subs({kappa: kc, t: t_c})),
        tie=tie,
    )


def largest_root_numeric(P: int, kappa_value, digits: int = 40) -> sympy.Float | None:
    """``s = t^P`` for the largest real root ``t`` in ``(0, 1)`` of the root equation at the
    exact ``kappa_value`` (a sympy Rational or int), to ``digits`` digits, by ``sympy.nroots``
    on the polynomial; ``None`` if none exists."""
    eq = scalar_problem(P).root_equation.subs(kappa, sympy.nsimplify(kappa_value))
    poly = sympy.Poly(eq, t)
    roots = [sympy.re(r) for r in poly.nroots(n=digits, maxsteps=500) if abs(sympy.im(r)) < 1e-30]
    roots = [r for r in roots if 0 < r < 1]
    return max(roots) ** P if roots else None
