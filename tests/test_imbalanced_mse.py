"""MSE classification UFM with any class sizes: theory.imbalanced_mse (soft-threshold of the
class-space target) against the exact solver, the balanced closed forms, the secular equation
and the minority-collapse window."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import examples
from hypothesis import given, settings
from hypothesis import strategies as st

import ufm
from theory import classification as tc
from theory import imbalanced_mse as im

DANG_SIZES = (40, 20, 8, 8)  # Dang et al., ICML 2023: lambda_H = lambda_W = 0.035, d = 8


def _labels(sizes):
    return np.repeat(np.arange(len(sizes), dtype=np.int32), sizes)


def _solve(sizes, lam_H, lam_W, d, bias):
    p = ufm.ClassificationUFM(
        _labels(sizes), len(sizes), lam_H, lam_W, feature_dim=d, loss="mse", bias=bias
    )
    sol = ufm.solve(p)
    assert int(sol.status) == ufm.Status.successful, sol.status
    H, W, b = (np.asarray(x) for x in sol.params)
    mu = np.stack([H[_labels(sizes) == k].mean(axis=0) for k in range(len(sizes))])
    return float(sol.loss), W, mu, b


def _rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


@pytest.mark.parametrize("bias, expected", [("none", 0.389674093369), ("free", 0.265882848880)])
def test_dang_setting_optimal_loss(bias, expected):
    opt = im.optimum(DANG_SIZES, 0.035, 0.035, 8, bias)
    assert abs(float(opt.loss) - expected) < 1e-12
    assert bool(np.all(opt.survives)) and int(opt.rank) == (4 if bias == "none" else 3)


@pytest.mark.parametrize("bias", ["none", "free", 0.5, 0.05])
def test_dang_setting_against_exact_solver(bias):
    opt = im.optimum(DANG_SIZES, 0.035, 0.035, 8, bias)
    loss, W, mu, b = _solve(DANG_SIZES, 0.035, 0.035, 8, bias)
    assert abs(loss - float(opt.loss)) <= 1e-9 * float(opt.loss)
    assert _rel(W @ W.T, opt.WWT) < 1e-6
    assert _rel(mu @ mu.T, opt.class_mean_gram) < 1e-6
    assert _rel(mu @ W.T + (b if bias != "none" else 0), opt.logits) < 1e-6
    if bias != "none":
        assert np.max(np.abs(b - np.asarray(opt.bias))) < 1e-7
    assert float(opt.stationarity) < 1e-13


# Balanced classes, K = 4, n = 3: every regime of the balanced closed forms, kappa =
# K sqrt(n lambda_H lambda_W); lambda_b = 0.3 has its pure-ETF threshold at kappa = 0.23.
@pytest.mark.parametrize("kappa", [0.1, 0.6, 1.5])
@pytest.mark.parametrize("bias", ["none", "free", 0.3, 3.0])
def test_balanced_sizes_reduce_to_closed_forms(kappa, bias):
    K, n = 4, 3
    c = (kappa / K) ** 2 / n
    lH, lW = 2 * np.sqrt(c), np.sqrt(c) / 2
    bal = tc.optimum(K, n, lH, lW, "mse", bias)
    opt = im.optimum([n] * K, lH, lW, K, bias)
    for name in ("WWT", "class_mean_gram", "logits", "bias", "loss"):
        np.testing.assert_allclose(
            getattr(opt, name), getattr(bal, name), rtol=1e-11, atol=1e-12, err_msg=name
        )
    assert bool(opt.zero) == bool(bal.zero)


@pytest.mark.parametrize(
    "sizes", [(40, 20, 8, 8), (5, 3, 2), (9, 4, 4, 1), (7, 7, 7), (1, 2, 3, 4, 5), (6, 6, 1, 1, 1)]
)
def test_centred_spectrum_secular_equation_matches_eigh(sizes):
    n = np.array(sizes, float)
    M = np.diag(n) - np.outer(n, n) / n.sum()
    eig = np.linalg.eigvalsh(M)[::-1]
    sec = im.centred_spectrum(sizes)
    np.testing.assert_allclose(sec, eig, atol=1e-12 * n.max())
    # The roots solve sum_k n_k / (n_k - mu) = 0, one strictly inside each gap.
    distinct = np.unique(n)
    for root, lo, hi in zip(im.secular_roots(sizes), distinct[:-1], distinct[1:], strict=True):
        assert lo < root < hi
        assert abs(np.sum(n / (n - root))) < 1e-6 * np.sum(n / np.abs(n - root))
    # And they are the squared singular values of the free-bias target the optimum thresholds.
    opt = im.optimum(sizes, 1e-4, 1e-4, len(sizes), "free")
    np.testing.assert_allclose(np.asarray(opt.singular_values) ** 2, sec, atol=1e-10 * n.max())


def test_two_level_coupled_eigenvalue_closed_form():
    for K_A, n_A, K_B, n_B in [(2, 40, 3, 8), (1, 10, 4, 1), (5, 100, 5, 1), (3, 7, 2, 6)]:
        sizes = [n_A] * K_A + [n_B] * K_B
        w = im.minority_collapse_window(K_A, n_A, K_B, n_B)
        (root,) = im.secular_roots(sizes)
        assert abs(root - w.coupled_eigenvalue) < 1e-12 * n_A
        N = K_A * n_A + K_B * n_B
        assert w.c_low == n_B / N**2 and n_B < w.coupled_eigenvalue < n_A


def test_bias_free_class_death_threshold_against_solver():
    # Class k is zeroed exactly when n_k <= N^2 lambda_H lambda_W.
    sizes = (12, 6, 3)
    N = sum(sizes)
    for k, n_k in enumerate(sizes):
        c_k = n_k / N**2
        np.testing.assert_allclose(im.optimum(sizes, 1.0, 1.0, 3).death_level[k], c_k, rtol=1e-15)
        for factor, alive in [(0.97, True), (1.03, False)]:
            lam = np.sqrt(factor * c_k)
            opt = im.optimum(sizes, lam, lam, 3)
            _, W, _, _ = _solve(sizes, lam, lam, 3, "none")
            norms = np.linalg.norm(W, axis=1)
            assert bool(opt.survives[k]) == alive
            # Alive: ||w_k||^2 = sqrt(n_k) - tau >= 0.015 sqrt(n_k) here (lambda_H = lambda_W).
            assert (norms[k] ** 2 > 1e-4) == alive
            np.testing.assert_allclose(norms**2, np.diagonal(opt.WWT), atol=1e-9)


# K_A = 2 majority classes of 10, K_B = 3 minority classes of 2: N = 26, window
# 2/676 <= lambda_H lambda_W < 5 * 10 * 2 / 26^3.
@pytest.mark.slow
@pytest.mark.parametrize("where", ["below", "inside_low", "inside_high", "above"])
def test_minority_collapse_window_against_solver(where):
    K_A, n_A, K_B, n_B = 2, 10, 3, 2
    w = im.minority_collapse_window(K_A, n_A, K_B, n_B)
    assert w.c_low < w.c_high
    c = {
        "below": 0.95 * w.c_low,
        "inside_low": 1.05 * w.c_low,
        "inside_high": 0.95 * w.c_high,
        "above": 1.05 * w.c_high,
    }[where]
    sizes = [n_A] * K_A + [n_B] * K_B
    lH, lW = 2 * np.sqrt(c), np.sqrt(c) / 2  # only the product matters
    opt = im.optimum(sizes, lH, lW, len(sizes) - 1, "free")
    _, W, _, _ = _solve(sizes, lH, lW, len(sizes) - 1, "free")
    assert _rel(W @ W.T, opt.WWT) < 1e-6
    for G in (W @ W.T, np.asarray(opt.WWT)):
        minor = G[K_A:, K_A:]
        scale = np.max(np.diagonal(G))
        # ||w_k - w_l||^2 between minority rows, and the minority rows' norms.
        spread = np.max(np.diagonal(minor)[:, None] + np.diagonal(minor)[None] - 2 * minor)
        norm = np.min(np.diagonal(minor))
        equal = spread < 1e-9 * scale
        nonzero = norm > 1e-6 * scale
        assert equal == (where != "below")
        assert nonzero == (where != "above")


def test_regularised_bias_closed_regimes_and_stationarity():
    sizes = np.array([9, 4, 4, 1])
    N = sizes.sum()
    # Every direction kept: b = sqrt(lambda_H lambda_W) sqrt(n) / lambda_b.
    lam, lb = 0.01, 1.0
    opt = im.optimum(sizes, lam, lam, 4, lb)
    assert bool(np.all(opt.kept))
    np.testing.assert_allclose(opt.bias, lam * np.sqrt(sizes) / lb, rtol=1e-13)
    # Nothing kept: b = n / (N (1 + lambda_b)), the zero optimum.
    opt = im.optimum(sizes, 0.3, 0.3, 4, lb)
    assert bool(opt.zero)
    np.testing.assert_allclose(opt.bias, sizes / (N * (1 + lb)), rtol=1e-13)
    # Mixed regime: the returned b satisfies lambda_b b = R_b^T sqrt(n) / N, recomputed here.
    lam, lb = 0.035, 0.1
    opt = im.optimum(sizes, lam, lam, 4, lb)
    assert 0 < int(opt.rank) < 4
    b = np.asarray(opt.bias)
    sq = np.sqrt(sizes)
    U, s, Vt = np.linalg.svd(np.diag(sq) - np.outer(sq, b))
    R = (U * np.minimum(s, N * lam)) @ Vt
    assert np.max(np.abs(lb * b - R.T @ sq / N)) < 1e-13
    loss, W, _, b_sol = _solve(tuple(sizes), lam, lam, 4, lb)
    assert abs(loss - float(opt.loss)) <= 1e-9 * loss
    assert np.max(np.abs(b_sol - b)) < 1e-7


@pytest.mark.slow
def test_narrow_width_keeps_top_singular_values():
    # d = 2 < K = 4: bias-free keeps the two largest classes; free bias the two largest values.
    for bias in ("none", "free"):
        opt = im.optimum(DANG_SIZES, 0.035, 0.035, 2, bias)
        assert int(opt.rank) == 2 and bool(opt.unique)
        with pytest.warns(UserWarning, match="feature_dim"):
            loss, W, _, _ = _solve(DANG_SIZES, 0.035, 0.035, 2, bias)
        assert abs(loss - float(opt.loss)) <= 1e-9 * loss
        assert _rel(W @ W.T, opt.WWT) < 1e-6
    none = im.optimum(DANG_SIZES, 0.035, 0.035, 2, "none")
    assert none.survives.tolist() == [True, True, False, False]
    # d = 3: the two minority classes tie at the cut, so the Grams are not unique; the loss is.
    tie = im.optimum(DANG_SIZES, 0.035, 0.035, 3, "none")
    assert not bool(tie.unique)
    with pytest.warns(UserWarning, match="feature_dim"):
        loss, _, _, _ = _solve(DANG_SIZES, 0.035, 0.035, 3, "none")
    assert abs(loss - float(tie.loss)) <= 1e-9 * loss


@pytest.mark.slow
def test_regularised_bias_narrow_width_refused_when_rank_exceeds_it():
    with pytest.raises(ValueError, match="feature_dim = 2"):
        im.optimum(DANG_SIZES, 0.035, 0.035, 2, 0.5)
    # Rank <= d: the d >= K optimum is the width-d optimum too.
    opt = im.optimum(DANG_SIZES, 0.07, 0.07, 2, 0.5)
    assert int(opt.rank) <= 2
    with pytest.warns(UserWarning, match="feature_dim"):
        loss, _, _, _ = _solve(DANG_SIZES, 0.07, 0.07, 2, 0.5)
    assert abs(loss - float(opt.loss)) <= 1e-9 * loss


@pytest.mark.slow
def test_jit_vmap_and_float32():
    lams = jnp.array([0.01, 0.035, 0.06])
    for bias in ("none", "free", 0.5):

        def f(lam, bias=bias):
            return im.optimum(DANG_SIZES, lam, lam, 8, bias)

        batched = jax.jit(jax.vmap(f))(lams)
        for i, lam in enumerate(lams):
            single = f(float(lam))
            np.testing.assert_allclose(batched.WWT[i], single.WWT, rtol=1e-12, atol=1e-14)
            np.testing.assert_allclose(batched.loss[i], single.loss, rtol=1e-12)
            f32 = im.optimum(DANG_SIZES, float(lam), float(lam), 8, bias, dtype=jnp.float32)
            assert f32.WWT.dtype == jnp.float32
            np.testing.assert_allclose(f32.loss, single.loss, rtol=1e-5)
            np.testing.assert_allclose(f32.WWT, single.WWT, atol=1e-5 * np.abs(single.WWT).max())


def test_regularised_bias_traced_lambda_b():
    lbs = jnp.array([0.0, 0.05, 0.5, 5.0])
    batched = jax.jit(jax.vmap(lambda lb: im.optimum(DANG_SIZES, 0.035, 0.035, 8, lb)))(lbs)
    free = im.optimum(DANG_SIZES, 0.035, 0.035, 8, "free")
    np.testing.assert_allclose(batched.loss[0], free.loss, rtol=1e-14)
    np.testing.assert_allclose(batched.bias[0], free.bias, rtol=1e-14)
    for i, lb in enumerate(lbs[1:], start=1):
        single = im.optimum(DANG_SIZES, 0.035, 0.035, 8, float(lb))
        np.testing.assert_allclose(batched.loss[i], single.loss, rtol=1e-13)
        np.testing.assert_allclose(batched.bias[i], single.bias, rtol=1e-10, atol=1e-13)
    # The optimal loss increases with lambda_b, from the free bias towards none.
    none = im.optimum(DANG_SIZES, 0.035, 0.035, 8, "none")
    assert np.all(np.diff(np.asarray(batched.loss)) > 0) and batched.loss[-1] < none.loss


def test_bad_input():
    with pytest.raises(ValueError, match="class_sizes"):
        im.optimum((4, 0, 2), 0.1, 0.1, 3)
    with pytest.raises(ValueError, match="class_sizes"):
        im.optimum((4,), 0.1, 0.1, 3)
    with pytest.raises(ValueError, match="class_sizes"):
        im.optimum((4, 2.5), 0.1, 0.1, 3)
    with pytest.raises(ValueError, match="lambda_H"):
        im.optimum((4, 2), 0.0, 0.1, 3)
    with pytest.raises(ValueError, match="n_B"):
        im.minority_collapse_window(2, 5, 2, 5)
    with pytest.raises(ValueError, match="K_B"):
        im.minority_collapse_window(2, 5, 1, 2)
    p = ufm.ClassificationUFM(_labels((3, 2)), 2, 0.1, 0.1, 2, loss="ce")
    with pytest.raises(ValueError, match="MSE"):
        im.optimum_of(p)


# Property test: fixed (K, N) so that the solver compiles once per (K, bias mode); the class sizes
# are a random composition of N, the lambdas and lambda_b random.
SHAPES = ((3, 12), (4, 16))


@st.composite
def cases(draw):
    K, N = draw(st.sampled_from(SHAPES))
    cuts = sorted(
        draw(st.lists(st.integers(1, N - 1), min_size=K - 1, max_size=K - 1, unique=True))
    )
    sizes = tuple(np.diff([0, *cuts, N]).tolist())
    # c = lambda_H lambda_W up to a little beyond the largest level n_max / N^2.
    c = draw(st.floats(0.02, 1.3)) * max(sizes) / N**2
    ratio = draw(st.floats(0.25, 4.0))
    bias = draw(st.sampled_from(["none", "free", "reg"]))
    if bias == "reg":
        bias = draw(st.floats(0.05, 5.0))
    return sizes, np.sqrt(c * ratio), np.sqrt(c / ratio), bias


@pytest.mark.slow
@settings(max_examples=examples(12))
@given(case=cases())
def test_property_against_exact_solver(case):
    sizes, lH, lW, bias = case
    K = len(sizes)
    opt = im.optimum(sizes, lH, lW, K, bias)
    p = ufm.ClassificationUFM(_labels(sizes), K, lH, lW, feature_dim=K, loss="mse", bias=bias)
    assert np.array_equal(im.class_sizes_of(p), sizes)
    np.testing.assert_allclose(im.optimum_of(p).loss, opt.loss, rtol=1e-14)
    loss, W, _, _ = _solve(sizes, lH, lW, K, bias)
    assert abs(loss - float(opt.loss)) <= 1e-9 * loss
    assert np.max(np.abs(W @ W.T - opt.WWT)) <= 1e-6 * max(np.abs(opt.WWT).max(), 1e-3)


def test_symbolic_bias_free_threshold_matches_numeric():
    import sympy as sp

    from theory import symbolic_imbalanced as si

    r = si.bias_free_class_threshold()
    nk, N, lH, lW = r.symbols
    tau = N * sp.sqrt(lH * lW)
    assert sp.simplify(r.size_threshold - N**2 * lH * lW) == 0
    assert sp.simplify(r.row_norm_sq - sp.sqrt(lH / lW) * (sp.sqrt(nk) - tau)) == 0
    assert sp.simplify(r.loss - (tau * sp.sqrt(nk) - tau**2 / 2) / N) == 0
    # Against the numeric optimum: survivors, W W^T and the loss, summed over classes.
    sizes, lam_H, lam_W = (12, 6, 3), 0.12, 0.08  # N^2 lambda_H lambda_W = 4.2
    Nv = sum(sizes)
    opt = im.optimum(sizes, lam_H, lam_W, 3)
    total = 0.0
    for k, n in enumerate(sizes):
        vals = {nk: n, N: Nv, lH: lam_H, lW: lam_W}
        alive = n > float(r.size_threshold.subs(vals))
        assert alive == bool(opt.survives[k])
        row = float(r.row_norm_sq.subs(vals)) if alive else 0.0
        np.testing.assert_allclose(opt.WWT[k, k], row, rtol=1e-13, atol=1e-15)
        total += float(r.loss.subs(vals)) if alive else n / (2 * Nv)
    assert not all(opt.survives)  # the threshold is crossed by one class here
    np.testing.assert_allclose(opt.loss, total, rtol=1e-13)


@pytest.mark.slow
def test_symbolic_secular_equation_and_two_level_root():
    from theory import symbolic_imbalanced as si

    for K in (2, 3, 4):
        assert si.secular_identity(K) == 0
    root, (KA, nA, KB, nB) = si.two_level_coupled_root()
    w = im.minority_collapse_window(3, 11, 4, 2)
    np.testing.assert_allclose(
        float(root.subs({KA: 3, nA: 11, KB: 4, nB: 2})), w.coupled_eigenvalue, rtol=1e-15
    )
