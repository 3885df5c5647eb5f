"""The SELI geometry (Thrampoulidis et al., NeurIPS 2022) in class space, against the SVD of the
N-sample SEL matrix, with a dual certificate that its logits solve the UFM-SVM, and the figures
of the two-level step imbalance."""

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from theory.seli import seli
from ufm import metrics


def _sel_matrix(sizes):
    y = np.repeat(np.arange(len(sizes)), sizes)
    K = len(sizes)
    return np.eye(K)[:, y] - 1.0 / K, y


def _n_sample_seli(sizes):
    """SELI from the SVD of the K x N SEL matrix: W = U L^{1/2}, H = V L^{1/2} (samples first),
    scaled to ||W||_F = ||H||_F = 1."""
    Z, y = _sel_matrix(sizes)
    U, lam, Vt = np.linalg.svd(Z, full_matrices=False)
    r = len(sizes) - 1
    U, lam, V = U[:, :r], lam[:r], Vt[:r].T
    W = U * np.sqrt(lam / lam.sum())
    H = V * np.sqrt(lam / lam.sum())
    mu = np.stack([H[y == c].mean(0) for c in range(len(sizes))])
    return W, H, mu, y, Z, U @ V.T


@given(st.lists(st.integers(1, 6), min_size=4, max_size=4))
@example([5, 3, 2, 1])
@example([3, 3, 3, 3])
def test_class_space_formula_matches_n_sample_svd_and_is_certified(sizes):
    g = seli(sizes, dtype=jnp.float64)
    W, H, mu, y, Z, M = _n_sample_seli(sizes)
    np.testing.assert_allclose(g.WWT, W @ W.T, atol=1e-13)
    np.testing.assert_allclose(g.class_mean_gram, mu @ mu.T, atol=1e-13)
    np.testing.assert_allclose(g.logits, mu @ W.T, atol=1e-13)
    np.testing.assert_allclose(H @ W.T, Z.T / float(g.nuclear_norm), atol=1e-13)  # logits ∝ SEL
    np.testing.assert_allclose(H, mu[y], atol=1e-13)  # class-collapsed
    assert float(g.nuclear_norm) == pytest.approx(np.linalg.norm(Z, "nuc"), rel=1e-13)
    assert np.trace(g.WWT) == pytest.approx(1.0, rel=1e-13)
    assert np.sum(np.asarray(sizes) * np.diag(g.class_mean_gram)) == pytest.approx(1.0, rel=1e-13)
    # Dual certificate: Zhat minimises ||Z||_* subject to z_{y_i, i} - z_{c, i} >= 1 (the
    # UFM-SVM's convex form) iff M = U V^T = sum_{i, c} alpha_ic (e_{y_i} - e_c) e_i^T with
    # alpha >= 0 and ||M||_op <= 1: alpha_ic = -M[c, i] >= 0 off the label, every margin of
    # Zhat is exactly 1, and sum alpha = <M, Zhat> = ||Zhat||_* closes the duality gap.
    K = len(sizes)
    off = M[np.arange(K)[:, None] != y[None, :]]
    assert off.max() <= 1e-12
    np.testing.assert_allclose(M.sum(axis=0), 0.0, atol=1e-12)
    assert np.linalg.norm(M, 2) <= 1 + 1e-12
    assert -off.sum() == pytest.approx(float(g.nuclear_norm), rel=1e-12)
    margins = Z[y, np.arange(len(y))][None, :] - Z
    np.testing.assert_allclose(margins[np.arange(K)[:, None] != y[None, :]], 1.0, atol=1e-15)


def test_balanced_classes_give_the_simplex_etf():
    K, n = 5, 3
    g = seli([n] * K)
    ref = np.eye(K) - 1.0 / K
    np.testing.assert_allclose(g.WWT, ref / (K - 1), atol=1e-15)
    np.testing.assert_allclose(g.class_mean_gram, ref / (n * (K - 1)), atol=1e-15)
    np.testing.assert_allclose(g.logits, ref / (np.sqrt(n) * (K - 1)), atol=1e-15)
    np.testing.assert_allclose(g.singular_values, [np.sqrt(n)] * (K - 1) + [0.0], atol=1e-14)
    assert float(metrics.etf_distance(g.WWT)) < 1e-14
    assert g.rank == K - 1 and np.all(np.asarray(g.bias) == 0)


@pytest.mark.parametrize(
    ("R", "cosine", "ratio"), [(10, 0.0334, 0.612), (100, 0.338, 0.416), (10**4, 0.873, 0.301)]
)
def test_two_level_step_imbalance_figures(R, cosine, ratio):
    """K_A = K_B = 5, majority R times the minority: the issue's figures to their digits, read
    off the Gram and, independently, by ufm.metrics.minority_collapse on a factor W of it."""
    sizes = [R] * 5 + [1] * 5
    g = seli(sizes)
    G = np.asarray(g.WWT)
    cos = G[5, 6] / np.sqrt(G[5, 5] * G[6, 6])
    digits = 10.0 ** (np.floor(np.log10(cosine)) - 2)
    assert abs(cos - cosine) <= digits / 2
    assert abs(np.sqrt(G[5, 5] / G[0, 0]) - ratio) <= 5e-4
    e, V = np.linalg.eigh(G)
    W = V * np.sqrt(np.clip(e, 0, None))  # W W^T = G
    mc = metrics.minority_collapse(W, np.arange(10) >= 5)
    assert float(mc["max_cosine"]) == pytest.approx(cos, rel=1e-10)
    assert float(mc["mean_cosine"]) == pytest.approx(cos, rel=1e-10)
    np.testing.assert_allclose(mc["norm_ratios"], np.sqrt(G[5, 5] / G[0, 0]), rtol=1e-10)
    assert float(metrics.gram_distance(W @ W.T, g.WWT)) < 1e-12
    # two classes of equal size m: ||w_c - w_c'||^2 = 2 sqrt(m) / ||Zhat||_*, never 0
    for c, m in ((5, 1), (0, R)):
        gap = G[c, c] + G[c + 1, c + 1] - 2 * G[c, c + 1]
        assert gap == pytest.approx(2 * np.sqrt(m) / float(g.nuclear_norm), rel=1e-10)
    # W W^T depends on the proportions only
    np.testing.assert_allclose(seli([3 * s for s in sizes]).WWT, G, rtol=1e-12, atol=1e-16)


def test_dtype_and_bad_input():
    assert seli([4, 2, 1], dtype=jnp.float32).WWT.dtype == jnp.float32
    for bad, match in [
        ([3], "K >= 2"),
        ([[1, 2], [3, 4]], "1-D"),
        ([3, 0, 2], ">= 1"),
        ([3, 1.5], "integers"),
        ([True, True], "integers"),
        (["a", "b"], "integers"),
    ]:
        with pytest.raises(ValueError, match=match):
            seli(bad)
