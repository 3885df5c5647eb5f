"""Streaming accumulators against the full-array metrics, over many batch splits (float64)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import ufm.metrics as um
from ufm.metrics import (
    DeepNCAccumulator,
    DeepNRCAccumulator,
    NCAccumulator,
    NRCAccumulator,
    accumulate,
)

TOL = {"rtol": 1e-10, "atol": 1e-10}


@st.composite
def splits(draw, N):
    """Batch boundaries ``[0, ..., N]``: random cuts, or all batches of size 1, or one batch;
    empty batches included."""
    kind = draw(st.sampled_from(("random", "ones", "whole", "random")))
    if kind == "ones":
        return list(range(N + 1))
    if kind == "whole":
        return [0, N]
    cuts = draw(st.lists(st.integers(0, N), max_size=8))
    return [0, *sorted(cuts), N]


def batches(arrays, cuts):
    return [tuple(a[i:j] for a in arrays) for i, j in zip(cuts[:-1], cuts[1:], strict=True)]


def assert_close(stream: dict, full: dict):
    assert set(stream) == set(full), (set(stream), set(full))
    for k in full:
        np.testing.assert_allclose(stream[k], np.asarray(full[k]), **TOL, err_msg=k)


def classification_data(seed, N, K, d, shift, spread=0.5):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, K, N)
    y[:K] = rng.permutation(K)  # every class present, labels not sorted
    H = spread * rng.normal(size=(N, d)) + rng.normal(size=(K, d))[y] + shift
    W = rng.normal(size=(K, d))
    b = rng.normal(size=K)
    return H, y, W, b


@functools.partial(jax.jit, static_argnames=("K", "scale", "ddof", "nc3_variant", "center"))
def full_nc(H, y, K, W, b, scale="papyan", ddof=0, nc3_variant="papyan", center=True):
    """The full-array functions, jitted once a shape and option set (compiling them op by op
    for every shape would dominate the test time)."""
    out = {"nc1": um.nc1(H, y, K, scale=scale)}
    out |= {f"nc2_{k}": v for k, v in um.nc2(H, W, y, K, ddof=ddof).items()}
    out["nc3"] = um.nc3(H, W, y, K, variant=nc3_variant, center=center)
    out["nc4"] = um.nc4(H, W, b, y, K)
    return out


@functools.partial(jax.jit, static_argnames=("n", "center"))
def full_nrc(H, Y, W, gamma, n, center):
    g, v = um.fit_gamma(W, Y, center=center)
    out = {"nrc1": um.nrc1(H, n, center=center), "nrc2": um.nrc2(H, W)}
    return out, {"nrc3": v, "gamma": g}, {"nrc3": um.nrc3(W, Y, gamma, center=center)}


full_deep_nrc = jax.jit(um.deep_nrc, static_argnames=("cka",))
full_deep_nc = jax.jit(um.deep_nc, static_argnames=("num_classes", "center", "ddof"))


# Few fixed sizes (each compiles the reference once); the batch splits, the data and the mean
# shift vary freely. (11, 4, 2): d < K - 1, a rank-deficient between-class covariance.
NC_SIZES = ((23, 3, 5), (11, 4, 2))
NOTEBOOK = {"scale": "notebook", "ddof": 1, "nc3_variant": "zhu"}


@pytest.mark.slow
@given(
    seed=st.integers(0, 2**16),
    sizes=st.sampled_from(NC_SIZES),
    shift=st.sampled_from((0.0, 1e3)),
    data=st.data(),
)
def test_nc_matches_full_arrays_over_batch_splits(seed, sizes, shift, data):
    N, K, d = sizes
    H, y, W, b = classification_data(seed, N, K, d, shift)
    cuts = data.draw(splits(N))
    kw = NOTEBOOK if sizes == NC_SIZES[0] and data.draw(st.booleans()) else {}
    res = accumulate(NCAccumulator(K, W, b), batches((H, y), cuts), **kw)
    assert_close(res, full_nc(H, y, K, W, b, **kw))
    # without a classifier: one pass, NC1 and the means' NC2 only
    acc = NCAccumulator(K)
    assert not acc.needs_second_pass
    alone = accumulate(acc, iter(batches((H, y), cuts)), **kw)  # a one-shot iterator will do
    assert_close(alone, {k: v for k, v in res.items() if k == "nc1" or k.endswith("_means")})


def test_nc_collapsed_features_and_uncentred_nc3():
    H, y, W, b = classification_data(1, 30, 3, 5, 7.0, spread=0.0)
    res = accumulate(NCAccumulator(3, W, b), batches((H, y), [0, 1, 2, 17, 30]), center=False)
    full = full_nc(H, y, 3, W, b, center=False)  # center=False: uncentred class means
    assert_close(res, full)
    assert res["nc1"] == pytest.approx(0.0, abs=1e-20)


def nrc_data(seed, M, n, d, shift, rank=None):
    rng = np.random.default_rng(seed)
    r = d if rank is None else rank
    H = rng.normal(size=(M, r)) @ rng.normal(size=(r, d)) + shift * rng.normal(size=d)
    Y = rng.normal(size=(M, n)) @ rng.normal(size=(n, n)) + shift
    W = rng.normal(size=(n, d))
    return H, Y, W


NRC_SIZES = ((23, 2, 5), (9, 3, 2))  # n < d and n > d


@pytest.mark.slow
@given(
    seed=st.integers(0, 2**16),
    sizes=st.sampled_from(NRC_SIZES),
    shift=st.sampled_from((0.0, 1e3)),
    center=st.booleans(),
    data=st.data(),
)
def test_nrc_matches_full_arrays_over_batch_splits(seed, sizes, shift, center, data):
    M, n, d = sizes
    H, Y, W = nrc_data(seed, M, n, d, shift)
    cuts = data.draw(splits(M))
    common, fitted, at_gamma = full_nrc(H, Y, W, 0.01, n, center)
    res = accumulate(NRCAccumulator(W, center=center), batches((H, Y), cuts))
    assert_close(res, common | fitted)
    res = accumulate(NRCAccumulator(W, center=center), batches((H, Y), cuts), gamma=0.01)
    assert_close(res, common | at_gamma | {"gamma": 0.01})


def test_nrc_at_collapse_and_without_head():
    # features of rank n inside W's row space: NRC1 = NRC2 = 0 in exact arithmetic
    rng = np.random.default_rng(3)
    W = rng.normal(size=(2, 5))
    H = rng.normal(size=(23, 2)) @ W + 3.0 * W[0]  # shapes of NRC_SIZES[0]
    cuts = [0, 1, 9, 10, 23]
    res = accumulate(NRCAccumulator(W), batches((H,), cuts))
    common, _, _ = full_nrc(H, rng.normal(size=(23, 2)), W, 0.01, 2, True)
    assert_close(res, common)
    assert res["nrc1"] < 1e-14 and res["nrc2"] < 1e-14
    res = accumulate(NRCAccumulator(n=2), batches((H,), cuts))
    assert set(res) == {"nrc1"}


def transcribed_deep_nrc(Hs, Ws, Y, rtol=1e-3):
    """docs/theory.md section 5 written out with N x N Grams, SVDs and numpy's pinv (an independent
    computation: nothing shared with the accumulators but the definitions)."""
    N, n = Y.shape
    Yc = Y - Y.mean(0)
    out = {k: [] for k in ("nrc1", "nrc2", "nrc3", "nrc4", "srank_features_sq")}
    out |= {"srank_weights": [], "srank_targets_sq": []}
    lam = np.linalg.svd(Yc, compute_uv=False) ** 2 / N
    for H, W in zip(Hs, Ws, strict=True):
        Hc = H - H.mean(0)
        _, s, Vt = np.linalg.svd(Hc, full_matrices=False)
        e = s**2 / N
        k = min(n, H.shape[1])
        out["nrc1"].append(e[k:].sum() / e.sum())
        Kh, Ky = Hc @ Hc.T, Yc @ Yc.T
        out["nrc2"].append(np.sum(Kh * Ky) / np.sqrt(np.sum(Kh**2) * np.sum(Ky**2)))
        Vw = np.linalg.svd(W)[2][: min(k, W.shape[0])].T
        out["nrc3"].append(np.linalg.svd(Vt[:k] @ Vw, compute_uv=False).mean())
        P = np.linalg.pinv(H, rcond=rtol) @ Yc
        out["nrc4"].append(np.mean((H @ P - Yc) ** 2))
        out["srank_features_sq"].append(np.sum(e**2) / e[0] ** 2)
        sw = np.linalg.svd(W, compute_uv=False)
        out["srank_weights"].append(np.sum(sw**2) / sw[0] ** 2)
        out["srank_targets_sq"].append(np.sum(lam**2) / lam[0] ** 2)
    return {k: np.array(v) for k, v in out.items()}


def deep_regression_data(seed, N, n, dims, shift):
    rng = np.random.default_rng(seed)
    Y = rng.normal(size=(N, n)) @ rng.normal(size=(n, n)) + shift
    Hs = [rng.normal(size=(N, p)) + shift * rng.normal(size=p) for p in dims]
    outs = [*dims[1:], n]
    Ws = [rng.normal(size=(o, p)) for o, p in zip(outs, dims, strict=True)]
    return Hs, Ws, Y


@given(
    seed=st.integers(0, 2**16),
    shift=st.sampled_from((0.0, 10.0)),
    cka=st.sampled_from(("all", "authors")),
    data=st.data(),
)
def test_deep_nrc_matches_full_arrays_over_batch_splits(seed, shift, cka, data):
    N, n, dims = 25, 3, [6, 4, 2]  # widths above and below n; the last W has n rows
    Hs, Ws, Y = deep_regression_data(seed, N, n, dims, shift)
    cuts = data.draw(splits(N))
    source = [([h[i:j] for h in Hs], Y[i:j]) for i, j in zip(cuts[:-1], cuts[1:], strict=True)]
    threshold = data.draw(st.sampled_from((1e-2, 0.3)))
    res = accumulate(DeepNRCAccumulator(Ws), source, cka=cka, threshold=threshold)
    assert_close(res, full_deep_nrc(Hs, Ws, Y, cka=cka, threshold=threshold))
    assert res["nrc1"].shape == (3,) and res["first_collapsed"].shape == ()
    if cka == "all":  # and against a transcription with N x N Grams, SVDs and numpy's pinv
        ref = transcribed_deep_nrc(Hs, Ws, Y)
        assert_close({k: res[k] for k in ref}, ref)


def test_deep_nrc_without_weights_and_collapsed_layers():
    rng = np.random.default_rng(7)
    N, n = 25, 3  # the shapes of the test above (the jitted reference is reused)
    Y = rng.normal(size=(N, n)) + 5.0
    ones = np.ones((N, 1))  # with a constant column the uncentred probe fits Y_c exactly
    Hs = [
        np.hstack([Y @ rng.normal(size=(n, 3)), 1e-3 * rng.normal(size=(N, 3))]),
        np.hstack([Y + ones, ones]),
        rng.normal(size=(N, 2)),
    ]
    acc = DeepNRCAccumulator(num_layers=3)
    for i in range(0, N, 4):
        acc.update([h[i : i + 4] for h in Hs], Y[i : i + 4])
    res = acc.result()
    Ws = [rng.normal(size=(o, p)) for o, p in ((4, 6), (2, 4), (3, 2))]
    full = full_deep_nrc(Hs, Ws, Y, cka="all", threshold=1e-2)
    assert "nrc3" not in res and "srank_weights" not in res
    assert_close(res, {k: v for k, v in full.items() if k in res})
    assert res["nrc1"][0] < 1e-4 and res["nrc1"][1] < 1e-20 and res["first_collapsed"] == 0.0
    assert res["nrc4"][1] < 1e-20 and res["collapsed"].tolist() == [1.0, 1.0, 1.0]  # p <= n: 0


def deep_classification_data(seed, shift):
    N, K = 21, 3
    H, y, W, b = classification_data(seed, N, K, 4, shift)
    rng = np.random.default_rng(seed)
    H2 = np.maximum(H @ rng.normal(size=(4, 5)), 0.0)
    Ws = [rng.normal(size=(5, 4)), W @ rng.normal(size=(4, 5))]  # a hidden layer, a head
    return [H, H2], y, K, Ws, [None, b]


@given(seed=st.integers(0, 2**16), shift=st.sampled_from((0.0, 1e3)), data=st.data())
def test_deep_nc_matches_full_arrays_over_batch_splits(seed, shift, data):
    Hs, y, K, Ws, bs = deep_classification_data(seed, shift)
    cuts = data.draw(splits(len(y)))
    src = [([h[i:j] for h in Hs], y[i:j]) for i, j in zip(cuts[:-1], cuts[1:], strict=True)]
    res = accumulate(DeepNCAccumulator(K, Ws, bs), lambda: iter(src), ddof=1)
    assert_close(res, full_deep_nc(Hs, y, K, Ws, bs, ddof=1))
    alone = accumulate(DeepNCAccumulator(K, num_layers=2), src, ddof=1)
    assert_close(alone, {k: res[k] for k in ("nc1", "nc2", "nc2_equinorm", "nc2_orthogonal")})


class _Tensor:
    """Stands in for a CPU torch tensor: only ``__array__``."""

    def __init__(self, a):
        self.a = a

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self.a, dtype=dtype)


def test_jax_and_array_like_batches():
    H, y, W, b = classification_data(2, 20, 3, 4, 0.0)
    ref = accumulate(NCAccumulator(3, W, b), [(H, y)])
    jx = [(jnp.asarray(H[:9]), jnp.asarray(y[:9])), (jnp.asarray(H[9:]), jnp.asarray(y[9:]))]
    assert_close(accumulate(NCAccumulator(3, jnp.asarray(W), jnp.asarray(b)), jx), ref)
    ta = [(_Tensor(H[:5]), _Tensor(y[:5])), (_Tensor(H[5:]), _Tensor(y[5:]))]
    assert_close(accumulate(NCAccumulator(3, _Tensor(W), _Tensor(b)), ta), ref)


def test_nan_in_a_batch_gives_nan_as_the_full_arrays():
    N, K, d = NC_SIZES[0]
    H, y, W, b = classification_data(4, N, K, d, 0.0)
    Hn = H.copy()
    Hn[13, 2] = np.nan
    res = accumulate(NCAccumulator(K, W, b), batches((Hn, y), [0, 10, N]))
    assert all(np.isnan(v) for v in res.values())
    assert_close(res, full_nc(Hn, y, K, W, b))
    # NaN only in the second pass still poisons NC4 (never a finite count)
    acc = NCAccumulator(K, W, b).update(H, y)
    res = acc.update_second_pass(Hn[:10]).update_second_pass(Hn[10:]).result()
    assert np.isnan(res["nc4"])
    bn = b.copy()
    bn[1] = np.inf
    res = accumulate(NCAccumulator(K, W, bn), batches((H, y), [0, 5, N]))
    assert np.isnan(res["nc4"]) and np.isfinite(res["nc3"])
    assert_close(res, full_nc(H, y, K, W, bn))

    M, n, d = NRC_SIZES[0]
    Hr, Y, Wr = nrc_data(0, M, n, d, 0.0)
    Yn = Y.copy()
    Yn[3, 0] = np.inf
    res = accumulate(NRCAccumulator(Wr), batches((Hr, Yn), [0, 4, M]))
    common, fitted, _ = full_nrc(Hr, Yn, Wr, 0.01, n, True)
    assert_close(res, common | fitted)
    assert np.isnan(res["nrc3"]) and np.isfinite(res["nrc1"])
    Hn = Hr.copy()
    Hn[0, 0] = np.nan
    res = accumulate(NRCAccumulator(Wr), batches((Hn, Y), [0, 4, M]), gamma=np.nan)
    assert all(np.isnan(v) for v in res.values())

    Hs, Ws, Yd = deep_regression_data(0, 25, 3, [6, 4, 2], 0.0)
    Hs[1] = Hs[1].copy()
    Hs[1][5, 1] = np.nan
    acc = DeepNRCAccumulator(Ws).update([h[:7] for h in Hs], Yd[:7])
    res = acc.update([h[7:] for h in Hs], Yd[7:]).result()
    assert all(np.isnan(v[1]) and np.isfinite(v[0]) for v in res.values() if np.ndim(v))
    assert_close(res, full_deep_nrc(Hs, Ws, Yd, cka="all", threshold=1e-2))

    Hs, y, K, Ws, bs = deep_classification_data(0, 0.0)
    Hs[1] = Hs[1].copy()
    Hs[1][3, 0] = -np.inf
    res = accumulate(DeepNCAccumulator(K, Ws, bs), [(Hs, y)], ddof=1)
    assert_close(res, full_deep_nc(Hs, y, K, Ws, bs, ddof=1))
    assert all(np.isnan(v[1]) for v in res.values())
    assert all(np.isfinite(v[0]) for k, v in res.items() if k != "nc4")  # no nc4 at layer 0


def test_memory_does_not_grow_with_N():
    def state_bytes(acc):
        return sum(v.nbytes for v in vars(acc).values() if isinstance(v, np.ndarray))

    sizes = []
    for N in (10, 1000):
        H, y, W, b = classification_data(0, N, 3, 4, 0.0)
        acc = NCAccumulator(3, W, b)
        for i in range(0, N, 7):
            acc.update(H[i : i + 7], y[i : i + 7])
        Hr, Y, Wr = nrc_data(0, N, 2, 4, 0.0)
        nrc = NRCAccumulator(Wr)
        for i in range(0, N, 7):
            nrc.update(Hr[i : i + 7], Y[i : i + 7])
        sizes.append(
            (
                state_bytes(acc),
                state_bytes(nrc),
                state_bytes(nrc.features),
                state_bytes(nrc.targets),
            )
        )
    assert sizes[0] == sizes[1]


def test_second_pass_api_and_errors():
    H, y, W, b = classification_data(0, 20, 3, 4, 0.0)
    gen = ((H[i : i + 5], y[i : i + 5]) for i in range(0, 20, 5))
    with pytest.raises(TypeError, match="one-shot iterator"):
        accumulate(NCAccumulator(3, W, b), gen)
    acc = NCAccumulator(3, W, b).update(H, y).update_second_pass(H[:10])
    with pytest.raises(ValueError, match="second pass saw 10 samples"):
        acc.result()
    with pytest.raises(ValueError, match="first pass is over"):
        acc.update(H, y)
    res = NCAccumulator(3, W, b).update(H, y).result()
    assert "nc4" not in res and "nc3" in res  # no second pass: no NC4
    with pytest.raises(ValueError, match=r"classes \[2\]"):
        NCAccumulator(3).update(H[y < 2], y[y < 2]).result()


@pytest.mark.parametrize(
    "call, err, match",
    [
        (lambda: NCAccumulator(1), ValueError, "num_classes must be an int >= 2"),
        (lambda: NCAccumulator(3, np.ones((2, 4))), ValueError, "weights must have shape"),
        (lambda: NCAccumulator(3).update(np.ones((2, 3)), [0, 3]), ValueError, "labels must lie"),
        (lambda: NCAccumulator(3).update(np.ones((2, 3)), [0.0, 1.0]), TypeError, "integers"),
        (lambda: NCAccumulator(3).update(np.ones((2, 3)) * 1j, [0, 1]), TypeError, "real"),
        (lambda: NCAccumulator(3).update(np.ones(3), [0]), ValueError, "2-D batch"),
        (lambda: NRCAccumulator(np.ones((2, 3))).update(np.ones((4, 2))), ValueError, "columns"),
        (lambda: NRCAccumulator(n=0), ValueError, "n must be an int >= 1"),
        (lambda: NRCAccumulator().update(np.ones((3, 2))).result(), ValueError, "target dim"),
        (lambda: NRCAccumulator(n=1).result(), ValueError, "no samples"),
        (
            lambda: (
                NRCAccumulator(np.ones((1, 2))).update(np.ones((3, 2)), np.ones(3)).result(-1.0)
            ),
            ValueError,
            "gamma must be >= 0",
        ),
        (
            lambda: DeepNRCAccumulator([np.ones((2, 3))]).update([np.ones((4, 3))] * 2, np.ones(4)),
            ValueError,
            "hold 1 layers",
        ),
        (lambda: DeepNRCAccumulator(np.ones((2, 3))), TypeError, "list or tuple"),
        (lambda: accumulate(NCAccumulator(2), [np.ones((2, 2))]), TypeError, "tuple of update"),
    ],
)
def test_bad_input_raises_clearly(call, err, match):
    with pytest.raises(err, match=match):
        call()
