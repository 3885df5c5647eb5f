"""NC1-NC4 against independent numpy implementations, at optima and after perturbation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import ufm
from theory import classification as tc
from ufm import metrics


def _np_nc1(H, y, K):
    mu = np.stack([H[y == c].mean(0) for c in range(K)])
    muG = H.mean(0)
    Sw = sum(np.outer(h - mu[c], h - mu[c]) for h, c in zip(H, y, strict=True)) / len(H)
    Sb = (mu - muG).T @ (mu - muG) / K
    return np.trace(Sw @ np.linalg.pinv(Sb, rcond=1e-10)) / K


@pytest.mark.slow
@given(st.sampled_from(((2, 2), (3, 4), (5, 6))), st.integers(0, 10**6))
def test_nc1_matches_pinv_reference(shape, seed):
    K, extra_d = shape  # few shapes (each compiles the metrics once), random values
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(K), 4)
    H = rng.normal(size=(len(y), K + extra_d)) + 3 * rng.normal(size=(K, K + extra_d))[y]
    v = float(metrics.nc1(H, y, K))
    assert v == pytest.approx(_np_nc1(H, y, K), rel=1e-8)
    assert float(metrics.nc1(H, y, K, scale="notebook")) == pytest.approx(K * v, rel=1e-12)


@pytest.mark.slow
@given(st.sampled_from((3, 6)), st.integers(1, 2), st.integers(0, 10**6))
def test_nc1_on_rank_deficient_features_matches_pinv_and_is_nonnegative(K, rank, seed):
    """Features of rank < K - 1 make Sigma_B singular: the cut-off pseudo-inverse must agree
    with numpy's pinv on its range and never give a negative trace."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(K), 3)
    H = rng.normal(size=(len(y), rank)) @ rng.normal(size=(rank, 8))
    v = float(metrics.nc1(H, y, K))
    assert v >= 0.0
    assert v == pytest.approx(_np_nc1(H, y, K), rel=1e-7, abs=1e-12)
    collapsed = np.zeros((len(y), 5))  # all features equal: Sigma_B = 0
    assert float(metrics.nc1(collapsed, y, K)) == 0.0


def _ce_optimum(K=4, n=5, d=6, lam=5e-3, bias="free"):
    y = tc.balanced_labels(K, n)
    p = ufm.ClassificationUFM(y, K, lam, lam, d, loss="ce", bias=bias)
    return p, ufm.solve(p)


@pytest.mark.slow
def test_all_metrics_zero_at_ce_optimum_and_positive_after_perturbation():
    p, sol = _ce_optimum()
    H, W, b = sol.params
    y, K = p.labels, p.num_classes
    assert float(metrics.nc1(H, y, K)) < 1e-12
    nc2 = metrics.nc2(H, W, y, K)
    assert all(float(v) < 1e-6 for v in nc2.values()), nc2
    assert float(metrics.nc3(H, W, y, K)) < 1e-12
    assert float(metrics.nc3(H, W, y, K, variant="zhu")) < 1e-6
    assert float(metrics.nc4(H, W, b, y, K)) == 0.0
    assert float(metrics.etf_distance(W @ W.T)) < 1e-6
    rng = np.random.default_rng(0)
    Hp = H + 0.05 * rng.normal(size=H.shape)
    Wp = W + 0.05 * rng.normal(size=W.shape)
    assert float(metrics.nc1(Hp, y, K)) > 1e-4
    assert all(float(v) > 1e-4 for v in metrics.nc2(Hp, Wp, y, K).values())
    assert float(metrics.nc3(Hp, Wp, y, K)) > 1e-4


@pytest.mark.slow
def test_orthogonal_frame_variants_tell_mse_bias_free_from_etf():
    K, n = 4, 3
    y = tc.balanced_labels(K, n)
    frame = ufm.solve(ufm.ClassificationUFM(y, K, 5e-3, 5e-3, 6, bias="none"))
    etf = ufm.solve(ufm.ClassificationUFM(y, K, 5e-3, 5e-3, 6, bias="free"))
    Wf, We = frame.params.W, etf.params.W
    assert float(metrics.orthogonal_frame_distance(Wf @ Wf.T)) < 1e-8
    assert float(metrics.orthogonal_frame_distance(We @ We.T)) > 0.1
    assert float(metrics.etf_distance(We @ We.T)) < 1e-8
    # Centred (Papyan) metrics cannot tell them apart: both give an ETF after centring.
    for sol in (frame, etf):
        assert float(metrics.nc2(sol.params.H, sol.params.W, y, K)["etf_means"]) < 1e-8
    # Uncentred self-duality holds for the frame, the centred one does not.
    assert float(metrics.nc3(frame.params.H, Wf, y, K, center=False)) < 1e-12
    assert float(metrics.nc3(frame.params.H, Wf, y, K)) > 0.1


def test_nc2_ddof_and_nc4_by_construction():
    K = 3
    y = np.array([0, 0, 1, 1, 2, 2])
    mu = np.array([[3.0, 0.0], [0.0, 1.0], [-1.0, -1.0]])
    H = mu[y]
    norms = np.linalg.norm(mu - H.mean(0), axis=1)
    out0 = metrics.nc2(H, mu, y, K, ddof=0)
    out1 = metrics.nc2(H, mu, y, K, ddof=1)
    assert float(out0["equinorm_means"]) == pytest.approx(norms.std() / norms.mean())
    assert float(out1["equinorm_means"]) == pytest.approx(norms.std(ddof=1) / norms.mean())
    # A classifier that sends everything to class 0 disagrees with NCC on 4 of 6 samples.
    W = np.zeros((K, 2))
    b = np.array([1.0, 0.0, 0.0])
    assert float(metrics.nc4(H, W, b, y, K)) == pytest.approx(4 / 6)
    assert metrics.nc4(H, W, b, y, K).dtype == jnp.float64


@pytest.mark.slow
def test_metrics_vmap_and_errors():
    p, sol = _ce_optimum()
    Hs = jnp.stack([sol.params.H, 2 * sol.params.H])
    out = jax.vmap(lambda H: metrics.nc1(H, p.labels, p.num_classes))(Hs)
    assert out.shape == (2,)
    with pytest.raises(ValueError, match="labels must have shape \\(N,\\) = \\(20,\\)"):
        metrics.nc1(sol.params.H, p.labels[:5], 4)
    with pytest.raises(TypeError, match="labels must be integers"):
        metrics.nc1(sol.params.H, p.labels.astype(float), 4)
    with pytest.raises(ValueError, match="num_classes must be an int >= 2"):
        metrics.nc1(sol.params.H, p.labels, 1)
    with pytest.raises(ValueError, match="W must have shape \\(K, d\\) = \\(4, 6\\)"):
        metrics.nc2(sol.params.H, sol.params.W[:2], p.labels, 4)
    with pytest.raises(ValueError, match="labels must lie in \\[0, num_classes\\)"):
        metrics.nc1(sol.params.H, p.labels.at[0].set(4), 4)
    with pytest.raises(ValueError, match="classes \\[3\\] of num_classes = 4 have none"):
        metrics.nc1(sol.params.H, jnp.minimum(p.labels, 2), 4)
    with pytest.raises(ValueError, match="scale must be 'papyan' or 'notebook'"):
        metrics.nc1(sol.params.H, p.labels, 4, scale="zhu")
