"""Layer-wise metrics: deep NRC (Rangamani & Unal) and deep NC against independent numpy
transcriptions of the definitions, collapsed configurations, the regression-UFM optimum's
predicted values (docs/theory.md section 5), jit, vmap and float32."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import lambdas_for_regime, random_targets

import theory
from ufm import metrics

deep_nrc = jax.jit(metrics.deep_nrc, static_argnames="cka")
deep_nc = jax.jit(metrics.deep_nc, static_argnums=2, static_argnames="center")
nc1 = jax.jit(metrics.nc1, static_argnums=2)
nc2 = jax.jit(metrics.nc2, static_argnums=3)
nc3 = jax.jit(metrics.nc3, static_argnums=3)
nc4 = jax.jit(metrics.nc4, static_argnums=4)


# --- independent numpy transcriptions (SVD, pinv, explicit N x N centred Grams) -------------


def np_deep_nrc_layer(H, W, Y, cka="all", rtol=1e-3):
    N, n = Y.shape
    k = min(n, H.shape[1])
    Hc, Yc = H - H.mean(0), Y - Y.mean(0)
    _, s, Vt = np.linalg.svd(Hc, full_matrices=False)
    e = s**2 / N
    X = Hc if cka == "all" else Hc[:, :n]
    KH, KY = X @ X.T, Yc @ Yc.T  # N x N centred Grams, as in the authors' code
    Vw = np.linalg.svd(W)[2]
    r = min(k, W.shape[0])
    sw = np.linalg.svd(W, compute_uv=False)
    lam = np.sort(np.linalg.eigvalsh(Yc.T @ Yc / N))[::-1]
    P = np.linalg.pinv(H, rtol=rtol) @ Yc
    return {
        "nrc1": e[k:].sum() / e.sum(),
        "nrc2": np.sum(KH * KY) / (np.linalg.norm(KH) * np.linalg.norm(KY)),
        "nrc3": np.linalg.svd(Vt[:k] @ Vw[:r].T, compute_uv=False).mean(),
        "nrc4": np.mean((H @ P - Yc) ** 2),
        "srank_features": e.sum() / e[0],
        "srank_features_sq": (e**2).sum() / e[0] ** 2,
        "srank_weights": (sw**2).sum() / sw[0] ** 2,
        "srank_targets": lam.sum() / lam[0],
        "srank_targets_sq": (lam**2).sum() / lam[0] ** 2,
    }


def np_alignment(W, mu):
    P = np.linalg.pinv(mu) @ mu  # projector onto the span of the class means (rows of mu)
    return np.linalg.norm(W - W @ P) ** 2 / np.linalg.norm(W) ** 2


def _random_layers(rng, N=20, n=3):
    """Three layers: p > n, p < n (k = p), and a weight with fewer rows than n (r = out)."""
    Y = random_targets(rng, N, n)
    Xs = [rng.normal(size=(N, p)) + rng.normal(size=p) for p in (6, 2, 4)]
    Ws = [rng.normal(size=s) for s in ((5, 6), (4, 2), (2, 4))]
    return Xs, Ws, Y


@pytest.mark.parametrize("cka", ["all", "authors"])
def test_deep_nrc_matches_numpy_transcription_on_random_features(cka):
    Xs, Ws, Y = _random_layers(np.random.default_rng(0))
    out = deep_nrc(Xs, Ws, Y, cka=cka)
    for l, (H, W) in enumerate(zip(Xs, Ws, strict=True)):
        ref = np_deep_nrc_layer(H, W, Y, cka)
        for key, v in ref.items():
            assert float(out[key][l]) == pytest.approx(v, rel=1e-9, abs=1e-13), (key, l)
    assert 0 < float(out["nrc1"][0]) < 1 and float(out["nrc1"][1]) == 0.0  # p = 2 < n
    assert float(out["nrc2"][0]) < 1 and float(out["nrc3"][0]) < 1
    if cka == "authors":  # the truncation changes the value on a layer with p > n
        full = deep_nrc(Xs, Ws, Y)["nrc2"]
        assert abs(float(full[0]) - float(out["nrc2"][0])) > 1e-3


def test_deep_nrc_on_collapsed_features():
    """Rank-n features built from the targets plus an offset: no noise outside n directions,
    the weight's row space equal to the feature subspace, and an exact linear probe."""
    rng = np.random.default_rng(1)
    N, n, p = 25, 3, 7
    Y = random_targets(rng, N, n)
    Yc = Y - Y.mean(0)
    A = rng.normal(size=(n, p))
    collapsed = Yc @ A + rng.normal(size=p)  # uncentred, rank n after centring
    W = rng.normal(size=(5, n)) @ A  # row space = span of A's rows = feature subspace
    noisy = collapsed + 0.3 * rng.normal(size=(N, p))
    Xs, Ws = [noisy, collapsed, noisy], [W, W, W]
    out = deep_nrc(Xs, Ws, Y)
    assert float(out["nrc1"][1]) < 1e-14
    assert float(out["nrc3"][1]) == pytest.approx(1.0, abs=1e-12)
    assert float(out["nrc4"][1]) < 1e-20
    ref = np_deep_nrc_layer(collapsed, W, Y)
    assert float(out["nrc2"][1]) == pytest.approx(ref["nrc2"], rel=1e-10)
    assert float(out["nrc1"][0]) > 1e-3 and float(out["nrc3"][0]) < 1 - 1e-4
    np.testing.assert_array_equal(out["collapsed"], [0.0, 1.0, 0.0])
    assert float(out["first_collapsed"]) == 1.0
    none = deep_nrc([noisy, noisy], [W, W], Y)
    assert float(none["first_collapsed"]) == 2.0  # L: no layer collapsed
    assert float(deep_nrc(Xs, Ws, Y, threshold=0.9)["first_collapsed"]) == 0.0


