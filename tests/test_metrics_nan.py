"""NaN in, NaN out, and bad metric input.

Every metric given a NaN or inf anywhere in any float input returns NaN in every output entry,
eagerly, under jit and under vmap; the safe helpers keep NaN as NaN with an exactly-zero
gradient at 0; mismatched sizes and non-integer labels raise before any work, naming the
argument."""

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import examples
from hypothesis import given, settings
from hypothesis import strategies as st

from ufm import _linalg, metrics

BAD = (np.nan, np.inf, -np.inf)


# --- the safe helpers -------------------------------------------------------------------------


def test_safe_helpers_keep_nan_and_zero_gradient_at_zero():
    z, v = jnp.zeros(3), jnp.array([1.0, jnp.nan, 2.0])
    assert float(_linalg.safe_norm(z)) == 0.0
    assert np.isnan(float(_linalg.safe_norm(v)))
    np.testing.assert_array_equal(jax.grad(_linalg.safe_norm)(z), np.zeros(3))
    np.testing.assert_array_equal(_linalg.safe_normalise(z), np.zeros(3))
    np.testing.assert_array_equal(jax.jacfwd(_linalg.safe_normalise)(z), np.eye(3))
    for x in (v, jnp.array([1.0, jnp.inf, 2.0])):
        assert np.all(np.isnan(_linalg.safe_normalise(x)))
    rows = _linalg.safe_normalise_rows(jnp.stack([z, v, jnp.array([3.0, 0.0, 4.0])]))
    np.testing.assert_array_equal(rows[0], np.zeros(3))
    assert np.all(np.isnan(rows[1]))
    np.testing.assert_allclose(rows[2], [0.6, 0.0, 0.8])
    e = jnp.array([4.0, 1e-20, 0.0, jnp.nan])
    inv = _linalg.inv_above(e, 1e-10, 0.5)
    np.testing.assert_array_equal(inv[:3], [0.5, 0.0, 0.0])
    assert np.isnan(float(inv[3]))
    d = _linalg.safe_div(jnp.array([1.0, 0.0, 1.0, jnp.nan]), jnp.array([2.0, 0.0, jnp.nan, 0.0]))
    np.testing.assert_array_equal(d[:2], [0.5, 0.0])
    assert np.all(np.isnan(d[2:]))
    np.testing.assert_array_equal(jax.grad(lambda b: _linalg.safe_div(1.0, b))(0.0), 0.0)


# --- every metric: its float inputs, for two shapes ------------------------------------------

# classification: (K, samples per class, d); regression: (M, n, d) with n > d in the second.
NC_SHAPES = ((2, 3, 3), (3, 2, 5))
NRC_SHAPES = ((7, 2, 4), (9, 3, 2))


def _nc_inputs(rng, cfg):
    K, per, d = NC_SHAPES[cfg]
    y = np.repeat(np.arange(K), per)
    arrays = {"H": rng.normal(size=(K * per, d)), "W": rng.normal(size=(K, d))}
    return K, y, arrays


def _nrc_inputs(rng, cfg):
    M, n, d = NRC_SHAPES[cfg]
    return {
        "H": rng.normal(size=(M, d)),
        "W": rng.normal(size=(n, d)),
        "Y": rng.normal(size=(M, n)),
    }


def _case(name, rng, cfg):
    """``(fn, arrays)``: ``fn(arrays)`` evaluates the metric on the dict of float arrays."""
    if name in ("nc1", "nc2", "nc3", "nc3_zhu_uncentred", "nc4", "etf", "frame"):
        K, y, a = _nc_inputs(rng, cfg)
        if name == "nc4":
            a["b"] = rng.normal(size=K)
        if name in ("etf", "frame"):
            a = {"G": a["W"] @ a["W"].T}
        if name == "nc1":
            a = {"H": a["H"]}
        fns = {
            "nc1": lambda a: metrics.nc1(a["H"], y, K),
            "nc2": lambda a: metrics.nc2(a["H"], a["W"], y, K),
            "nc3": lambda a: metrics.nc3(a["H"], a["W"], y, K),
            "nc3_zhu_uncentred": lambda a: metrics.nc3(
                a["H"], a["W"], y, K, variant="zhu", center=False
            ),
            "nc4": lambda a: metrics.nc4(a["H"], a["W"], a["b"], y, K),
            "etf": lambda a: metrics.etf_distance(a["G"]),
            "frame": lambda a: metrics.orthogonal_frame_distance(a["G"]),
        }
        return fns[name], a
    a = _nrc_inputs(rng, cfg)
    n = a["Y"].shape[1]
    if name == "nrc1":
        return (lambda a: metrics.nrc1(a["H"], n)), {"H": a["H"]}
    if name == "principal_basis":
        return (lambda a: metrics.principal_basis(a["H"], n)), {"H": a["H"]}
    if name == "nrc2":
        return (lambda a: metrics.nrc2(a["H"], a["W"])), {"H": a["H"], "W": a["W"]}
    if name == "nrc3":
        b = {"W": a["W"], "Y": a["Y"], "gamma": np.array(0.01)}
        return (lambda a: metrics.nrc3(a["W"], a["Y"], a["gamma"])), b
    if name == "fit_gamma":
        return (lambda a: metrics.fit_gamma(a["W"], a["Y"], num=8)), {"W": a["W"], "Y": a["Y"]}
    if name == "collapse_target":
        b = {"S": np.cov(a["Y"].T, bias=True), "gamma": np.array(0.01)}
        return (lambda a: metrics.collapse_target(a["S"], a["gamma"])), b
    if name == "stable_rank":
        return (lambda a: metrics.stable_rank(a["H"])), {"H": a["H"]}
    raise KeyError(name)


