"""RegressionUFM construction, validation, the objective's normalisation and converters."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import random_targets

import ufm


def _Y(M=20, n=3, seed=0):
    return random_targets(np.random.default_rng(seed), M, n)


def test_objective_matches_eq1_written_out():
    rng = np.random.default_rng(1)
    M, n, d = 17, 3, 5
    Y = _Y(M, n)
    H, W, b = rng.normal(size=(M, d)), rng.normal(size=(n, d)), rng.normal(size=n)
    lH, lW = 0.3, 0.7
    manual = (
        sum(np.sum((W @ H[i] + b - Y[i]) ** 2) for i in range(M)) / (2 * M)
        + lH / (2 * M) * np.sum(H**2)
        + lW / 2 * np.sum(W**2)
    )
    p = ufm.RegressionUFM(Y, lH, lW, d)
    assert float(p.objective(ufm.Params(H, W, b))) == pytest.approx(manual, rel=1e-13)
    p0 = ufm.RegressionUFM(Y, lH, lW, d, bias=False)
    manual0 = manual - (
        sum(np.sum((W @ H[i] + b - Y[i]) ** 2) - np.sum((W @ H[i] - Y[i]) ** 2) for i in range(M))
        / (2 * M)
    )
    assert float(p0.objective(ufm.Params(H, W, b))) == pytest.approx(manual0, rel=1e-13)


def test_target_moments_normalised_by_M():
    Y = _Y(30, 2)
    mean, S = ufm.RegressionUFM(Y, 1.0, 1.0, 4).target_moments()
    np.testing.assert_allclose(S, np.cov(Y.T, bias=True), rtol=1e-13)
    np.testing.assert_allclose(mean, Y.mean(0), rtol=1e-13)
    _, S0 = ufm.RegressionUFM(Y, 1.0, 1.0, 4, bias=False).target_moments()
    np.testing.assert_allclose(S0, Y.T @ Y / 30, rtol=1e-13)


def test_is_a_pytree_and_stacks():
    ps = [ufm.RegressionUFM(_Y(seed=s), 0.1 * (s + 1), 0.2, 4) for s in range(3)]
    batch = ufm.stack(ps)
    assert batch.targets.shape == (3, 20, 3) and batch.lambda_H.shape == (3,)
    assert batch.feature_dim == 4 and batch.bias is True
    leaves, tree = jax.tree_util.tree_flatten(ps[0])
    again = jax.tree_util.tree_unflatten(tree, leaves)
    assert again.feature_dim == 4 and float(again.lambda_H) == pytest.approx(0.1)
    out = jax.vmap(
        lambda p: p.objective(ufm.Params(jnp.zeros((20, 4)), jnp.zeros((3, 4)), jnp.zeros(3)))
    )(batch)
    assert out.shape == (3,)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(targets=np.zeros(5)), "targets must be a 2-D array of shape \\(M, n\\)"),
        (dict(targets=np.zeros((2, 3, 4))), "targets must be a 2-D array"),
        (dict(targets=np.zeros((1, 3))), "at least M = 2"),
        (dict(targets=np.array([[1.0, np.nan], [0.0, 1.0]])), "targets must be finite"),
        (dict(targets=np.array([[1.0, np.inf], [0.0, 1.0]])), "targets must be finite"),
        (dict(lambda_H=-0.1), "lambda_H must be a finite number >= 0, got -0.1"),
        (dict(lambda_W=-1.0), "lambda_W must be a finite number >= 0"),
        (dict(lambda_W=np.nan), "lambda_W must be a finite number >= 0"),
        (dict(lambda_H=np.ones(2)), "lambda_H must be a scalar"),
        (dict(feature_dim=0), "feature_dim must be an int >= 1"),
    ],
)
def test_bad_input_names_argument(kwargs, match):
    args = dict(targets=_Y(), lambda_H=0.1, lambda_W=0.1, feature_dim=4)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        ufm.RegressionUFM(**args)


def test_bad_types():
    with pytest.raises(TypeError, match="feature_dim must be an int"):
        ufm.RegressionUFM(_Y(), 0.1, 0.1, 2.5)
    with pytest.raises(ValueError, match="bias must be 'none' or 'free'.*got 'yes'"):
        ufm.RegressionUFM(_Y(), 0.1, 0.1, 2, bias="yes")
    with pytest.raises(TypeError, match="targets must be a real number or array of real numbers"):
        ufm.RegressionUFM("abc", 0.1, 0.1, 2)


def _bias_problems(bias):
    """One problem of each class with the bias setting ``bias``."""
    Y, y = _Y(12, 3), np.arange(12) % 3
    return [
        ufm.RegressionUFM(Y, 0.1, 0.2, 4, bias=bias),
        ufm.ClassificationUFM(y, 3, 0.1, 0.2, 4, bias=bias),
        ufm.DeepUFM(Y, 0.1, 0.2, (4, 4), "linear", bias=bias),
    ]


@pytest.mark.parametrize("alias, mode", [(True, "free"), (False, "none"), (np.True_, "free")])
def test_bias_is_one_setting_with_bool_aliases(alias, mode):
    """Every problem takes ``bias="none" | "free"`` (classification also a number lambda_b),
    with True/False as aliases: the alias and the string give the same problem (pytree
    structure and objective), read back as ``bias_mode`` and ``has_bias``."""
    for p, q in zip(_bias_problems(alias), _bias_problems(mode), strict=True):
        assert jax.tree_util.tree_structure(p) == jax.tree_util.tree_structure(q)
        assert p.bias_mode == q.bias_mode == mode
        assert p.has_bias is q.has_bias is (mode == "free")
        params = p.default_init(jax.random.PRNGKey(1))
        params = jax.tree_util.tree_map(lambda x: x + 0.3, params)  # a nonzero bias
        assert float(p.objective(params)) == float(q.objective(params))
        assert f"bias={mode!r}" in repr(p)
    reg, _, deep = _bias_problems(alias)
    assert reg.bias is deep.bias is (mode == "free")  # the attribute theory reads


def test_bias_number_only_where_regularised():
    """A number is ``lambda_b`` on the classification UFM and refused, naming ``bias``, on
    the problems without a regularised bias."""
    p = ufm.ClassificationUFM(np.arange(6) % 3, 3, 0.1, 0.1, 4, bias=0.5)
    assert p.bias_mode == "reg" and float(p.lambda_b) == 0.5 and p.has_bias
    for make in (
        lambda: ufm.RegressionUFM(_Y(), 0.1, 0.1, 2, bias=0.5),
        lambda: ufm.DeepUFM(_Y(), 0.1, 0.1, (2,), bias=0.5),
    ):
        with pytest.raises(ValueError, match="bias must be 'none' or 'free'.*no regularised bias"):
            make()
    for make in (
        lambda: ufm.RegressionUFM(_Y(), 0.1, 0.1, 2, bias=None),
        lambda: ufm.ClassificationUFM(np.arange(6) % 3, 3, 0.1, 0.1, 4, bias=None),
    ):
        with pytest.raises(TypeError, match="bias must be 'none'"):
            make()


def test_problem_interface_is_abstract():
    """``ufm.Problem`` declares what every problem provides: a subclass missing one of the
    abstract members cannot be instantiated; a leaf without its ``ndim`` is refused when the
    class is defined."""
    assert ufm.Problem.__abstractmethods__ == {
        "dtype",
        "default_init",
        "objective",
        "trajectory_metrics",
    }
    with pytest.raises(TypeError, match="abstract"):
        ufm.Problem()

    class NoObjective(ufm.Problem):
        dtype = jnp.float32

        def default_init(self, key):
            return jnp.zeros(2)

        def trajectory_metrics(self, params):
            return {}

    with pytest.raises(TypeError, match="objective"):
        NoObjective()
    with pytest.raises(TypeError, match="_ndims must give the ndim of every leaf"):

        class MissingNdim(ufm.Problem):
            _leaves = ("x",)

    for cls in (ufm.RegressionUFM, ufm.ClassificationUFM, ufm.DeepUFM):
        assert not cls.__abstractmethods__


def test_stack_rejects_mismatched():
    with pytest.raises(ValueError, match="share their type, feature_dim"):
        ufm.stack([ufm.RegressionUFM(_Y(), 1, 1, 2), ufm.RegressionUFM(_Y(), 1, 1, 3)])
    with pytest.raises(ValueError, match="equal array shapes"):
        ufm.stack([ufm.RegressionUFM(_Y(20), 1, 1, 2), ufm.RegressionUFM(_Y(21), 1, 1, 2)])


@pytest.mark.parametrize("convention", sorted(ufm.CONVENTIONS))
def test_converted_lambdas_give_proportional_objective(convention):
    """Their objective (written out from the convention's formula) = scale * ours, at random
    points, so both have the same minimisers."""
    rng = np.random.default_rng(3)
    M, n, d = 12, 3, 4
    Y = _Y(M, n)
    lH_, lW_ = 0.05, 0.2
    written = {
        "andriopoulos2024": lambda E, H, W: (
            np.sum(E**2) / (2 * M) + lH_ / (2 * M) * np.sum(H**2) + lW_ / 2 * np.sum(W**2)
        ),
        "element_mean": lambda E, H, W: (
            0.5 * np.mean(E**2) + lH_ / (2 * M) * np.sum(H**2) + lW_ / 2 * np.sum(W**2)
        ),
        "feature_penalty_sum": lambda E, H, W: (
            np.sum(E**2) / (2 * M) + lH_ / 2 * np.sum(H**2) + lW_ / 2 * np.sum(W**2)
        ),
        "no_half": lambda E, H, W: np.sum(E**2) / M + lH_ / M * np.sum(H**2) + lW_ * np.sum(W**2),
    }[convention]
    lH, lW, scale = ufm.convert_lambdas(lH_, lW_, convention, num_samples=M, target_dim=n)
    ours = ufm.RegressionUFM(Y, lH, lW, d)
    for _ in range(3):
        H, W, b = rng.normal(size=(M, d)), rng.normal(size=(n, d)), rng.normal(size=n)
        theirs = written(H @ W.T + b - Y, H, W)
        assert theirs == pytest.approx(scale * float(ours.objective(ufm.Params(H, W, b))), 1e-12)


def test_convert_to_classification_convention():
    """A paper writing lambda_H'/(2N) ||H||^2 (divided by N) maps to lambda_H = lambda_H'/N."""
    lH, lW, scale = ufm.convert_lambdas(
        0.4, 0.2, "andriopoulos2024", num_samples=40, target_dim=4, to="classification"
    )
    assert (lH, lW, scale) == (pytest.approx(0.01), pytest.approx(0.2), pytest.approx(1.0))
    # The objectives agree at a random point.
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 10)
    H, W, b = rng.normal(size=(40, 5)), rng.normal(size=(4, 5)), rng.normal(size=4)
    theirs = ufm.RegressionUFM(np.eye(4)[y], 0.4, 0.2, 5).objective(ufm.Params(H, W, b))
    ours = ufm.ClassificationUFM(y, 4, lH, lW, 5, bias="free").objective(ufm.Params(H, W, b))
    assert float(theirs) == pytest.approx(scale * float(ours), rel=1e-12)
    with pytest.raises(ValueError, match="to must be 'regression', 'classification' or 'deep'"):
        ufm.convert_lambdas(1, 1, "no_half", num_samples=4, target_dim=2, to="ce")


def test_convert_lambdas_known_maps_and_errors():
    assert ufm.convert_lambdas(1e-3, 2e-3, "element_mean", num_samples=10, target_dim=3)[:2] == (
        pytest.approx(3e-3),
        pytest.approx(6e-3),
    )
    assert ufm.convert_lambdas(1e-3, 2e-3, "feature_penalty_sum", num_samples=10, target_dim=3)[
        :2
    ] == (pytest.approx(1e-2), pytest.approx(2e-3))
    with pytest.raises(ValueError, match="convention must be one of"):
        ufm.convert_lambdas(1, 1, "sum", num_samples=10, target_dim=3)
    with pytest.raises(ValueError, match="num_samples must be an int >= 1"):
        ufm.convert_lambdas(1, 1, "no_half", num_samples=0, target_dim=3)