@pytest.mark.parametrize("regime", ["below", "between"])
def test_deep_nrc_predicted_values_at_regression_ufm_optimum(regime):
    """docs/theory.md section 5: e_i = sqrt(lW/lH)(sqrt(l_i) - sqrt(c))_+, NRC1 = 0, the CKA closed
    form, NRC3 = 1 (full rank), NRC4 = sum_{i > j*} l_i / n, at the features of
    theory.regression.optimum (H = sqrt(lW/lH) Yc Sigma^{+1/2} W)."""
    rng = np.random.default_rng(2)
    M, n, d = 40, 3, 5
    Y = random_targets(rng, M, n)
    lam = np.sort(np.linalg.eigvalsh(np.cov(Y.T, bias=True)))[::-1]
    lH, lW = lambdas_for_regime(lam, regime, ratio=4.0)
    c = lH * lW
    opt = theory.regression.optimum(Y, lH, lW, d)
    g = np.maximum(np.sqrt(lam) - np.sqrt(c), 0.0)
    jstar = int(np.sum(lam > c))
    assert jstar == (3 if regime == "below" else int(opt.rank))
    e = np.sqrt(lW / lH) * g  # predicted nonzero feature-covariance eigenvalues
    out = deep_nrc([opt.H], [opt.W], Y)
    assert float(out["nrc1"][0]) < 1e-12
    cka = np.sum(lam * g) / np.sqrt(np.sum(g**2) * np.sum(lam**2))
    assert float(out["nrc2"][0]) == pytest.approx(cka, rel=1e-9)
    assert float(out["nrc4"][0]) == pytest.approx(lam[jstar:].sum() / n, rel=1e-9, abs=1e-14)
    assert float(out["srank_features"][0]) == pytest.approx(e.sum() / e[0], rel=1e-9)
    assert float(out["srank_features_sq"][0]) == pytest.approx((e**2).sum() / e[0] ** 2, rel=1e-9)
    assert float(out["srank_weights"][0]) == pytest.approx(g.sum() / g[0], rel=1e-9)
    assert float(out["srank_targets"][0]) == pytest.approx(lam.sum() / lam[0], rel=1e-12)
    if regime == "below":
        assert float(out["nrc3"][0]) == pytest.approx(1.0, abs=1e-10)
        assert float(out["nrc4"][0]) < 1e-20


