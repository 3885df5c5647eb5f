"""Imbalance metrics (NC1 per class, minority collapse, Gram distance) against plain-numpy
transcriptions of their definitions; jit, vmap, float32, streaming, NaN in NaN out, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ufm import metrics

SIZES = (7, 3, 2, 5)  # one fixed imbalanced shape: K = 4, N = 17, d = 6
K, D = len(SIZES), 6
LABELS = np.repeat(np.arange(K), SIZES)
MINORITY = np.array([False, True, True, False])


def _features(seed, offset=0.0, scale=1.0, spread=1.0):
    rng = np.random.default_rng(seed)
    H = spread * rng.normal(size=(len(LABELS), D)) + 2 * rng.normal(size=(K, D))[LABELS]
    return scale * H + offset


def _np_nc1_per_class(H, y, K):
    """The definition: (1/K) tr(Sigma_W^(c) Sigma_B^+), Sigma_B^+ on its top K - 1 eigenpairs."""
    mu = np.stack([H[y == c].mean(0) for c in range(K)])
    Md = mu - H.mean(0)
    e, V = np.linalg.eigh(Md.T @ Md / K)
    e, V = e[::-1][: K - 1], V[:, ::-1][:, : K - 1]
    pinv = (V / e) @ V.T
    out = []
    for c in range(K):
        R = H[y == c] - mu[c]
        out.append(np.trace(R.T @ R / len(R) @ pinv) / K)
    return np.array(out)


def _np_minority(W, idx):
    maj = [c for c in range(W.shape[0]) if c not in idx]
    norms = np.linalg.norm(W, axis=1)
    B = W[idx] / norms[idx, None]
    cos = B @ B.T
    off = cos[~np.eye(len(idx), dtype=bool)]
    return cos, off.max(), off.mean(), norms[idx] / norms[maj].mean()


def _np_gram_distance(G, R):
    return np.linalg.norm(G / np.linalg.norm(G) - R / np.linalg.norm(R))


@given(st.integers(0, 2**31), st.sampled_from((0.0, 50.0)), st.sampled_from((1e-3, 1.0, 1e3)))
def test_nc1_per_class_matches_definition_and_weights_to_nc1(seed, offset, scale):
    H = _features(seed, offset, scale)
    per = np.asarray(metrics.nc1_per_class(H, LABELS, K))
    np.testing.assert_allclose(per, _np_nc1_per_class(H, LABELS, K), rtol=1e-10)
    n = np.array(SIZES)
    assert per @ n / n.sum() == pytest.approx(float(metrics.nc1(H, LABELS, K)), rel=1e-12)
    note = metrics.nc1_per_class(H, LABELS, K, scale="notebook")
    np.testing.assert_allclose(note, K * per, rtol=1e-13)


def test_nc1_per_class_sees_an_uncollapsed_minority():
    """Collapsed majorities, a spread minority: its NC1 is large, the pooled NC1 much smaller."""
    rng = np.random.default_rng(1)
    H = 3 * rng.normal(size=(K, D))[LABELS]
    H[LABELS == 2] += rng.normal(size=(SIZES[2], D))
    per = np.asarray(metrics.nc1_per_class(H, LABELS, K))
    assert np.all(per[[0, 1, 3]] < 1e-20) and per[2] > 0.01
    assert float(metrics.nc1(H, LABELS, K)) < per[2] * SIZES[2] / sum(SIZES) * (1 + 1e-12)


@given(st.integers(0, 2**31))
def test_minority_collapse_and_gram_distance_match_definitions(seed):
    rng = np.random.default_rng(seed)
    W = rng.normal(size=(K, D)) * rng.uniform(0.1, 3.0, size=(K, 1))
    out = metrics.minority_collapse(W, MINORITY)
    cos, mx, mean, ratios = _np_minority(W, [1, 2])
    np.testing.assert_allclose(out["cosines"], cos, rtol=1e-10, atol=1e-15)
    assert float(out["max_cosine"]) == pytest.approx(mx, rel=1e-10)
    assert float(out["mean_cosine"]) == pytest.approx(mean, rel=1e-10)
    np.testing.assert_allclose(out["norm_ratios"], ratios, rtol=1e-10)
    assert float(out["mean_norm_ratio"]) == pytest.approx(ratios.mean(), rel=1e-10)
    same = metrics.minority_collapse(W, [2, 1])  # indices, any order: the same classes
    np.testing.assert_allclose(same["cosines"], out["cosines"], rtol=1e-14)
    G = W @ W.T
    R = rng.normal(size=(K, K))
    R = R @ R.T
    assert float(metrics.gram_distance(G, R)) == pytest.approx(_np_gram_distance(G, R), rel=1e-10)
    ref = np.eye(K) - 1.0 / K  # the simplex ETF as the reference: etf_distance
    assert float(metrics.gram_distance(G, 7.0 * ref)) == pytest.approx(
        float(metrics.etf_distance(G)), rel=1e-12
    )
    assert float(metrics.gram_distance(3.0 * R, R)) < 1e-15


def test_minority_collapse_at_coinciding_rows():
    """Minority rows 1 and 2 equal: cosine 1; zero minority rows: cosine 0 (the shapes of the
    other tests, so nothing recompiles)."""
    W = np.zeros((K, D))
    W[0, 0], W[3, 1], W[1:3, 2:4] = 2.0, 4.0, 1.0
    out = metrics.minority_collapse(W, MINORITY)
    assert float(out["max_cosine"]) == pytest.approx(1.0, abs=1e-15)
    assert float(out["mean_cosine"]) == pytest.approx(1.0, abs=1e-15)
    np.testing.assert_allclose(out["norm_ratios"], np.sqrt(2) / 3, rtol=1e-15)
    W[1:3] = 0.0
    zero = metrics.minority_collapse(W, MINORITY)
    np.testing.assert_array_equal(zero["cosines"], 0.0)
    np.testing.assert_array_equal(zero["norm_ratios"], 0.0)


def _all(H, y, W, G):
    """Every imbalance metric of one instance (one compiled program for jit and for vmap)."""
    ref = jnp.eye(K, dtype=G.dtype)
    return (
        metrics.nc1_per_class(H, y, K),
        metrics.minority_collapse(W, MINORITY),
        metrics.gram_distance(G, ref),
    )


_jit_all = jax.jit(_all)
_jit_vmap_all = jax.jit(jax.vmap(_all))


def _instances(n=3):
    rng = np.random.default_rng(0)
    Hs = np.stack([_features(s) for s in range(n)])
    Ws = rng.normal(size=(n, K, D))
    return Hs, np.tile(LABELS, (n, 1)), Ws, Ws @ Ws.transpose(0, 2, 1)


def _assert_same(a, b, rtol):
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_allclose(x, y, rtol=rtol, atol=rtol * 1e-3)


def test_jit_vmap_and_float32():
    Hs, ys, Ws, Gs = _instances()
    batched = _jit_vmap_all(Hs, ys, Ws, Gs)
    for i in range(3):
        eager = _all(Hs[i], ys[i], Ws[i], jnp.asarray(Gs[i]))
        _assert_same(jax.tree_util.tree_map(lambda v, i=i: v[i], batched), eager, 1e-12)
    H32, W32, G32 = (x[0].astype(np.float32) for x in (Hs, Ws, Gs))
    f32 = _jit_all(H32, LABELS, W32, G32)
    assert all(v.dtype == jnp.float32 for v in jax.tree_util.tree_leaves(f32))
    _assert_same(f32, jax.tree_util.tree_map(lambda v: v[0], batched), 1e-4)


def test_nan_in_nan_out():
    Hs, ys, Ws, Gs = _instances()
    for bad in (np.nan, np.inf):
        for which in range(3):  # NaN in H, in W (a majority row), in the Gram
            args = [Hs.copy(), ys, Ws.copy(), Gs.copy()]
            args[0 if which == 0 else which + 1][1, 0, 2] = bad
            eager = _all(*(a[1] for a in args[:3]), jnp.asarray(args[3][1]))
            assert all(np.all(np.isnan(v)) for v in jax.tree_util.tree_leaves(eager[which]))
            batched = _jit_vmap_all(*args)
            leaves = jax.tree_util.tree_leaves(batched[which])
            assert all(np.all(np.isnan(v[1])) and np.all(np.isfinite(v[0])) for v in leaves)
        H = Hs[0].copy()
        H[4, 2] = bad
        acc = metrics.PerClassNC1Accumulator(K).update(Hs[1], LABELS).update(H, LABELS)
        res = acc.result()
        assert np.all(np.isnan(res["nc1_per_class"])) and np.isnan(res["nc1"])
    # the reference Gram holding a NaN
    assert np.isnan(float(metrics.gram_distance(np.eye(K), np.full((K, K), np.nan))))
    # traced labels with an empty class: NaN, not a number (the eager call raises)
    per = _jit_all(Hs[0], LABELS.clip(0, 2), Ws[0], Gs[0])[0]
    assert np.all(np.isnan(per))


@pytest.mark.parametrize("offset", [0.0, 1e6])
def test_streaming_matches_array_version(offset):
    """Batches in shuffled order (some without every class), features at an offset of 1e6."""
    H = _features(3, spread=0.5)
    ref = np.asarray(metrics.nc1_per_class(H, LABELS, K))
    order = np.random.default_rng(0).permutation(len(LABELS))
    acc = metrics.PerClassNC1Accumulator(K)
    batches = [(H[i] * 8.0 + offset, LABELS[i]) for i in np.array_split(order, 5)]
    out = metrics.accumulate(acc, batches)
    np.testing.assert_allclose(out["nc1_per_class"], ref, rtol=1e-10)
    assert out["nc1"] == pytest.approx(float(metrics.nc1(H, LABELS, K)), rel=1e-10)
    note = metrics.PerClassNC1Accumulator(K)
    note.update(H, LABELS).update(H[:0], LABELS[:0])
    np.testing.assert_allclose(note.result(scale="notebook")["nc1_per_class"], K * ref, rtol=1e-12)


def test_bad_input_raises_naming_the_argument():
    W = np.ones((K, D))
    cases = [
        (lambda: metrics.minority_collapse(W, [True, False, True]), "minority.*shape"),
        (lambda: metrics.minority_collapse(W, [1]), "at least 2"),
        (lambda: metrics.minority_collapse(W, [0, 1, 2, 3]), "majority"),
        (lambda: metrics.minority_collapse(W, [1, 4]), r"minority indices.*\[0, 4\)"),
        (lambda: metrics.minority_collapse(W, [1, 1]), "distinct"),
        (lambda: metrics.minority_collapse(W, [0.0, 1.0]), "minority"),
        (lambda: metrics.minority_collapse(W[0], [0, 1]), "W must be a 2-D"),
        (lambda: metrics.gram_distance(np.eye(3), np.eye(4)), "reference must have the shape"),
        (lambda: metrics.gram_distance(np.ones((3, 4)), np.eye(3)), "G must be a square"),
        (lambda: metrics.nc1_per_class(np.ones((5, 2)), LABELS, K), "labels must have shape"),
        (lambda: metrics.nc1_per_class(_features(0), LABELS, K, scale="x"), "scale must be"),
        (lambda: metrics.PerClassNC1Accumulator(1), "num_classes"),
        (lambda: metrics.PerClassNC1Accumulator(K).update(np.ones((3, 2)), [0, 1, 4]), "labels"),
        (lambda: metrics.PerClassNC1Accumulator(K).update(np.ones((3, 2)), [0, 1]), "labels"),
        (lambda: metrics.PerClassNC1Accumulator(K).result(), "no samples"),
        (
            lambda: metrics.PerClassNC1Accumulator(K).update(np.ones((2, 2)), [0, 1]).result(),
            r"classes \[2, 3\]",
        ),
    ]
    for call, match in cases:
        with pytest.raises((ValueError, TypeError), match=match):
            call()
    acc = metrics.PerClassNC1Accumulator(K).update(np.ones((2, 3)), [0, 1])
    with pytest.raises(ValueError, match="features must have 3 columns"):
        acc.update(np.ones((2, 2)), [0, 1])
    with pytest.raises(TypeError, match="minority must be concrete"):
        jax.jit(lambda m: metrics.minority_collapse(W, m))(jnp.asarray(MINORITY))
