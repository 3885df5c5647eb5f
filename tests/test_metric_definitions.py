"""Every collapse metric against a plain-numpy transcription of its published definition, at
random, non-collapsed inputs, to 1e-10 relative (float64).

The transcriptions below are written from the papers' formulas, not from the package: SVDs,
``np.linalg.pinv`` and explicit loops where the package uses eigen-decompositions of Grams,
power-of-two rescaling and centring tricks. A metric that is 0 at collapse and positive after a
perturbation can still be wrong by a constant factor; these tests see that.

* NRC1-NRC3: Andriopoulos et al. (NeurIPS 2024), Sec. 3.1; NRC3's target
  ``(Sigma^{1/2} - sqrt(gamma) I)_+`` keeps the top ``d`` eigen-directions when ``n > d``.
* NC1-NC4, equinorm, equiangularity, max-angle: Papyan, Han & Donoho (PNAS 2020); the
  simplex-ETF distances and NC3's second variant: Zhu et al. (NeurIPS 2021); the
  orthogonal-frame distance of bias-free MSE models: Tirer & Bruna (ICML 2022).
* Layer-wise NC (``deep_nc``): the same definitions per layer, plus the uncentred class means'
  orthogonal-frame distance (Súkeník et al., NeurIPS 2023) and the weight's energy outside the
  span of the class means.

The helpers are imported by ``test_compare_controls.py``.
"""

import itertools

import numpy as np
import pytest

from ufm import metrics

REL = 1e-10

# --- transcriptions ---------------------------------------------------------------------------


def unit_rows(A):
    """Rows divided by their Euclidean norms (a zero row stays zero)."""
    norms = np.array([np.sqrt(sum(x * x for x in row)) for row in A])
    return np.array([row / r if r > 0 else row for row, r in zip(A, norms, strict=True)])


def ref_nrc1(H, n, center=True):
    """(1/M) sum_i ||h~_i - P_PCA h~_i||^2, P_PCA onto the top-n principal directions."""
    X = H - H.mean(axis=0) if center else H
    V = np.linalg.svd(X, full_matrices=False)[2][: min(n, H.shape[1])].T
    Ht = unit_rows(H)
    return np.mean([np.sum((h - V @ (V.T @ h)) ** 2) for h in Ht])


def ref_nrc2(H, W):
    """(1/M) sum_i ||h~_i - P_W h~_i||^2, P_W = W^T (W W^T)^+ W."""
    P = W.T @ np.linalg.pinv(W @ W.T) @ W
    return np.mean([np.sum((h - P @ h) ** 2) for h in unit_rows(H)])


def ref_covariance(Y, center=True):
    Yc = Y - Y.mean(axis=0) if center else Y
    return sum(np.outer(y, y) for y in Yc) / Y.shape[0]


def ref_collapse_target(Sigma, gamma, max_rank=None):
    """(Sigma^{1/2} - sqrt(gamma) I)_+ on the eigenvalues, top ``max_rank`` directions."""
    lam, U = np.linalg.eigh(Sigma)
    order = np.argsort(lam)[::-1]
    lam, U = lam[order], U[:, order]
    g = np.array([max(np.sqrt(max(v, 0.0)) - np.sqrt(gamma), 0.0) for v in lam])
    if max_rank is not None:
        g[max_rank:] = 0.0
    return sum(gi * np.outer(u, u) for gi, u in zip(g, U.T, strict=True))


def ref_nrc3(W, Y, gamma, center=True):
    """|| W W^T / ||W W^T|| - S / ||S|| ||_F^2 with S the collapse target."""
    A = W @ W.T
    S = ref_collapse_target(ref_covariance(Y, center), gamma, W.shape[1])
    return np.sum((A / np.linalg.norm(A) - S / np.linalg.norm(S)) ** 2)


def ref_stable_rank(A):
    s = np.linalg.svd(A, compute_uv=False)
    return np.sum(s**2) / s[0] ** 2


def ref_means(H, y, K):
    """Uncentred class means (K, d) and the global mean (d,)."""
    return np.stack([H[y == c].mean(axis=0) for c in range(K)]), H.mean(axis=0)


def ref_nc1(H, y, K):
    """(1/K) tr(Sigma_W Sigma_B^+)."""
    mu, muG = ref_means(H, y, K)
    Sw = sum(np.outer(h - mu[c], h - mu[c]) for h, c in zip(H, y, strict=True)) / len(H)
    Sb = sum(np.outer(m - muG, m - muG) for m in mu) / K
    return np.trace(Sw @ np.linalg.pinv(Sb, rcond=1e-10, hermitian=True)) / K


def etf(K):
    return (np.eye(K) - np.ones((K, K)) / K) / np.sqrt(K - 1)


def ref_etf_distance(G):
    return np.linalg.norm(G / np.linalg.norm(G) - etf(G.shape[0]))


def ref_frame_distance(G):
    K = G.shape[0]
    return np.linalg.norm(G / np.linalg.norm(G) - np.eye(K) / np.sqrt(K))


