"""ufm.train: the MLP, the jitted training loop with layer-wise records, weight decay and collapse.

Sizes: K = 3 Gaussian classes in d = 8 (standardised, 20 per class) and a 2-target nonlinear
regression on 60 samples, MLP (8, 32, 32, out), 1000 full-batch epochs of SGD + momentum 0.02.
Over 5 data seeds x 2 init keys the weight-decay contrast held with the smallest ratios
NC1 2.8x, self-duality NC3 2.2x (classification) and NRC1 4.3x (regression); the asserted
margins (2x, 2x, 3x) sit below those.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import CompileCounter

import ufm.metrics
import ufm.train

K, D, PER, WIDTHS, EPOCHS, EVERY = 3, 8, 20, (32, 32), 1000, 250
WD = 1e-2


def _standardise(X):
    return (X - X.mean(0)) / X.std(0)


@pytest.fixture(scope="module")
def classes():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(K), PER)
    X = rng.normal(size=(K, D))[y] + rng.normal(size=(K * PER, D))
    return _standardise(X), y


@pytest.fixture(scope="module")
def regression():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, D))
    Y = np.tanh(X @ rng.normal(size=(D, 4)) / np.sqrt(D)) @ rng.normal(size=(4, 2))
    return X, Y


def _fit_classes(X, y, wd, key=0, **kw):
    return ufm.train.fit(WIDTHS, X, y, num_classes=K, key=jax.random.key(key), weight_decay=wd,
                         epochs=EPOCHS, record_every=EVERY, **kw)  # fmt: skip


@pytest.fixture(scope="module")
def class_runs(classes):
    X, y = classes
    return {wd: _fit_classes(X, y, wd) for wd in (0.0, WD)}


@pytest.mark.slow
def test_records_shapes_and_consistency(classes, class_runs):
    X, y = classes
    res = class_runs[WD]
    L = len(WIDTHS) + 1
    R = EPOCHS // EVERY + 1
    np.testing.assert_array_equal(res.record_epochs, np.arange(R) * EVERY)
    assert res.loss.shape == (EPOCHS,) and np.all(np.isfinite(res.loss))
    for name in ("nc1", "nc2", "nc2_equinorm", "nc2_orthogonal", "nc3", "nc3_alignment", "nc4"):
        assert res.records[name].shape == (R, L), name
    for name in ("data_loss", "objective", "accuracy"):
        assert res.records[name].shape == (R,), name
    # Full batch: the record after i k epochs is the objective the (i k)-th step evaluated.
    np.testing.assert_allclose(res.records["objective"][:-1], res.loss[::EVERY], rtol=1e-12)
    # Layer 0's features are the data: its NC1 never changes and equals deep_nc on X.
    nc1_X = jax.jit(lambda X: ufm.metrics.deep_nc([X], y, K)["nc1"][0])(X)
    np.testing.assert_allclose(res.records["nc1"][:, 0], nc1_X, rtol=1e-12)
    # The last record belongs to the final parameters: recompute it outside the loop.
    model = ufm.train.MLP((D, *WIDTHS, K))

    @jax.jit
    def direct_metrics(p):
        feats, Z = model.layer_inputs(p, X)
        return ufm.metrics.deep_nc(feats, y, K, p.weights, p.biases), Z

    direct, Z = direct_metrics(res.params)
    for name, value in direct.items():
        np.testing.assert_allclose(res.records[name][-1], value, rtol=1e-9, atol=1e-12)
    Zn, Wn = np.asarray(Z), [np.asarray(W) for W in res.params.weights]
    by_hand = 0.5 * np.sum((Zn - np.eye(K)[y]) ** 2) / len(y) + WD / 2 * sum(
        np.sum(W**2) for W in Wn
    )
    np.testing.assert_allclose(res.records["objective"][-1], by_hand, rtol=1e-10)
    np.testing.assert_allclose(res.records["accuracy"][-1], np.mean(Zn.argmax(1) == y))


@pytest.mark.slow
def test_loss_decreases_and_weight_decay_collapses_classes(class_runs):
    plain, decayed = class_runs[0.0], class_runs[WD]
    for res in (plain, decayed):
        assert res.loss[-1] < 0.05 * res.loss[0]
        assert res.records["accuracy"][-1] == 1.0
    # Penultimate features (the head's input): within-class variability collapse (NC1) and
    # self-duality of the head (NC3) are at least twice as far along with weight decay.
    nc1_plain, nc1_wd = plain.records["nc1"][-1, -1], decayed.records["nc1"][-1, -1]
    nc3_plain, nc3_wd = plain.records["nc3"][-1, -1], decayed.records["nc3"][-1, -1]
    assert nc1_wd < 0.5 * nc1_plain, (nc1_wd, nc1_plain)
    assert nc3_wd < 0.5 * nc3_plain, (nc3_wd, nc3_plain)
    # And weight decay drives NC1 down over training at the head's input.
    assert decayed.records["nc1"][-1, -1] < 0.2 * decayed.records["nc1"][0, -1]


def test_weight_decay_gives_deep_regression_collapse(regression):
    X, Y = regression
    runs = {
        wd: ufm.train.fit(
            WIDTHS, X, Y, key=jax.random.key(0), weight_decay=wd, epochs=EPOCHS, record_every=EVERY
        )  # fmt: skip
        for wd in (0.0, WD)
    }
    plain, decayed = runs[0.0].records, runs[WD].records
    for run in runs.values():
        assert run.loss[-1] < 0.05 * run.loss[0]
        assert run.records["nrc1"].shape == (EPOCHS // EVERY + 1, len(WIDTHS) + 1)
        assert run.records["first_collapsed"].shape == (EPOCHS // EVERY + 1,)
    # Noise fraction outside the top-n principal directions of the penultimate features.
    assert decayed["nrc1"][-1, -1] < plain["nrc1"][-1, -1] / 3, (decayed["nrc1"], plain["nrc1"])
    # The head's input directions align with the features' principal subspace.
    assert decayed["nrc3"][-1, -1] > plain["nrc3"][-1, -1] + 0.3
    assert decayed["data_loss"][-1] < 0.01


def test_no_recompile_for_new_key_weight_decay_learning_rate_and_data(classes):
    X, y = classes
    _fit_classes(X, y, 0.0)  # compiled here or by an earlier test
    X2, wd, lr = X + 0.01, jnp.asarray(3e-3, jnp.float64), jnp.asarray(0.03, jnp.float64)
    with CompileCounter() as cc:
        _fit_classes(X2, y, wd, key=7, learning_rate=lr).loss.block_until_ready()
    assert cc.count == 0
    # a per-layer weight decay has the same traced shape
    with CompileCounter() as cc:
        _fit_classes(X, y, np.array([0.0, 1e-3, 1e-2]), key=3).loss.block_until_ready()
    assert cc.count == 0


@pytest.mark.slow
def test_vmap_over_weight_decay_matches_single_runs(classes, class_runs):
    X, y = classes
    batched = jax.vmap(lambda wd: _fit_classes(X, y, wd))(jnp.array([0.0, WD]))
    for i, wd in enumerate((0.0, WD)):
        np.testing.assert_allclose(batched.loss[i], class_runs[wd].loss, rtol=1e-9)
        for name in ("nc1", "nc3", "objective"):
            np.testing.assert_allclose(
                batched.records[name][i], class_runs[wd].records[name], rtol=1e-6, atol=1e-12
            )


@pytest.mark.slow
def test_minibatches_with_an_optax_optimizer_and_a_record_subset(classes):
    X, y = classes
    res = ufm.train.fit(ufm.train.MLP((D, 16, K), activation="tanh", bias=False), X, y,
                        num_classes=K, loss="ce", optimizer=optax.adam(1e-2), batch_size=16,
                        epochs=60, record_every=25, record_samples=30, key=jax.random.key(1),
                        weight_decay=1e-3)  # fmt: skip
    np.testing.assert_array_equal(res.record_epochs, [0, 25, 50, 60])
    assert res.loss.shape == (60,) and res.records["nc1"].shape == (4, 2)
    assert res.params.biases is None
    assert res.loss[-1] < 0.2 * res.loss[0]
    assert all(np.all(np.isfinite(v)) for k, v in res.records.items() if k != "nc4")
    assert res.records["accuracy"][-1] > 0.9


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        (dict(y=np.zeros(59, int)), ValueError, "y must have shape"),
        (dict(X=np.full((60, D), np.nan)), ValueError, "X must be finite"),
        (dict(X=np.zeros((60, D, 1))), ValueError, "X must have shape"),
        (dict(loss="hinge"), ValueError, "loss must be one of"),
        (dict(num_classes=None), ValueError, "y holds integer labels: pass num_classes"),
        (dict(y=np.full(60, 3)), ValueError, "y must lie in"),
        (dict(model=ufm.train.MLP((D + 1, 4, K))), ValueError, "model must have widths"),
        (dict(model="relu"), TypeError, "model must be"),
        (dict(model=[4, 0]), ValueError, r"widths\[2\]"),
        (dict(weight_decay=-1.0), ValueError, "weight_decay must be finite and >= 0"),
        (dict(weight_decay=np.ones(3)), ValueError, "weight_decay must be a scalar or one"),
        (dict(batch_size=61), ValueError, "batch_size must be at most N = 60"),
        (dict(epochs=0), ValueError, "epochs must be an int >= 1"),
        (dict(record_every=0), ValueError, "record_every must be an int >= 1"),
        (dict(learning_rate=-0.1), ValueError, "learning_rate must be a finite scalar > 0"),
        (dict(optimizer=optax.sgd(0.1), learning_rate=0.1), ValueError, "learning_rate is for"),
        (dict(key=0), TypeError, "key must be a PRNG key"),
        (dict(params=(1, 2)), ValueError, "params must be MLPParams"),
    ],
)
def test_bad_input_raises_naming_the_argument(classes, change, error, match):
    X, y = classes
    kw = dict(model=[4], X=X, y=y, num_classes=K, key=jax.random.key(0), epochs=2)
    kw.update(change)
    with CompileCounter() as cc, pytest.raises(error, match=match):
        ufm.train.fit(kw.pop("model"), kw.pop("X"), kw.pop("y"), **kw)
    assert cc.count == 0  # raised before any work


def test_bad_regression_input(regression):
    X, Y = regression
    with pytest.raises(ValueError, match="loss='ce' needs class labels"):
        ufm.train.fit([4], X, Y, loss="ce", key=jax.random.key(0))
    with pytest.raises(ValueError, match="y must be finite"):
        ufm.train.fit([4], X, np.where(np.eye(60, 2) > 0, np.nan, Y), key=jax.random.key(0))
    with pytest.raises(ValueError, match="y must have shape"):
        ufm.train.fit([4], X, Y[:10], key=jax.random.key(0))


def test_mlp_matches_a_direct_forward_pass():
    m = ufm.train.MLP.create([5, 7, 3], activation="tanh")
    p = m.init(jax.random.key(0), jnp.float64)
    assert [W.shape for W in p.weights] == [(7, 5), (3, 7)]
    assert [b.shape for b in p.biases] == [(7,), (3,)]
    p = p._replace(biases=tuple(jnp.ones_like(b) for b in p.biases))
    X = np.random.default_rng(0).normal(size=(4, 5))
    W0, W1 = (np.asarray(W) for W in p.weights)
    hidden = np.tanh(X @ W0.T + 1)
    feats, out = jax.jit(m.layer_inputs)(p, X)
    np.testing.assert_allclose(feats[0], X)
    np.testing.assert_allclose(feats[1], hidden, rtol=1e-12)
    np.testing.assert_allclose(out, hidden @ W1.T + 1, rtol=1e-12)
    np.testing.assert_allclose(jax.jit(m.apply)(p, X[0]), out[0], rtol=1e-12)  # one sample
    with pytest.raises(ValueError, match="activation must be one of"):
        ufm.train.MLP.create([2, 2], activation="swish")
    with pytest.raises(ValueError, match="at least"):
        ufm.train.MLP.create([2])