SINGLE = (
    "nc1",
    "nc2",
    "nc3",
    "nc3_zhu_uncentred",
    "nc4",
    "etf",
    "frame",
    "nrc1",
    "nrc2",
    "nrc3",
    "fit_gamma",
    "collapse_target",
    "principal_basis",
    "stable_rank",
)


def _poison(arrays, data, bad):
    key = data.draw(st.sampled_from(sorted(arrays)))
    arr = np.array(arrays[key], dtype=float)
    arr.flat[data.draw(st.integers(0, arr.size - 1))] = bad
    return {**arrays, key: arr}


def _all_nan(out) -> bool:
    return all(bool(np.all(np.isnan(np.asarray(v)))) for v in jax.tree_util.tree_leaves(out))


@pytest.mark.slow
@settings(max_examples=examples(70))
@given(st.sampled_from(SINGLE), st.integers(0, 1), st.sampled_from(BAD), st.data())
def test_every_metric_is_nan_on_nonfinite_input(name, cfg, bad, data):
    fn, arrays = _case(name, np.random.default_rng(cfg), cfg)
    assert not _all_nan(fn(arrays))  # finite input: a real value
    assert _all_nan(fn(_poison(arrays, data, bad))), name


@pytest.mark.parametrize("name", SINGLE)
def test_jit_and_vmap_keep_nan(name):
    """One compiled, vmapped call over [clean, NaN, inf] instances: NaN exactly where poisoned."""
    fn, arrays = _case(name, np.random.default_rng(0), 0)
    key = sorted(arrays)[0]
    batch = {}
    for k, v in arrays.items():
        v = np.array(v, dtype=float)
        batch[k] = np.stack([v, v, v])
    batch[key].reshape(3, -1)[1, 0] = np.nan
    batch[key].reshape(3, -1)[2, -1] = np.inf
    out = jax.jit(jax.vmap(fn))(batch)
    for leaf in jax.tree_util.tree_leaves(out):
        leaf = np.asarray(leaf).reshape(3, -1)
        assert np.all(np.isfinite(leaf[0])) and np.all(np.isnan(leaf[1:])), name


# --- layer-wise metrics: the poisoned layer is NaN, targets poison every layer ----------------

_deep_nrc = jax.jit(metrics.deep_nrc)
_deep_nc = jax.jit(metrics.deep_nc, static_argnums=2)


