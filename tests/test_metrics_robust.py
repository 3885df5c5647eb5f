"""Metrics on hard but legitimate input: a large common offset, extreme scales, traced labels
that would be rejected eagerly, empty axes, and the CLI's float32 files.

The references are independent numpy float64 computations from the definitions (docs/theory.md
section 4) on the *same* data (float32 data cast exactly to float64), centred before anything
else, so they carry none of the cancellation being tested.
"""

import json

import jax
import numpy as np
import pytest

import ufm.metrics as um
from ufm._cli import main

N, d, K = 40, 5, 3


def blobs(seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(N) % K
    H = rng.normal(size=(N, d)) + 2.0 * rng.normal(size=(K, d))[y]
    W = rng.normal(size=(K, d))
    return H, W, y


def reference(H, W, y):
    """NC1 (Papyan, with 1/K) and NC4 (no bias) in float64 from the definitions."""
    raw = np.asarray(H, np.float64)
    H = raw - raw.mean(axis=0)  # every quantity but the logits is invariant to a common shift
    mu = np.stack([H[y == c].mean(axis=0) for c in range(K)])
    Md = mu - H.mean(axis=0)
    R = H - mu[y]
    Sw = R.T @ R / N
    Sb = Md.T @ Md / K
    nc1 = np.trace(Sw @ np.linalg.pinv(Sb, rcond=1e-10, hermitian=True)) / K
    dist = ((H[:, None, :] - mu[None]) ** 2).sum(-1)
    nc4 = np.mean(np.argmax(raw @ np.asarray(W, np.float64).T, axis=1) != np.argmin(dist, axis=1))
    return nc1, nc4


@pytest.mark.slow
@pytest.mark.parametrize(
    ("dtype", "offset", "rtol"), [("float64", 1e8, 1e-6), ("float32", 3e3, 1e-3)]
)
def test_a_common_offset_changes_nothing(dtype, offset, rtol):
    """The centred means come from centred samples, and the K-th (zero) eigenvalue of
    Sigma_B is never inverted. Before: float32 at offset 3e3 gave NC1 = 4.6e6 (true 27.5),
    float64 at 1e8 gave 6.3e14; NC4 0.875 instead of 0.55."""
    H0, W, y = blobs()
    H = (H0 + offset).astype(dtype)
    W = W.astype(dtype)
    nc1_ref, nc4_ref = reference(H, W, y)
    assert np.isclose(float(um.nc1(H, y, K)), nc1_ref, rtol=rtol)
    assert float(um.nc4(H, W, None, y, K)) == pytest.approx(nc4_ref, abs=1.5 / N)
    deep = um.deep_nc([H], y, K, weights=[W])
    assert np.isclose(float(deep["nc1"][0]), nc1_ref, rtol=rtol)
    # streaming (float64 inside, shifted by the first batch's mean)
    acc = um.NCAccumulator(K, W.astype(np.float64))
    um.accumulate(acc, lambda: ((H[i : i + 7], y[i : i + 7]) for i in range(0, N, 7)))
    res = acc.result()
    assert np.isclose(res["nc1"], nc1_ref, rtol=rtol)
    assert res["nc4"] == pytest.approx(nc4_ref, abs=1.5 / N)


def test_offset_nc4_streaming_float64_at_1e9_matches_the_unshifted_decision():
    """Nearest class mean against the same logits: at offset 1e9 in float64 the expanded
    ``|h|^2 - 2 h.mu + |mu|^2`` lost the digits of the distances."""
    H0, W, y = blobs(3)
    W0 = W.copy()
    W0[:, -1] = 0.0  # logits blind to the offset (in column d - 1): the offset-free decision
    H = H0.copy()
    H[:, -1] += 1e9
    acc = um.NCAccumulator(K, W0)
    um.accumulate(acc, lambda: ((H[i : i + 9], y[i : i + 9]) for i in range(0, N, 9)))
    expected = float(um.nc4(H0, W0, None, y, K))
    assert acc.result()["nc4"] == expected
    assert float(um.nc4(H, W0, None, y, K)) == expected


@pytest.mark.slow
@pytest.mark.parametrize("scale", [2.0**-70, 1e-20, 1e20, 2.0**70])
def test_float32_features_at_any_scale(scale):
    """Scale-free metrics are exact under a power-of-two rescaling of the input; before, at
    1e-20 the squares underflowed and NC1 = NRC1 = NRC2 = stable rank = 0 read as collapse."""
    H0, W, y = blobs(1)
    H0, W = H0.astype(np.float32), W.astype(np.float32)
    H = (H0 * np.float32(scale)).astype(np.float32)
    fns = {
        "nc1": lambda X: um.nc1(X, y, K),
        "nrc1": lambda X: um.nrc1(X, 2),
        "nrc2": lambda X: um.nrc2(X, W[:2]),
        "stable_rank": um.stable_rank,
        "etf": lambda X: um.nc2(X, W, y, K)["etf_means"],
        "deep_nc1": lambda X: um.deep_nc([X], y, K)["nc1"][0],
    }
    for name, fn in fns.items():
        base, got = float(fn(H0)), float(fn(H))
        assert np.isfinite(got), name
        assert got == pytest.approx(base, rel=2e-5, abs=1e-6), name


def test_nc4_is_nan_when_a_logit_overflows():
    H0, W, y = blobs(2)
    H = (H0 * 1e37).astype(np.float32)  # finite features, logits beyond float32's range
    W = (W * 1e3).astype(np.float32)
    assert np.isnan(float(um.nc4(H, W, None, y, K)))
    acc = um.NCAccumulator(K, np.asarray(W, np.float64) * 1e300)  # float64: overflow at 1e308
    um.accumulate(acc, lambda: iter([(H0 * 1e10, y)]))
    assert np.isnan(acc.result()["nc4"]) and np.isfinite(acc.result()["nc1"])


def test_streaming_at_extreme_float64_scales():
    H0, W, y = blobs(4)
    base = um.NCAccumulator(K, W)
    um.accumulate(base, lambda: iter([(H0, y)]))
    for scale in (1e150, 1e-160):
        acc = um.NCAccumulator(K, W)
        um.accumulate(
            acc, lambda s=scale: ((H0[i : i + 8] * s, y[i : i + 8]) for i in (0, 8, 16, 24, 32))
        )
        got, ref = acc.result(), base.result()
        for k in ("nc1", "nc2_etf_means", "nc2_equinorm_means", "nc3", "nc4"):
            assert got[k] == pytest.approx(ref[k], rel=1e-9), (scale, k)
        assert np.allclose(acc.means / scale, base.means, rtol=1e-12)


def test_traced_bad_labels_give_nan():
    """Under jit the label values cannot be checked before the work; one_hot would drop an
    out-of-range label and an empty class would be measured as if it were not there."""
    H, W, y = blobs(5)
    nc1 = jax.jit(um.nc1, static_argnums=2)
    nc4 = jax.jit(um.nc4, static_argnums=4)
    deep = jax.jit(lambda H, y: um.deep_nc([H], y, K, weights=[W]))
    for bad in (np.where(y == 2, 8, y), np.where(y == 2, -1, y), np.where(y == 2, 0, y)):
        assert np.isnan(float(nc1(H, bad, K)))
        assert np.isnan(float(nc4(H, W, None, bad, K)))
        assert all(np.isnan(np.asarray(v)).all() for v in deep(H, bad).values())
    assert np.isfinite(float(nc1(H, y, K)))  # the same program on good labels


def test_empty_axes_and_negative_gamma_are_errors():
    H, W, y = blobs(6)
    with pytest.raises(ValueError, match="H must be non-empty"):
        um.nc1(H[:, :0], y, K)
    with pytest.raises(ValueError, match="H must be non-empty"):
        um.nrc1(H[:0], 2)
    with pytest.raises(ValueError, match="A must be non-empty"):
        um.stable_rank(np.zeros((0, 0)))
    with pytest.raises(ValueError, match=r"features\[0\] must be non-empty"):
        um.deep_nc([H[:, :0]], y, K)
    with pytest.raises(ValueError, match="features must have at least one column"):
        um.NCAccumulator(K).update(H[:, :0], y)
    Y = H[:, :2]
    with pytest.raises(ValueError, match="gamma must be >= 0"):
        um.nrc3(W[:2], Y, -1.0)
    with pytest.raises(ValueError, match="upper must be >= 0"):
        um.fit_gamma(W[:2], Y, upper=-1.0)
    with pytest.raises(ValueError, match="num_classes = 1000000000000"):
        um.NCAccumulator(10**12)


def test_cli_measures_float32_files_in_float64_in_both_modes(tmp_path, capsys):
    """In memory the float32 arrays were measured in float32: NC1 5.4e6 against 27.5."""
    H0, W, y = blobs(7)
    H = (H0 + 3e3).astype(np.float32)
    f = tmp_path / "f32.npz"
    np.savez(f, H=H, W=W.astype(np.float32), labels=y)
    nc1_ref, _ = reference(H, W, y)
    docs = []
    for extra in ([], ["--streaming"]):
        assert main(["metrics", str(f), "--json", *extra]) == 0
        docs.append(json.loads(capsys.readouterr().out)["layers"][0]["metrics"])
    assert docs[0]["nc1"] == pytest.approx(nc1_ref, rel=1e-9)
    assert docs[1]["nc1"] == pytest.approx(nc1_ref, rel=1e-9)
    assert docs[0]["nc4"] == docs[1]["nc4"]
    big = tmp_path / "big_label.npz"
    np.savez(big, H=H, labels=np.where(y == 2, 2**40, y))
    with pytest.raises(SystemExit) as exc:
        main(["metrics", str(big)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "exceeds the N = 40 samples" in err and "Traceback" not in err


def test_streaming_batches_of_very_different_scales():
    """The scale follows the largest batch seen (what is kept is rescaled exactly): a first
    batch at 1e-100 then batches at 1e100 overflowed the scatter (LinAlgError)."""
    H, W, y = blobs(8)
    H = H.copy()
    H[:8] *= 1e-100
    H[8:] *= 1e100
    acc = um.NCAccumulator(K, W)
    um.accumulate(acc, lambda: ((H[i : i + 8], y[i : i + 8]) for i in range(0, N, 8)))
    res = acc.result()
    assert res["nc1"] == pytest.approx(float(um.nc1(H, y, K)), rel=1e-9)
    assert res["nc4"] == pytest.approx(float(um.nc4(H, W, None, y, K)), abs=1e-12)


def test_fit_gamma_traced_negative_upper_is_nan():
    H, W, y = blobs(9)
    out = jax.jit(lambda u: um.fit_gamma(W[:2], H[:, :2], upper=u))(-1.0)
    assert np.isnan(np.asarray(out)).all()