def _etf_layers(rng, K=3, per=3, dims=(5, 4, 6), outs=(4, 6, 3), scale=2.0):
    """Collapsed features: every sample at its class mean; centred means a simplex ETF in a
    random K-dim subspace plus an offset orthogonal to it; each weight's rows in the span of
    its layer's class means, the last one the (scaled) centred means (self-dual head)."""
    y = np.repeat(np.arange(K), per)
    E = np.eye(K) - 1.0 / K
    Xs, Ws = [], []
    for p, o in zip(dims, outs, strict=True):
        Q = np.linalg.qr(rng.normal(size=(p, K + 1)))[0].T  # orthonormal rows
        Md = E @ Q[:K] * scale
        mu = Md + 0.7 * Q[K]  # offset orthogonal to the ETF span
        Xs.append(mu[y])
        Ws.append(1.5 * Md if o == K else rng.normal(size=(o, K)) @ mu)
    return Xs, Ws, y


@pytest.mark.slow
def test_deep_nc_zero_at_collapsed_etf_and_positive_after_perturbation():
    rng = np.random.default_rng(3)
    Xs, Ws, y = _etf_layers(rng)
    zeros = [np.zeros(W.shape[0]) for W in Ws]
    out = deep_nc(Xs, y, 3, Ws, zeros)
    for key in ("nc1", "nc2", "nc2_equinorm", "nc3_alignment"):
        assert np.all(np.asarray(out[key]) < 1e-12), (key, out[key])
    assert float(out["nc3"][2]) < 1e-12 and float(out["nc4"][2]) == 0.0
    assert np.all(np.isnan(out["nc4"][:2]))  # no K-row head there
    assert np.all(np.asarray(out["nc2_orthogonal"]) > 0.1)  # an ETF is not an orthogonal frame
    Xp = [X + 0.1 * rng.normal(size=X.shape) for X in Xs]
    Wp = [W + 0.1 * rng.normal(size=W.shape) for W in Ws]
    b = rng.normal(size=3)
    pert = deep_nc(Xp, y, 3, Wp, zeros[:2] + [b])
    for key in ("nc1", "nc2", "nc2_equinorm", "nc3", "nc3_alignment"):
        assert np.all(np.asarray(pert[key]) > 1e-5), (key, pert[key])
    # Every layer's alignment against a numpy projector; the head against the single-layer
    # metrics.
    for l, (X, W) in enumerate(zip(Xp, Wp, strict=True)):
        mu = np.stack([X[y == c].mean(0) for c in range(3)])
        assert float(pert["nc3_alignment"][l]) == pytest.approx(np_alignment(W, mu), rel=1e-9)
    X, W = Xp[2], Wp[2]
    assert float(pert["nc1"][2]) == pytest.approx(float(nc1(X, y, 3)), rel=1e-10)
    assert float(pert["nc2"][2]) == pytest.approx(float(nc2(X, W, y, 3)["etf_means"]), rel=1e-10)
    assert float(pert["nc3"][2]) == pytest.approx(float(nc3(X, W, y, 3)), rel=1e-10)
    assert float(pert["nc4"][2]) == float(nc4(X, W, b, y, 3))
    assert set(deep_nc(Xs, y, 3)) == {"nc1", "nc2", "nc2_equinorm", "nc2_orthogonal"}