def _cosines(A):
    """cos(a_c, a_c') over the ordered pairs c != c'."""
    K = A.shape[0]
    return np.array(
        [
            A[i] @ A[j] / (np.linalg.norm(A[i]) * np.linalg.norm(A[j]))
            for i, j in itertools.product(range(K), range(K))
            if i != j
        ]
    )


def ref_nc2_rows(A, ddof=0):
    """Equinorm, equiangularity, max-angle and ETF distance of the rows of A (K x p)."""
    K = A.shape[0]
    norms = np.linalg.norm(A, axis=1)
    cos = _cosines(A)
    return {
        "equinorm": np.std(norms, ddof=ddof) / np.mean(norms),
        "equiangular": np.std(cos, ddof=ddof),
        "maxangle": np.sum(np.abs(cos + 1.0 / (K - 1))) / (K * (K - 1)),
        "etf": ref_etf_distance(A @ A.T),
    }


def ref_nc2(H, W, y, K, ddof=0):
    mu, muG = ref_means(H, y, K)
    out = {f"{k}_means": v for k, v in ref_nc2_rows(mu - muG, ddof).items()}
    out.update({f"{k}_weights": v for k, v in ref_nc2_rows(W, ddof).items()})
    return out


def ref_nc3(H, W, y, K, variant="papyan", center=True):
    """Self-duality || W/||W|| - Mdot/||Mdot|| ||^2, or Zhu et al.'s ETF distance of W Mdot^T."""
    mu, muG = ref_means(H, y, K)
    M = mu - muG if center else mu
    if variant == "papyan":
        return np.sum((W / np.linalg.norm(W) - M / np.linalg.norm(M)) ** 2)
    A = W @ M.T
    return np.linalg.norm(A / np.linalg.norm(A) - etf(K))


def ref_nc4(H, W, b, y, K):
    """Fraction of samples whose argmax_c (w_c . h + b_c) differs from the nearest class mean."""
    mu, _ = ref_means(H, y, K)
    b = np.zeros(K) if b is None else b
    wrong = 0
    for h in H:
        scores = [W[c] @ h + b[c] for c in range(K)]
        dists = [np.sum((h - mu[c]) ** 2) for c in range(K)]
        wrong += int(np.argmax(scores) != np.argmin(dists))
    return wrong / len(H)


def ref_alignment(W, mu):
    """||W (I - P)||_F^2 / ||W||_F^2, P the projector onto the span of the rows of ``mu``."""
    Q = np.linalg.svd(mu, full_matrices=False)[2]  # orthonormal basis of the span (full rank)
    R = W - (W @ Q.T) @ Q
    return np.sum(R**2) / np.sum(W**2)


# --- random non-collapsed inputs ----------------------------------------------------------------


def _close(value, ref, what):
    value = float(value)
    assert ref > 1e-6, f"{what}: the input is (nearly) collapsed, the test would check nothing"
    assert value == pytest.approx(ref, rel=REL), what


def _regression_inputs(seed, M=25, n=3, d=5):
    rng = np.random.default_rng(seed)
    Y = rng.normal(size=(M, n)) @ rng.normal(size=(n, n)) + rng.normal(size=n)
    H = rng.normal(size=(M, d)) + rng.normal(size=d)
    W = rng.normal(size=(n, d))
    return H, W, Y


def _classification_inputs(seed, K=4, per=5, d=6):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(K), per)
    rng.shuffle(y)
    H = rng.normal(size=(K * per, d)) + 2.0 * rng.normal(size=(K, d))[y] + rng.normal(size=d)
    W = rng.normal(size=(K, d))
    b = rng.normal(size=K)
    return H, W, b, y


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("center", [True, False])
def test_nrc_metrics_match_their_definitions(seed, center):
    H, W, Y = _regression_inputs(seed)
    n = Y.shape[1]
    _close(metrics.nrc1(H, n, center=center), ref_nrc1(H, n, center), "NRC1")
    _close(metrics.nrc2(H, W), ref_nrc2(H, W), "NRC2")
    # gamma below, between and above the target covariance's eigenvalues (positive part).
    lam = np.sort(np.linalg.eigvalsh(ref_covariance(Y, center)))
    for gamma in (0.0, 0.5 * lam[0], np.sqrt(lam[0] * lam[1])):
        _close(metrics.nrc3(W, Y, gamma, center=center), ref_nrc3(W, Y, gamma, center), "NRC3")
    np.testing.assert_allclose(
        metrics.target_covariance(Y, center=center), ref_covariance(Y, center), rtol=REL
    )


