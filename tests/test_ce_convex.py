"""Cross-entropy UFM with any class sizes: theory.ce_convex (a certified convex computation)
against the balanced closed forms, L-BFGS solves of ufm.ClassificationUFM, its own duality gap
and the exact minority-collapse level."""

import numpy as np
import pytest
from conftest import examples
from hypothesis import given, settings
from hypothesis import strategies as st

import ufm
from theory import ce_convex as cc
from theory import classification as tc
from theory import label_smoothing as tls

BIASES = ["none", "free", 0.3]


def _rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


@pytest.mark.parametrize("bias", BIASES)
@pytest.mark.parametrize("lam, delta", [(1e-3, 0.0), (2e-2, 0.0), (5e-3, 0.1), (0.3, 0.0)])
def test_balanced_sizes_reduce_to_closed_forms(bias, lam, delta):
    K, n = 4, 3
    o = cc.optimum([n] * K, lam, 2 * lam, None, bias, delta)
    c = tc.optimum(K, n, lam, 2 * lam, "ce", bias, label_smoothing=delta)
    assert -1e-14 <= o.gap <= 1e-11 and o.exact
    assert abs(o.loss - float(c.loss)) <= o.gap + 1e-14
    assert o.zero == bool(c.zero) and o.rank == (0 if o.zero else K - 1)
    for name in ("WWT", "class_mean_gram", "logits"):
        ref = np.asarray(getattr(c, name))
        if np.linalg.norm(ref) > 0:
            assert _rel(getattr(o, name), ref) < 1e-9, name
        else:
            assert np.linalg.norm(getattr(o, name)) < 1e-12, name
    assert np.abs(o.bias).max() < 1e-10  # the closed form's b = 0 (centred, for a free bias)
    if delta:
        s = tls.optimum(K, n, lam, 2 * lam, delta, K - 1, bias)
        assert abs(o.loss - float(s.loss)) <= 1e-11


def test_label_smoothing_check_value():
    # Balanced, K = 4, n = 3, lambda_H = lambda_W = 5e-3, delta = 0.1, no bias (issue's check).
    o = cc.optimum([3] * 4, 5e-3, 5e-3, None, "none", 0.1)
    assert o.loss == pytest.approx(0.438171305784, abs=1e-12) and o.gap <= 1e-11


def test_gap_is_a_true_bound():
    sizes = [7, 3, 2, 1]
    for bias in BIASES:
        o = cc.optimum(sizes, 4e-3, 1e-2, None, bias, 0.05)
        assert -1e-14 <= o.gap <= 1e-11
        st_ = cc._setup(sizes, 4e-3, 1e-2, bias, 0.05)
        rng = np.random.default_rng(0)
        for eps in (1e-6, 1e-3):
            X = o.X + eps * rng.normal(size=o.X.shape)
            gap, _ = cc._certify(st_, X, o.bias)
            value = cc._primal(st_, X, o.bias)
            # A perturbed primal: a larger value and a larger gap, which still bounds its
            # distance to the optimum.
            assert value > o.loss and gap >= value - o.loss > 0 and gap > o.gap


def _against_lbfgs(bias, cuts, log_lam, ratio, delta):
    # N = 12 samples in K = 4 classes (sizes drawn, shapes fixed), d = 3 = K - 1.
    edges = [0, *sorted(cuts), 12]
    y = np.zeros(12, np.int32)
    for k in range(4):
        y[edges[k] : edges[k + 1]] = k
    sizes = np.bincount(y, minlength=4)
    lam = 10.0**log_lam
    p = ufm.ClassificationUFM(y, 4, lam, ratio * lam, 3, "ce", bias, label_smoothing=delta)
    o = cc.optimum_of(p)
    assert o.gap <= 1e-11 and o.exact
    sol = ufm.solve(p, "lbfgs")
    assert int(sol.status) == ufm.Status.successful
    assert abs(float(sol.loss) - o.loss) <= 1e-8 * o.loss
    H, W, _ = (np.asarray(x) for x in sol.params)
    scale = np.sqrt(np.mean(sizes) * lam / (ratio * lam))
    assert np.linalg.norm(W @ W.T - o.WWT) <= 1e-6 * max(np.linalg.norm(o.WWT), scale)


