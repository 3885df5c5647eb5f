"""Label smoothing in the cross-entropy classification UFM: the balanced closed form of
theory.label_smoothing against L-BFGS in every bias mode and regime, the issue's check value by
two routes, vmap over delta without recompiling, the convention map, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import CompileCounter, examples
from hypothesis import example, given, settings
from hypothesis import strategies as st

from theory import label_smoothing as tls
from theory.classification import balanced_labels
from ufm import ClassificationUFM, Params, Status, solve, stack
from ufm._normalisation import convert_label_smoothing

# One shape for every solve: the check value's K and n, d = K - 1 (the smallest the ETF needs;
# the optimum is the same for every d >= K - 1). Solves run in batches of B problems through
# one vmapped L-BFGS program per bias mode, shared by the tests below.
K, N_PER, D, B = 4, 3, 3, 4
LABELS = balanced_labels(K, N_PER)
BIASES = ("none", "free", 0.3)
RUN = jax.vmap(lambda p: solve(p, "lbfgs"))


def _batch(bias, lH, lW, deltas):
    base = ClassificationUFM(LABELS, K, 1.0, 1.0, D, loss="ce", bias=bias)
    return stack(
        [
            base.replace(lambda_H=a, lambda_W=b, label_smoothing=d)
            for a, b, d in zip(lH, lW, deltas, strict=True)
        ]
    )


def _grams(params):
    """``W W^T``, the class-mean Gram and the row-centred class-mean logits."""
    H, W, b = params
    mm = lambda a, c: jnp.matmul(a, c, precision="highest")  # noqa: E731
    mu = jnp.stack([H[LABELS == k].mean(0) for k in range(K)])
    logits = mm(mu, W.T) + b
    return mm(W, W.T), mm(mu, mu.T), logits - logits.mean(1, keepdims=True)


def _close(a, b, rel):
    scale = max(float(jnp.linalg.norm(b)), 1.0)
    return float(jnp.linalg.norm(jnp.asarray(a) - b)) <= rel * scale


def test_check_value_by_two_routes():
    # K = 4, n = 3, lambda_H = lambda_W = 5e-3, delta = 0.1, no bias (issue 20).
    expected = 0.438171305784
    opt = tls.optimum(4, 3, 5e-3, 5e-3, 0.1, 4)
    s = np.sqrt(3 * 5e-3 * 5e-3)
    t = tls.scale_root(4, s, 0.1)  # bisection on F'(t), not the closed-form log
    F = np.log1p(3 * np.exp(-4 * t / 3)) + (4 * s + 0.1) * t
    assert float(opt.scale) == pytest.approx(float(t), rel=1e-12)
    assert float(opt.loss) == pytest.approx(expected, abs=5e-13)
    assert float(F) == pytest.approx(expected, abs=5e-13)
    # L-BFGS on all variables (d = 3 here, the d = 4 has the same optimum); the other
    # entries: a delta out of range under tracing is reported, not solved.
    sols = RUN(_batch("none", [5e-3] * B, [5e-3] * B, [0.1, 1.0, -0.1, 0.0]))
    status = np.asarray(sols.status).tolist()
    assert status == [Status.successful, Status.invalid_input, Status.invalid_input, 0]
    assert float(sols.loss[0]) == pytest.approx(expected, abs=5e-12)


@st.composite
def cases(draw):
    """``B`` draws of ``(lambda_H, lambda_W, delta)``, with ``K s + delta`` below 1 for the
    first half and above 1 (the zero optimum) for the rest."""
    out = []
    for i in range(B):
        delta = draw(st.floats(0.0, 0.95))
        ratio = draw(st.floats(0.2, 5.0))
        if i < B // 2:
            ks = draw(st.floats(0.02, 0.9)) * (1 - delta)
        else:
            ks = draw(st.floats(1 - delta + 0.02, 1.5))
        c = (ks / K) ** 2 / N_PER  # lambda_H lambda_W
        lW = np.sqrt(c / ratio)
        out.append((ratio * lW, lW, delta))
    return out


def _check_batch(bias, case):
    lH, lW, deltas = (list(x) for x in zip(*case, strict=True))
    batch = _batch(bias, lH, lW, deltas)
    sols = RUN(batch)
    for i in range(B):
        p = jax.tree_util.tree_map(lambda x: x[i], batch)  # noqa: B023
        opt = tls.optimum_of(p)
        assert bool(opt.zero) == (i >= B // 2)
        assert int(sols.status[i]) == Status.successful, p
        assert float(sols.loss[i]) == pytest.approx(float(opt.loss), rel=1e-8), p
        WWT, G, L = _grams(jax.tree_util.tree_map(lambda x: x[i], sols.params))  # noqa: B023
        assert _close(WWT, opt.WWT, 1e-8) and _close(G, opt.class_mean_gram, 1e-8), p
        assert _close(L, opt.logits, 1e-8), p
    return sols


@settings(max_examples=examples(3))
@given(case=cases())
@example(case=[(4e-3, 1e-2, 0.1), (1e-3, 1e-3, 0.0), (2e-2, 2e-2, 0.95), (0.2, 0.2, 0.0)])
def test_closed_form_matches_lbfgs(case):
    _check_batch("none", case)


def test_vmap_over_delta_does_not_recompile():
    case = [(1e-2, 1e-2, 0.2), (1e-2, 1e-2, 0.5), (2e-2, 2e-2, 0.97), (1e-2, 2e-2, 0.98)]
    _check_batch("none", case)
    case = [(1e-2, 1e-2, 0.05), (1e-2, 1e-2, 0.3), (2e-2, 2e-2, 0.98), (1e-2, 2e-2, 0.99)]
    with CompileCounter() as c:
        jax.block_until_ready(RUN(_batch("none", *zip(*case, strict=True))))
    assert c.count == 0
    _check_batch("none", case)


@pytest.mark.slow
@pytest.mark.parametrize("bias", BIASES[1:])
@settings(max_examples=examples(2))
@given(case=cases())
@example(case=[(4e-3, 1e-2, 0.1), (1e-3, 1e-3, 0.0), (2e-2, 2e-2, 0.95), (0.2, 0.2, 0.0)])
def test_closed_form_matches_lbfgs_with_a_bias(bias, case):
    _check_batch(bias, case)


@pytest.mark.slow
def test_optax_and_restarts_reach_the_optimum():
    p = ClassificationUFM(LABELS, K, 1e-2, 5e-3, D, loss="ce", bias=0.3, label_smoothing=0.2)
    opt = tls.optimum_of(p)
    sol = solve(p, optax.sgd(0.5, momentum=0.9), max_steps=3000)
    assert float(sol.loss) == pytest.approx(float(opt.loss), rel=1e-8)
    sol = solve(p, "lbfgs", restarts=2)
    assert float(sol.loss) == pytest.approx(float(opt.loss), rel=1e-10)


def test_certificate_at_zero_and_reduction_with_smoothing():
    # At W = H = 0 the gradient in Z is (1/K - q_i)/N, of operator norm (1 - delta)/(K sqrt(n)):
    # the certificate's violation is (1 - delta)/(K s) - 1, > 0 (a saddle) iff K s + delta < 1.
    zeros = Params(jnp.zeros((K * N_PER, D)), jnp.zeros((K, D)), jnp.zeros(K))
    p = ClassificationUFM(LABELS, K, 1e-2, 1e-2, D, loss="ce", label_smoothing=0.3)
    cert = jax.jit(lambda p, d: p.replace(label_smoothing=d).certificate(zeros)[0])
    s = np.sqrt(N_PER * 1e-4)
    for delta in (0.0, 0.3, 0.95):
        assert float(cert(p, delta)) == pytest.approx((1 - delta) / (K * s) - 1, rel=1e-12)
    # Unequal classes: the class-mean reduction keeps the objective and the certificate.
    y = np.array([0, 0, 0, 1, 2, 2])
    q = ClassificationUFM(y, 3, 1e-2, 2e-2, 2, loss="ce", bias="free", label_smoothing=0.3)

    @jax.jit
    def both(q):
        red = q.reduction()
        v = red.problem.default_init(jax.random.PRNGKey(3))
        v = Params(v.H, v.W, jnp.array([0.1, -0.2, 0.4]))
        H, W, b = red.expand(v)
        Z = H @ W.T + b
        Q = q.smoothed_targets
        direct = jnp.mean(jax.nn.logsumexp(Z, axis=1) - jnp.sum(Q * Z, axis=1))
        return (
            jnp.stack([red.problem.objective(v), q.objective(red.expand(v))]),
            jnp.stack([q.data_term(H @ W.T, b), direct]),
            jnp.stack([red.problem.certificate(v)[0], q.certificate(red.expand(v))[0]]),
        )

    for pair in both(q):
        assert float(pair[0]) == pytest.approx(float(pair[1]), rel=1e-12)
    Q = q.smoothed_targets
    np.testing.assert_allclose(Q[0], [0.8, 0.1, 0.1], rtol=1e-15)
    assert q.targets[0].tolist() == [1.0, 0.0, 0.0]
    assert "label_smoothing=0.3" in repr(q) and "label_smoothing" not in repr(
        q.replace(label_smoothing=0.0)
    )


def test_float32_solve():
    p = ClassificationUFM(
        LABELS, K, 1e-2, 1e-2, D, loss="ce", label_smoothing=0.1, dtype=jnp.float32
    )
    assert p.label_smoothing.dtype == jnp.float32
    sol = solve(p)
    assert sol.params.H.dtype == jnp.float32 and int(sol.status) == Status.successful
    opt = tls.optimum(K, N_PER, 1e-2, 1e-2, 0.1, D)
    assert float(sol.loss) == pytest.approx(float(opt.loss), rel=1e-5)


def test_limit_margin_is_finite_and_matches_small_lambda():
    for delta in (0.05, 0.3):
        opt = tls.optimum(4, 3, 1e-12, 1e-12, delta, 3)
        margin = float(opt.logits[0, 0] - opt.logits[0, 1])
        assert margin == pytest.approx(tls.limit_margin(4, delta), rel=1e-9)
        assert float(opt.loss) == pytest.approx(tls.limit_loss(4, delta), rel=1e-9)
        # softmax of the limit logits is the smoothed target
        z = np.full(4, 0.0)
        z[0] = tls.limit_margin(4, delta)
        np.testing.assert_allclose(
            np.exp(z) / np.exp(z).sum(), [1 - delta + delta / 4] + [delta / 4] * 3, rtol=1e-12
        )


def test_convert_label_smoothing():
    assert convert_label_smoothing(0.1, "off_target", num_classes=10) == pytest.approx(1 / 9)
    assert convert_label_smoothing(1 / 9, "pytorch", num_classes=10, to="off_target") == (
        pytest.approx(0.1)
    )
    # Same soft targets: 1 - delta on the true class, delta/(K-1) elsewhere.
    d = convert_label_smoothing(0.3, "off_target", num_classes=4)
    assert 1 - d + d / 4 == pytest.approx(0.7) and d / 4 == pytest.approx(0.1)
    np.testing.assert_allclose(
        convert_label_smoothing(np.array([0.0, 0.3]), "off_target", num_classes=4), [0.0, 0.4]
    )


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(label_smoothing=1.0), ValueError, "label_smoothing must be a finite number in"),
        (dict(label_smoothing=-0.1), ValueError, "label_smoothing must be a finite number in"),
        (dict(label_smoothing=np.nan), ValueError, "label_smoothing must be a finite number in"),
        (dict(label_smoothing=np.inf), ValueError, "label_smoothing must be a finite number in"),
        (dict(label_smoothing=True), TypeError, "label_smoothing must be a real number"),
        (dict(label_smoothing="0.1"), TypeError, "label_smoothing must be a real number"),
        (dict(label_smoothing=[0.1, 0.2]), ValueError, "label_smoothing must be a scalar"),
        (dict(label_smoothing=0.1, loss="mse"), ValueError, "needs loss='ce'"),
        (
            dict(label_smoothing=1 - 1e-9, dtype=jnp.float32),
            ValueError,
            "becomes 1 in float32",
        ),
    ],
)
def test_bad_input(kwargs, exc, match):
    args = dict(labels=[0, 1, 2], num_classes=3, lambda_H=1e-3, lambda_W=1e-3, feature_dim=4)
    args.update(loss="ce")
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        ClassificationUFM(**args)


def test_bad_input_theory_and_convert():
    with pytest.raises(ValueError, match="feature_dim = 2 < K - 1 = 3"):
        tls.optimum(4, 3, 1e-2, 1e-2, 0.1, 2)
    with pytest.raises(ValueError, match="label_smoothing must be a finite number in"):
        tls.optimum(4, 3, 1e-2, 1e-2, 1.5, 3)
    with pytest.raises(ValueError, match="label_smoothing must be in \\(0, 1\\)"):
        tls.limit_margin(4, 0.0)
    with pytest.raises(ValueError, match="label_smoothing must be a concrete number"):
        jax.jit(lambda d: tls.limit_margin(4, d))(0.1)
    with pytest.raises(ValueError, match="convention must be one of"):
        convert_label_smoothing(0.1, "torch", num_classes=4)
    with pytest.raises(ValueError, match="it must be < 0.75 for K = 4"):
        convert_label_smoothing(0.8, "off_target", num_classes=4)
    with pytest.raises(ValueError, match="delta must be >= 0"):
        convert_label_smoothing(-0.1, "pytorch", num_classes=4)


def test_traced_check_of_delta():
    ce = ClassificationUFM(LABELS, K, 1e-2, 1e-2, D, loss="ce")
    mse = ClassificationUFM(LABELS, K, 1e-2, 1e-2, K, loss="mse")
    valid = jax.jit(lambda p, d: p.replace(label_smoothing=d).valid())
    assert [bool(valid(ce, d)) for d in (0.0, 0.5, 1.0, -0.1)] == [True, True, False, False]
    assert [bool(valid(mse, d)) for d in (0.0, 0.1)] == [True, False]