@pytest.mark.parametrize("seed", [3, 4])
def test_nrc_metrics_with_fewer_features_than_targets(seed):
    """n > d: NRC1 keeps all d directions (0), NRC3's target keeps the top d directions (NRC2
    is 0 too: W's n rows span all of R^d)."""
    H, W, Y = _regression_inputs(seed, M=20, n=4, d=2)
    assert float(metrics.nrc1(H, 4)) < 1e-20 and ref_nrc1(H, 4) < 1e-20
    lam = np.sort(np.linalg.eigvalsh(ref_covariance(Y)))
    _close(metrics.nrc3(W, Y, 0.5 * lam[0]), ref_nrc3(W, Y, 0.5 * lam[0]), "NRC3, n > d")
    S = ref_collapse_target(ref_covariance(Y), 0.5 * lam[0], 2)
    np.testing.assert_allclose(
        metrics.collapse_target(ref_covariance(Y), 0.5 * lam[0], 2), S, rtol=REL, atol=0
    )


@pytest.mark.parametrize("seed", [0, 1])
def test_stable_rank_and_principal_basis_match_their_definitions(seed):
    H, W, _ = _regression_inputs(seed)
    for A in (H, W, H.T):
        _close(metrics.stable_rank(A), ref_stable_rank(A), "stable rank")
    for center in (True, False):
        V = np.asarray(metrics.principal_basis(H, 3, center=center))
        X = H - H.mean(axis=0) if center else H
        Vr = np.linalg.svd(X, full_matrices=False)[2][:3].T
        np.testing.assert_allclose(V @ V.T, Vr @ Vr.T, rtol=0, atol=1e-12)  # same subspace
        np.testing.assert_allclose(V.T @ V, np.eye(3), rtol=0, atol=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("K", [3, 4])
def test_nc_metrics_match_their_definitions(seed, K):
    H, W, b, y = _classification_inputs(seed, K=K)
    mu, muG = ref_means(H, y, K)
    m, g, counts = metrics.class_means(H, y, K)
    np.testing.assert_allclose(m, mu, rtol=REL)
    np.testing.assert_allclose(g, muG, rtol=REL)
    np.testing.assert_array_equal(counts, np.bincount(y, minlength=K))
    nc1 = ref_nc1(H, y, K)
    _close(metrics.nc1(H, y, K), nc1, "NC1")
    _close(metrics.nc1(H, y, K, scale="notebook"), K * nc1, "NC1, notebook scale")
    for ddof in (0, 1):
        out, ref = metrics.nc2(H, W, y, K, ddof=ddof), ref_nc2(H, W, y, K, ddof)
        assert set(out) == set(ref)
        for key in ref:
            _close(out[key], ref[key], f"NC2 {key}, ddof={ddof}")
    for variant, center in itertools.product(("papyan", "zhu"), (True, False)):
        _close(
            metrics.nc3(H, W, y, K, variant=variant, center=center),
            ref_nc3(H, W, y, K, variant, center),
            f"NC3 {variant}, center={center}",
        )
    for bias in (b, None):
        ref = ref_nc4(H, W, bias, y, K)
        assert ref > 0  # a random head disagrees with the nearest mean on some samples
        assert float(metrics.nc4(H, W, bias, y, K)) == pytest.approx(ref, rel=REL)
    for G in (W @ W.T, mu @ mu.T, (mu - muG) @ (mu - muG).T):
        _close(metrics.etf_distance(G), ref_etf_distance(G), "ETF distance")
        _close(metrics.orthogonal_frame_distance(G), ref_frame_distance(G), "frame distance")


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_layerwise_nc_matches_the_definitions_per_layer(seed):
    """Three layers: a hidden weight (5 rows), a K-row head, and a narrow layer (p = 3 = K)."""
    rng = np.random.default_rng(seed)
    K = 3
    y = np.repeat(np.arange(K), 4)
    Xs = [rng.normal(size=(12, p)) + 2.0 * rng.normal(size=(K, p))[y] for p in (6, 4, 3)]
    Ws = [rng.normal(size=s) for s in ((5, 6), (K, 4), (K, 3))]
    bs = [None, rng.normal(size=K), None]
    for center, ddof in ((True, 0), (False, 1)):
        out = metrics.deep_nc(Xs, y, K, Ws, bs, center=center, ddof=ddof)
        for layer, (X, W, b) in enumerate(zip(Xs, Ws, bs, strict=True)):
            mu, muG = ref_means(X, y, K)
            rows = ref_nc2_rows(mu - muG, ddof)
            head = W.shape[0] == K
            ref = {
                "nc1": ref_nc1(X, y, K),
                "nc2": rows["etf"],
                "nc2_equinorm": rows["equinorm"],
                "nc2_orthogonal": ref_frame_distance(mu @ mu.T),
                "nc3_alignment": ref_alignment(W, mu),
                "nc3": ref_nc3(X, W, y, K, "papyan", center) if head else ref_alignment(W, mu),
            }
            for key, v in ref.items():
                if key == "nc3_alignment" and X.shape[1] == K:
                    # K class means span all of R^K: nothing of W lies outside.
                    assert float(out[key][layer]) < 1e-20 and v < 1e-20
                    continue
                _close(out[key][layer], v, f"layer {layer}: {key}")
            if head:
                assert float(out["nc4"][layer]) == pytest.approx(ref_nc4(X, W, b, y, K), rel=REL)
            else:
                assert np.isnan(float(out["nc4"][layer]))