@pytest.mark.slow
def test_jit_vmap_float32_and_per_layer_nan():
    rng = np.random.default_rng(4)
    Xs, Ws, Y = _random_layers(rng)
    eager = deep_nrc(Xs, Ws, Y)  # jitted; eager = jitted is covered by the NaN tests
    # vmap over a batch of networks (and a traced threshold) in one call.
    batch = [np.stack([X, 2 * X + 1]) for X in Xs]
    vm = jax.jit(jax.vmap(lambda Xb, t: metrics.deep_nrc(Xb, Ws, Y, threshold=t)))(
        batch, jnp.array([1e-2, 0.9])
    )
    assert vm["nrc1"].shape == (2, 3) and vm["first_collapsed"].shape == (2,)
    np.testing.assert_allclose(vm["nrc2"][1], eager["nrc2"], rtol=1e-10)  # CKA is affine-free
    assert float(vm["first_collapsed"][1]) == 0.0
    # float32 in, float32 out, close to float64.
    f32 = deep_nrc(
        [X.astype(np.float32) for X in Xs],
        [W.astype(np.float32) for W in Ws],
        Y.astype(np.float32),
    )
    for key, v in f32.items():
        assert v.dtype == jnp.float32, key
        np.testing.assert_allclose(v, eager[key], rtol=2e-4, atol=1e-5, err_msg=key)
    Xe, We, y = _etf_layers(rng)
    nc32 = deep_nc([X.astype(np.float32) for X in Xe], y, 3, [W.astype(np.float32) for W in We])
    assert nc32["nc1"].dtype == jnp.float32 and float(jnp.max(nc32["nc1"])) < 1e-5
    # NaN in one layer: that layer all NaN, the others unchanged, first_collapsed NaN.
    bad = list(Xs)
    bad[1] = bad[1].copy()
    bad[1][3, 0] = np.nan
    out = deep_nrc(bad, Ws, Y)
    for key, v in out.items():
        if key == "first_collapsed":
            assert np.isnan(float(v))
            continue
        v, ref = np.asarray(v), np.asarray(eager[key])
        assert np.isnan(v[1]) and np.allclose(v[[0, 2]], ref[[0, 2]]), key
    nc = deep_nc([X if i != 0 else X * np.inf for i, X in enumerate(Xe)], y, 3)
    assert all(np.isnan(v[0]) and np.all(np.isfinite(v[1:])) for v in nc.values())


def test_layerwise_shape_and_type_errors():
    rng = np.random.default_rng(5)
    Xs, Ws, Y = _random_layers(rng)
    with pytest.raises(ValueError, match=r"features\[1\] must have shape \(N, p\) with N = 20"):
        metrics.deep_nrc([Xs[0], Xs[1][:5], Xs[2]], Ws, Y)
    with pytest.raises(ValueError, match=r"weights\[2\] must have shape \(out, p\) with p = 4"):
        metrics.deep_nrc(Xs, [Ws[0], Ws[1], Ws[2][:, :3]], Y)
    with pytest.raises(ValueError, match="weights must hold one matrix per layer: 3"):
        metrics.deep_nrc(Xs, Ws[:2], Y)
    with pytest.raises(ValueError, match=r"features\[0\] must have shape \(N, p\) with N = 19"):
        metrics.deep_nrc(Xs, Ws, Y[:19])
    with pytest.raises(TypeError, match="features must be a list or tuple"):
        metrics.deep_nrc(Xs[0], Ws, Y)
    with pytest.raises(ValueError, match="cka must be 'all' or 'authors'"):
        metrics.deep_nrc(Xs, Ws, Y, cka="first")
    with pytest.raises(ValueError, match="threshold must be a scalar"):
        metrics.deep_nrc(Xs, Ws, Y, threshold=np.ones(2))
    y = np.repeat(np.arange(4), 5)
    with pytest.raises(ValueError, match=r"labels must have shape \(N,\) = \(20,\)"):
        metrics.deep_nc(Xs, y[:10], 4)
    with pytest.raises(TypeError, match="labels must be integers"):
        metrics.deep_nc(Xs, y.astype(str), 4)
    with pytest.raises(ValueError, match=r"biases\[0\] must have shape \(out,\) = \(5,\)"):
        metrics.deep_nc(Xs, y, 4, Ws, [np.ones(4), None, None])
    with pytest.raises(ValueError, match="biases were given without weights"):
        metrics.deep_nc(Xs, y, 4, None, [None, None, None])