@settings(max_examples=examples(16))
@given(st.sampled_from(BAD), st.data())
def test_layerwise_metrics_are_nan_where_the_input_is_not_finite(bad, data):
    rng = np.random.default_rng(0)
    N, n, K = 8, 2, 2
    Xs = [rng.normal(size=(N, p)) for p in (3, 2)]
    Ws = [rng.normal(size=(K, 3)), rng.normal(size=(4, 2))]
    bs = [rng.normal(size=2), rng.normal(size=4)]
    Y, y = rng.normal(size=(N, n)), np.repeat(np.arange(K), N // K)
    kind = data.draw(st.sampled_from(("features", "weights", "biases", "targets")))
    layer = data.draw(st.integers(0, 1))
    arrays = {"features": Xs, "weights": Ws, "biases": bs}
    if kind == "targets":
        Y = _poison({"Y": Y}, data, bad)["Y"]
    else:
        arrays[kind] = list(arrays[kind])
        arrays[kind][layer] = _poison({"x": arrays[kind][layer]}, data, bad)["x"]
    nrc = _deep_nrc(arrays["features"], arrays["weights"], Y)
    nc = _deep_nc(arrays["features"], y, K, arrays["weights"], arrays["biases"])
    bad_layers = [0, 1] if kind == "targets" else [layer]
    for name, v in list(nrc.items()) + list(nc.items()):
        v = np.asarray(v)
        if name == "first_collapsed":
            assert np.isnan(v) == (kind != "biases")
        elif kind == "biases" and name in nrc:
            assert np.all(np.isfinite(v)), name  # deep NRC takes no biases
        elif not (kind == "targets" and name in nc):  # deep NC takes no targets
            assert np.all(np.isnan(v[bad_layers])), (name, kind, layer)
            others = [i for i in (0, 1) if i not in bad_layers]
            assert np.all(np.isfinite(v[others]) | (name == "nc4")), (name, kind, layer)


# --- bad input: sizes, labels, heads ----------------------------------------------------------


def _bad_input_cases():
    rng = np.random.default_rng(0)
    H, W, y = rng.normal(size=(6, 3)), rng.normal(size=(2, 3)), np.repeat([0, 1], 3)
    Y = rng.normal(size=(6, 2))
    return [
        (lambda: metrics.nc1(H, y[:5], 2), ValueError, r"labels must have shape \(N,\) = \(6,\)"),
        (lambda: metrics.nc2(H, W[:, :2], y, 2), ValueError, r"W must have shape \(K, d\)"),
        (lambda: metrics.nc3(H, W[:1], y, 2), ValueError, r"W must have shape \(K, d\) = \(2, 3\)"),
        (lambda: metrics.nc4(H, np.ones((3, 3)), None, y, 2), ValueError, r"W must .* \(2, 3\)"),
        (lambda: metrics.nc4(H, W, np.ones(3), y, 2), ValueError, r"b must have shape \(K,\)"),
        (lambda: metrics.nc4(H, W, np.ones((2, 1)), y, 2), ValueError, r"b must be a 1-D"),
        (lambda: metrics.nc1(H, y.astype(float), 2), TypeError, "labels must be integers"),
        (lambda: metrics.nc1(H, y.astype(str), 2), TypeError, "labels must be integers"),
        (lambda: metrics.nc1(H, None, 2), TypeError, "labels must be integers"),
        (lambda: metrics.nc1(H, [0, 1, None, 1, 0, 1], 2), TypeError, "labels must be integers"),
        (lambda: metrics.nc1(H, np.ones(6, bool), 2), TypeError, "labels must be integers"),
        (lambda: metrics.nc1(H, y, np.int64(1)), ValueError, "num_classes must be an int >= 2"),
        (lambda: metrics.nc1(H.astype(complex), y, 2), TypeError, "H must be real"),
        (lambda: metrics.nc1(H.astype(str), y, 2), TypeError, "H must be a numeric array"),
        (lambda: metrics.nrc2(H, np.ones((2, 4))), ValueError, r"W must have shape \(n, d\)"),
        (lambda: metrics.nrc3(W, Y[:, :1], 0.1), ValueError, r"W must have n = 1 rows"),
        (lambda: metrics.nrc3(W, Y, np.ones(2)), ValueError, "gamma must be a scalar"),
        (lambda: metrics.fit_gamma(W.T, Y), ValueError, r"W must have n = 2 rows"),
        (lambda: metrics.nrc1(H, 0), ValueError, "n must be an int >= 1"),
        (lambda: metrics.nrc1(H, 2.0), ValueError, "n must be an int >= 1"),
        (lambda: metrics.etf_distance(np.ones((2, 3))), ValueError, r"G must be a square"),
        (lambda: metrics.stable_rank(np.ones(3)), ValueError, r"A must be a 2-D array"),
        (lambda: metrics.collapse_target(np.ones((2, 3)), 0.1), ValueError, "Sigma must be"),
    ]


@pytest.mark.parametrize("case", range(len(_bad_input_cases())))
def test_bad_metric_input_raises_naming_the_argument(case):
    fn, exc, pattern = _bad_input_cases()[case]
    with pytest.raises(exc, match=pattern):
        fn()


def test_numpy_integers_accepted_where_valid():
    rng = np.random.default_rng(0)
    H, y = rng.normal(size=(6, 3)), np.repeat([0, 1], 3)
    assert float(metrics.nc1(H, y, np.int64(2))) == float(metrics.nc1(H, y, 2))
    assert float(metrics.nrc1(H, np.int32(2))) == float(metrics.nrc1(H, 2))


@pytest.mark.slow
def test_labels_beyond_int32_do_not_wrap_in_32_bit_mode():
    """Under JAX's default 32-bit mode 2**32 + 1 would wrap to class 1: it must be rejected, and
    float32 NaN features must still give NaN."""
    code = textwrap.dedent(
        """
        import numpy as np
        from ufm import metrics
        H = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
        try:
            metrics.nc1(H, np.array([0, 1, 0, 2**32 + 1]), 2)
        except ValueError as err:
            assert "labels must lie in [0, num_classes)" in str(err), err
        else:
            raise SystemExit("label 2**32 + 1 accepted")
        H[0, 0] = np.nan
        v = metrics.nc1(H, np.array([0, 1, 0, 1]), 2)
        assert v.dtype == np.float32 and np.isnan(float(v)), v
        print("ok")
        """
    )
    env = {**os.environ, "JAX_ENABLE_X64": "0", "JAX_PLATFORMS": "cpu"}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr[-2000:]