VALUES = {
    "cuts": st.lists(st.integers(1, 11), min_size=3, max_size=3, unique=True),
    "log_lam": st.floats(-3.0, -1.0),
    "ratio": st.floats(0.5, 2.0),
    "delta": st.sampled_from([0.0, 0.15]),
}


@settings(max_examples=examples(5), deadline=None)
@given(lambda_b=st.sampled_from([0.0, 0.3]), **VALUES)
def test_against_lbfgs_with_bias(lambda_b, cuts, log_lam, ratio, delta):
    # One compiled solver: a regularised bias whose lambda_b (a traced leaf) may be 0 (free).
    _against_lbfgs(lambda_b, cuts, log_lam, ratio, delta)


@pytest.mark.slow
@settings(max_examples=examples(4), deadline=None)
@given(**VALUES)
def test_against_lbfgs_without_bias(cuts, log_lam, ratio, delta):
    _against_lbfgs("none", cuts, log_lam, ratio, delta)


def test_minority_collapse_threshold_bisection():
    # K_A = 2 classes of 6, K_B = 3 of 2 (ratio 3), lambda_b = 0.5, delta = 0.1.
    r = cc.minority_collapse_threshold(2, 3, 3.0, n_B=2, bias=0.5, label_smoothing=0.1)
    lo, hi = r.bracket
    assert lo < hi <= lo * (1 + 1e-6) and r.max_gap <= 1e-11
    assert r.collapsed_nonzero and hi < r.lambda_zero
    # The bracket holds the exact level (1 - delta) sqrt(n_B) / N (an independent formula).
    assert r.predicted == pytest.approx(0.9 * np.sqrt(2) / 18, rel=1e-15)
    assert lo * (1 - 1e-6) <= r.predicted <= hi * (1 + 1e-6)
    # Below: the minority rows are distinct; above: they coincide (and are nonzero).
    sizes, minority = [6, 6, 2, 2, 2], [2, 3, 4]
    below = cc.optimum(sizes, 0.9 * lo, 0.9 * lo, None, 0.5, 0.1)
    above = cc.optimum(sizes, 1.1 * hi, 1.1 * hi, None, 0.5, 0.1)
    assert cc._minority_spread(below, minority) > 1e-3
    assert cc._minority_spread(above, minority) < 1e-9
    assert np.linalg.norm(above.classifier[minority], axis=1).min() > 1e-3


def test_narrow_width_is_a_lower_bound():
    o = cc.optimum([5, 3, 2, 1], 1e-2, 1e-2, 2, "free")
    assert o.rank == 3 and not o.exact and "lower bound" in o.how


def test_bad_input():
    with pytest.raises(ValueError, match="class_sizes"):
        cc.optimum([3, 0, 2], 0.1, 0.1)
    with pytest.raises(ValueError, match="lambda_H"):
        cc.optimum([3, 2], 0.0, 0.1)
    with pytest.raises(ValueError, match="label_smoothing"):
        cc.optimum([3, 2], 0.1, 0.1, label_smoothing=1.0)
    with pytest.raises(ValueError, match="ratio"):
        cc.minority_collapse_threshold(2, 2, 1.0)
    with pytest.raises(ValueError, match="loss='ce'"):
        cc.optimum_of(ufm.ClassificationUFM([0, 1, 1], 2, 0.1, 0.1, 2))


def test_direction_approaches_seli_as_lambda_vanishes():
    # Bias-free, sizes (8, 8, 2, 2): the direction of W W^T tends to SELI's (Thrampoulidis et
    # al., NeurIPS 2022), slowly (measured distances 0.116, 0.073, 0.055).
    sizes = [8, 8, 2, 2]
    target = np.array(tc.seli(sizes).WWT)
    target /= np.linalg.norm(target)
    dist = []
    for lam in (1e-2, 1e-3, 1e-4):
        o = cc.optimum(sizes, lam, lam, None, "none")
        dist.append(np.linalg.norm(o.WWT / np.linalg.norm(o.WWT) - target))
    assert dist[0] > dist[1] > dist[2]
