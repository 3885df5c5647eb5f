"""theory.symbolic_smoothing: the sympy derivation of the balanced label-smoothing optimum
against the numerical closed form of theory.label_smoothing and a brute-force scalar search."""

import numpy as np
import pytest
import sympy

from theory import label_smoothing as tls
from theory.symbolic_classification import K, s, t
from theory.symbolic_smoothing import delta, smoothed_cross_entropy


def _num(expr, **values):
    subs = {K: values["K"], s: values["s"], delta: values["delta"]}
    if "t" in values:
        subs[t] = values["t"]
    return float(sympy.N(sympy.sympify(expr).subs(subs), 30))


@pytest.mark.parametrize(
    "k, n, lam, d",
    [(4, 3, 5e-3, 0.1), (3, 2, 2e-2, 0.5), (5, 1, 1e-3, 0.0), (2, 4, 1e-1, 0.05)],
)
def test_derivation_matches_closed_form_and_brute_force(k, n, lam, d):
    r = smoothed_cross_entropy()
    sv = np.sqrt(n) * lam
    assert _num(r.threshold, K=k, s=sv, delta=d) == pytest.approx((1 - d) / k, rel=1e-14)
    opt = tls.optimum(k, n, lam, lam, d, k - 1)
    zero = k * sv + d >= 1
    assert bool(opt.zero) == zero
    # Brute force: F on a fine grid of t >= 0, then the best grid point refined by golden
    # section; independent of both the sympy root and the closed form.
    F = sympy.lambdify(t, r.F.subs({K: k, s: sv, delta: d}), "numpy")
    grid = np.linspace(0.0, 20.0, 200_001)
    i = int(np.argmin(F(grid)))
    lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, grid.size - 1)]
    g = (np.sqrt(5) - 1) / 2
    for _ in range(200):
        a, b = hi - g * (hi - lo), lo + g * (hi - lo)
        lo, hi = (lo, b) if F(a) <= F(b) else (a, hi)
    t_brute = 0.5 * (lo + hi)
    if zero:
        assert float(opt.scale) == 0.0 and t_brute < 1e-6
        assert float(opt.loss) == pytest.approx(np.log(k), rel=1e-14)
    else:
        t_sym = _num(r.t_stationary, K=k, s=sv, delta=d)
        assert t_sym == pytest.approx(float(opt.scale), rel=1e-12)
        assert t_brute == pytest.approx(t_sym, rel=1e-7)
        loss = _num(r.loss_active, K=k, s=sv, delta=d)
        assert loss == pytest.approx(float(opt.loss), rel=1e-12)
        assert loss == pytest.approx(_num(r.F, K=k, s=sv, delta=d, t=t_sym), rel=1e-14)
    if d > 0:
        assert _num(r.limit_margin, K=k, s=0, delta=d) == pytest.approx(
            tls.limit_margin(k, d), rel=1e-14
        )
        assert _num(r.limit_loss, K=k, s=0, delta=d) == pytest.approx(
            tls.limit_loss(k, d), rel=1e-14
        )
