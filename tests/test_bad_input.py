"""The bad-input catalogue: what a careless but realistic user passes, and what happens.

Every case asserts the exact exception type and a message that names the argument (a regex),
raised before any work; or, for values that are traced under ``jax.vmap`` and cannot raise, the
exact non-successful ``Status``. The classes: inputs silently reinterpreted (complex numbers,
low-precision floats, labels beyond int32, a number ``bias`` on a problem without a
regularised bias), sizes that cannot fit in memory, and errors that would otherwise come from
deep inside JAX or numpy without naming the argument.

Ids start with the function under test (``solve-``, ``deep-``, ``metrics-``, ...); the
``shared-check-`` cases call the shared checks of ``ufm/_validate.py`` directly.
The command line has its own catalogue in ``tests/test_bad_input_cli.py``.
"""

import functools
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import theory
import ufm
from ufm import _validate, metrics
from ufm._validate import labels_array

Y = np.random.default_rng(0).normal(size=(6, 2))
LABELS = np.array([0, 1, 2, 0, 1, 2])
BIG = 2**32 + 1  # wraps to 1 when cast to int32


def reg(**kw):
    args = dict(targets=Y, lambda_H=0.1, lambda_W=0.1, feature_dim=3)
    args.update(kw)
    return ufm.RegressionUFM(**args)


def cls(**kw):
    args = dict(labels=LABELS, num_classes=3, lambda_H=0.1, lambda_W=0.1, feature_dim=4)
    args.update(kw)
    return ufm.ClassificationUFM(**args)


def deep(**kw):
    args = dict(targets=Y, lambda_H=0.1, lambda_W=0.1, widths=[4, 4])
    args.update(kw)
    return ufm.DeepUFM(**args)


def deep_labels(**kw):
    args = dict(labels=LABELS, num_classes=3, lambda_H=0.1, lambda_W=0.1, widths=[4])
    args.update(kw)
    return ufm.DeepUFM.from_labels(**args)


def solve(**kw):
    return ufm.solve(reg(), **kw)


def convert(lambda_H=1e-3, lambda_W=1e-3, convention="element_mean", **kw):
    args = dict(num_samples=10, target_dim=3)
    args.update(kw)
    return ufm.convert_lambdas(lambda_H, lambda_W, convention, **args)


def solution():
    """A Solution of ``reg()``'s shapes, made by hand (``theory.compare`` checks its arguments
    before any work, so no solve is needed)."""
    params = ufm.Params(jnp.ones((6, 3)), jnp.ones((2, 3)), jnp.zeros(2))
    zero = jnp.zeros(())
    return ufm.Solution(params, zero, zero, jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32))


def masked():
    return np.ma.masked_array(Y, mask=np.eye(6, 2, dtype=bool))


def case(call, exc, match, id):
    return pytest.param(call, exc, match, id=id)


CONSTRUCTORS = [
    # -- RegressionUFM: inputs silently reinterpreted, errors that did not name the argument
    case(
        lambda: reg(targets=Y + 1j),
        TypeError,
        r"targets must be real.*complex",
        "regression-targets-complex",
    ),
    case(
        lambda: reg(targets=Y.astype(np.float16)),
        TypeError,
        r"targets has dtype float16.*float32 or float64",
        "regression-targets-float16",
    ),
    case(
        lambda: reg(targets=jnp.asarray(Y, jnp.bfloat16)),
        TypeError,
        r"targets has dtype bfloat16.*float32 or float64",
        "regression-targets-bfloat16",
    ),
    case(
        lambda: reg(targets=np.array([["a", "b"], ["c", "d"]])),
        TypeError,
        r"targets must hold real numbers, got dtype <U1",
        "regression-targets-strings",
    ),
    case(
        lambda: reg(targets=np.array([[1.0, None], [2.0, 3.0]])),
        TypeError,
        r"targets must hold real numbers, got dtype object",
        "regression-targets-object",
    ),
    case(
        lambda: reg(targets=None),
        TypeError,
        r"targets must be a real number or array",
        "regression-targets-none",
    ),
    case(
        lambda: reg(targets=[[1.0, 2.0], [3.0]]),
        TypeError,
        r"targets must be a rectangular array",
        "regression-targets-ragged",
    ),
    case(
        lambda: reg(targets=masked()),
        TypeError,
        r"targets is a masked array",
        "regression-targets-masked",
    ),
    case(
        lambda: reg(targets=np.zeros((6, 0))),
        ValueError,
        r"targets must have at least one column",
        "regression-targets-no-columns",
    ),
    case(
        lambda: reg(lambda_H="0.1"),
        TypeError,
        r"lambda_H must be a real number",
        "regression-lambda-string",
    ),
    case(
        lambda: reg(lambda_H=None),
        TypeError,
        r"lambda_H must be a real number",
        "regression-lambda-none",
    ),
    case(
        lambda: reg(lambda_W=0.1 + 0.1j),
        TypeError,
        r"lambda_W must be real, got complex",
        "regression-lambda-complex",
    ),
    case(
        lambda: reg(lambda_H=True),
        TypeError,
        r"lambda_H must be a real number, not a bool",
        "regression-lambda-bool",
    ),
    case(
        lambda: reg(lambda_H=np.inf),
        ValueError,
        r"lambda_H must be a finite number >= 0, got inf",
        "regression-lambda-inf",
    ),
    case(
        lambda: reg(targets=Y.astype(np.float32), lambda_W=1e-60),
        ValueError,
        r"lambda_W = 1e-60 is not representable in float32",
        "regression-lambda-underflows-float32",
    ),
    case(
        lambda: reg(targets=Y.astype(np.float32), lambda_H=1e60),
        ValueError,
        r"lambda_H = 1e\+60 is not representable in float32",
        "regression-lambda-overflows-float32",
    ),
    case(
        lambda: reg(feature_dim=10**12),
        ValueError,
        r"feature_dim = 1000000000000 is too large.*needs [\d.e+]+ GB.*GB of .*available",
        "regression-feature-dim-1e12-memory",
    ),
    case(
        lambda: reg(feature_dim="4"),
        TypeError,
        r"feature_dim must be an int >= 1, got '4'",
        "regression-feature-dim-string",
    ),
    case(
        lambda: reg(feature_dim=4.0),
        TypeError,
        r"feature_dim must be an int >= 1, got 4.0",
        "regression-feature-dim-float",
    ),
    case(
        lambda: reg(feature_dim=True),
        TypeError,
        r"feature_dim must be an int >= 1, got the bool",
        "regression-feature-dim-bool",
    ),
    case(
        lambda: reg(bias=1),
        ValueError,
        r"bias must be 'none' or 'free' .*got 1: RegressionUFM has no regularised bias",
        "regression-bias-int",
    ),
    # -- ClassificationUFM
    case(
        lambda: cls(labels=np.array([0, 1, 2, BIG])),
        ValueError,
        r"labels must lie in \[0, num_classes\) = \[0, 3\), got values in \[0, 4294967297\]",
        "classification-label-beyond-int32",
    ),
    case(
        lambda: cls(labels=np.array(list("abcabc"))),
        TypeError,
        r"labels must be integers.*dtype <U1",
        "classification-labels-strings",
    ),
    case(
        lambda: cls(labels=None),
        TypeError,
        r"labels must be a real number or array",
        "classification-labels-none",
    ),
    case(
        lambda: cls(labels=[0, 1, None]),
        TypeError,
        r"labels must be integers.*dtype object",
        "classification-labels-none-entry",
    ),
    case(
        lambda: cls(labels=np.array([True, False, True])),
        TypeError,
        r"labels must be integers.*dtype bool",
        "classification-labels-bool",
    ),
    case(
        lambda: cls(labels=LABELS + 0j),
        TypeError,
        r"labels must be integers.*complex",
        "classification-labels-complex",
    ),
    case(
        lambda: cls(num_classes="3"),
        TypeError,
        r"num_classes must be an int >= 2, got '3'",
        "classification-num-classes-string",
    ),
    case(
        lambda: cls(num_classes=10**12),
        ValueError,
        r"num_classes = 1000000000000 exceeds the number of samples N = 6 in labels",
        "classification-num-classes-huge",
    ),
    case(
        lambda: cls(dtype="float16"),
        TypeError,
        r"dtype must be float32 or float64, got float16",
        "classification-dtype-float16",
    ),
    case(
        lambda: cls(dtype="int32"),
        TypeError,
        r"dtype must be float32 or float64, got int32",
        "classification-dtype-int",
    ),
    case(
        lambda: cls(dtype="fp64"),
        TypeError,
        r"dtype must be float32 or float64, got 'fp64'",
        "classification-dtype-unknown",
    ),
    case(
        lambda: cls(bias="true"),
        ValueError,
        r"bias must be 'none', 'free' or a number lambda_b >= 0 .*got 'true'",
        "classification-bias-string-true",
    ),
    case(
        lambda: cls(bias=np.array([0.5, 0.5])),
        ValueError,
        r"bias \(lambda_b\) must be",
        "classification-bias-array",
    ),
    case(
        lambda: cls(bias=None),
        TypeError,
        r"bias must be 'none', 'free' or a number",
        "classification-bias-none",
    ),
    case(
        lambda: cls(bias="0.5"),
        ValueError,
        r"bias must be 'none', 'free' or a number.*got '0.5'",
        "classification-bias-numeric-string",
    ),
    case(
        lambda: cls(bias=np.nan),
        ValueError,
        r"bias \(lambda_b\) must be a finite number >= 0, got nan",
        "classification-bias-nan",
    ),
    case(
        lambda: cls(bias=1 + 1j),
        TypeError,
        r"bias \(lambda_b\) must be real",
        "classification-bias-complex",
    ),
    case(
        lambda: cls(loss=None),
        ValueError,
        r"loss must be one of \('mse', 'ce'\), got None",
        "classification-loss-none",
    ),
    case(
        lambda: cls(lambda_W=np.array([0.1, 0.2])),
        ValueError,
        r"lambda_W must be a scalar, got shape \(2,\)",
        "classification-lambda-vector",
    ),
    case(
        lambda: cls(feature_dim=10**12),
        ValueError,
        r"feature_dim = 1000000000000 is too large.*one-hot targets.*GB",
        "classification-feature-dim-1e12-memory",
    ),
    # -- DeepUFM (its own checks; targets and lambdas go through _validate)
    case(
        lambda: deep(widths=[]),
        ValueError,
        r"widths must hold at least one layer",
        "deep-widths-empty",
    ),
    case(
        lambda: deep(widths=[4, 0]),
        ValueError,
        r"widths\[1\] must be an int >= 1, got 0",
        "deep-width-zero",
    ),
    case(
        lambda: deep(widths="44"),
        TypeError,
        r"widths must be a sequence of ints",
        "deep-widths-string",
    ),
    case(
        lambda: deep(lambda_W=[0.1, 0.1, 0.1]),
        ValueError,
        r"lambda_W must be a scalar or one value per layer.*\(2,\)",
        "deep-lambda-W-wrong-length",
    ),
    case(
        lambda: deep(lambda_W=[0.1, -1.0]),
        ValueError,
        r"lambda_W\[1\] must be a finite number >= 0",
        "deep-lambda-W-negative-entry",
    ),
    case(
        lambda: deep(activation="tanh"),
        ValueError,
        r"activation must be one of",
        "deep-activation-unknown",
    ),
    case(
        lambda: deep(targets=Y + 1j),
        TypeError,
        r"targets must be real.*complex",
        "deep-targets-complex",
    ),
    case(
        lambda: deep(targets=Y.astype(np.float16)),
        TypeError,
        r"targets has dtype float16",
        "deep-targets-float16",
    ),
    case(
        lambda: deep(dtype="float16"),
        TypeError,
        r"dtype must be float32 or float64",
        "deep-dtype-float16",
    ),
    case(
        lambda: deep(lambda_H="0.1"),
        TypeError,
        r"lambda_H must be a real number",
        "deep-lambda-string",
    ),
    case(
        lambda: deep(bias="yes"),
        ValueError,
        r"bias must be 'none' or 'free' .*got 'yes'",
        "deep-bias-string",
    ),
    case(
        lambda: deep(bias=0.5),
        ValueError,
        r"bias must be 'none' or 'free' .*got 0.5: DeepUFM has no regularised bias",
        "deep-bias-number",
    ),
    case(
        lambda: deep_labels(labels=np.array([0, 1, 2, BIG]), num_classes=3),
        ValueError,
        r"labels must lie in \[0, num_classes\)",
        "deep-from-labels-beyond-int32",
    ),
    case(
        lambda: deep_labels(labels=np.array(list("abcabc"))),
        TypeError,
        r"labels must be integers",
        "deep-from-labels-strings",
    ),
    case(
        lambda: deep_labels(labels=[0, None, 1], num_classes=2),
        TypeError,
        r"labels must be integers",
        "deep-from-labels-none-entry",
    ),
    case(
        lambda: deep_labels(labels=LABELS[None]),
        ValueError,
        r"labels must be a 1-D integer array",
        "deep-from-labels-2d",
    ),
    case(lambda: deep(widths=[4, 10**12]), ValueError, r"10+ .*GB", "deep-width-1e12-memory"),
    case(
        lambda: deep(lambda_H=True),
        TypeError,
        r"lambda_H must be a real number, not a bool",
        "deep-lambda-bool",
    ),
]

SOLVE = [
    case(
        lambda: ufm.solve(np.zeros((3, 3))),
        TypeError,
        r"problem must be a ufm problem",
        "solve-problem-array",
    ),
    case(
        lambda: ufm.solve(ufm.stack([reg(), reg()])),
        ValueError,
        r"problem is batched",
        "solve-problem-batched",
    ),
    case(
        lambda: solve(solver="newton"), ValueError, r"solver must be one of", "solve-solver-unknown"
    ),
    case(
        lambda: solve(max_steps=2.5),
        TypeError,
        r"max_steps must be an int >= 0",
        "solve-max-steps-float",
    ),
    case(
        lambda: solve(max_steps=-1),
        ValueError,
        r"max_steps must be an int >= 0, got -1",
        "solve-max-steps-negative",
    ),
    case(
        lambda: solve(restarts=0),
        ValueError,
        r"restarts must be an int >= 1",
        "solve-restarts-zero",
    ),
    case(
        lambda: solve(record=lambda p: {}),
        ValueError,
        r"record must be a callable.*needs record_every",
        "solve-record-without-record-every",
    ),
    case(lambda: solve(atol=np.nan), ValueError, r"atol must be >= 0", "solve-atol-nan"),
    case(lambda: solve(rtol=np.ones(2)), ValueError, r"rtol must be a scalar", "solve-rtol-vector"),
    case(
        lambda: solve(init=ufm.Params(Y @ np.ones((2, 3)) + 1j, np.ones((2, 3)), np.zeros(2))),
        TypeError,
        r"init.H must be real.*complex",
        "solve-init-complex",
    ),
    case(lambda: solve(init={"H": 0}), TypeError, r"init must be a ufm.Params", "solve-init-dict"),
    case(
        lambda: solve(init=ufm.Params(np.ones((6, 4)), np.ones((2, 3)), np.zeros(2))),
        ValueError,
        r"init.H must have shape",
        "solve-init-wrong-shape",
    ),
    case(
        lambda: solve(key=0),
        TypeError,
        r"key must be a PRNG key.*got 0 of type int",
        "solve-key-int",
    ),
    case(
        lambda: solve(key=jnp.ones(2)),
        TypeError,
        r"key must be a PRNG key.*dtype float",
        "solve-key-float-array",
    ),
    case(
        lambda: solve(key=np.zeros(3, np.uint32)),
        TypeError,
        r"key must be a PRNG key.*shape \(3,\)",
        "solve-key-wrong-shape",
    ),
    case(
        lambda: solve(key=jax.random.split(jax.random.PRNGKey(0), 3)),
        ValueError,
        r"key must be a single PRNG key",
        "solve-key-batch",
    ),
    case(
        lambda: solve(rtol="1e-8"),
        TypeError,
        r"rtol must be a real number",
        "solve-rtol-string",
    ),
    case(
        lambda: solve(rtol=True),
        TypeError,
        r"rtol must be a real number, not a bool",
        "solve-rtol-bool",
    ),
    case(
        lambda: solve(atol=np.inf),
        ValueError,
        r"atol must be >= 0 and finite, got inf",
        "solve-atol-inf",
    ),
]

THEORY = [
    case(
        lambda: theory.classification.optimum(3, 2, 0.1, 0.1, bias="True"),
        ValueError,
        r"bias must be 'none', 'free' or a number.*got 'True'",
        "theory-classification-bias-string-true",
    ),
    case(
        lambda: theory.classification.optimum(3, 2, 0.1, 0.1, bias=None),
        TypeError,
        r"bias must be 'none', 'free' or a number.*got None",
        "theory-classification-bias-none",
    ),
    case(
        lambda: theory.classification.optimum(3.0, 2, 0.1, 0.1),
        TypeError,
        r"num_classes must be an int >= 2, got 3.0",
        "theory-classification-num-classes-float",
    ),
    case(
        lambda: theory.classification.optimum(3, 0, 0.1, 0.1),
        ValueError,
        r"per_class must be an int >= 1, got 0",
        "theory-classification-per-class-zero",
    ),
    case(
        lambda: theory.classification.optimum(3, 2, 0.0, 0.1),
        ValueError,
        r"lambda_H must be > 0 for a closed-form optimum",
        "theory-classification-lambda-zero",
    ),
    case(
        lambda: theory.classification.optimum(3, 2, 0.1, "0.1"),
        TypeError,
        r"lambda_W must be a real number",
        "theory-classification-lambda-string",
    ),
    case(
        lambda: theory.classification.optimum(3, 2, 0.1, 0.1, dtype=np.float16),
        TypeError,
        r"dtype must be float32 or float64",
        "theory-classification-dtype-float16",
    ),
    case(
        lambda: theory.classification.optimum(3, 2, 0.1, 0.1, loss=["ce"]),
        ValueError,
        r"loss must be 'mse' or 'ce'",
        "theory-classification-loss-list",
    ),
    case(
        lambda: theory.classification.optimum_of(reg()),
        TypeError,
        r"problem must be a ufm.ClassificationUFM, got RegressionUFM",
        "theory-classification-optimum-of-wrong-problem",
    ),
    case(
        lambda: theory.regression.optimum(Y + 1j, 0.1, 0.1, 3),
        TypeError,
        r"targets must be real.*complex",
        "theory-regression-targets-complex",
    ),
    case(
        lambda: theory.regression.optimum_of(cls()),
        TypeError,
        r"problem must be a ufm.RegressionUFM, got ClassificationUFM",
        "theory-regression-optimum-of-wrong-problem",
    ),
    case(
        lambda: theory.regression.zero_regularisation_check(Y, "5"),
        TypeError,
        r"feature_dim must be an int >= 1",
        "theory-zero-check-feature-dim-string",
    ),
    case(
        lambda: theory.regression.zero_regularisation_check(Y, 5, key=0),
        TypeError,
        r"key must be a PRNG key",
        "theory-zero-check-key-int",
    ),
    case(
        lambda: theory.compare(reg(), solution()),
        TypeError,
        r"solution must be a ufm.Solution.*order is compare\(solution, problem\)",
        "theory-compare-swapped-arguments",
    ),
    case(
        lambda: theory.compare(solution(), reg(targets=Y[:4])),
        ValueError,
        r"solution.params.H must have shape \(N, d\) = \(4, 3\)",
        "theory-compare-other-problem-size",
    ),
    case(
        lambda: theory.compare(solution(), reg(feature_dim=5)),
        ValueError,
        r"solution.params.H must have shape \(N, d\) = \(6, 5\)",
        "theory-compare-other-feature-dim",
    ),
    case(
        lambda: theory.compare(solution(), deep()),
        TypeError,
        r"solution.params must be ufm.DeepParams\(H, Ws, b\) for a ufm.DeepUFM, got Params",
        "theory-compare-deep-problem-one-layer-solution",
    ),
    case(
        lambda: theory.compare(solution(), ufm.stack([reg(), reg()])),
        ValueError,
        r"problem is batched",
        "theory-compare-batched-problem",
    ),
    case(
        lambda: theory.compare(solution(), metrics),
        TypeError,
        r"problem must be a ufm.RegressionUFM, ufm.ClassificationUFM or ufm.DeepUFM",
        "theory-compare-not-a-problem",
    ),
    case(
        lambda: theory.compare(
            jax.tree_util.tree_map(lambda x: jnp.stack([x, x]), solution()), reg()
        ),
        ValueError,
        r"compare takes one solution",
        "theory-compare-batched-solution",
    ),
]

CONVERT = [
    case(
        lambda: convert(lambda_H=[1e-3, 2e-3]),
        TypeError,
        r"lambda_H must be a real number.*list.*np.asarray",
        "convert-lambdas-list",
    ),
    case(
        lambda: convert(lambda_W="1e-3"),
        TypeError,
        r"lambda_W must be a real number.*str",
        "convert-lambdas-string",
    ),
    case(
        lambda: convert(lambda_H=1j),
        TypeError,
        r"lambda_H must be a real number",
        "convert-lambdas-complex",
    ),
    case(
        lambda: convert(lambda_H=np.array([1e-3, 1j])),
        TypeError,
        r"lambda_H must be real, got complex",
        "convert-lambdas-complex-array",
    ),
    case(
        lambda: convert(lambda_H=-1e-3),
        ValueError,
        r"lambda_H must be >= 0",
        "convert-lambdas-negative",
    ),
    case(
        lambda: convert(lambda_W=np.nan),
        ValueError,
        r"lambda_W must be finite",
        "convert-lambdas-nan",
    ),
    case(
        lambda: convert(num_samples=10.0),
        TypeError,
        r"num_samples must be an int >= 1, got 10.0",
        "convert-num-samples-float",
    ),
    case(
        lambda: convert(target_dim=0),
        ValueError,
        r"target_dim must be an int >= 1, got 0",
        "convert-target-dim-zero",
    ),
    case(
        lambda: convert(convention=5),
        TypeError,
        r"convention must be one of .* or a ufm.Convention, got 5",
        "convert-convention-int",
    ),
    case(
        lambda: convert(convention=["no_half"]),
        TypeError,
        r"convention must be one of",
        "convert-convention-list",
    ),
    case(
        lambda: convert(to=None),
        ValueError,
        r"to must be 'regression', 'classification' or 'deep', got None",
        "convert-to-none",
    ),
    case(
        lambda: convert(
            convention=ufm._normalisation.Convention(
                lambda M, n: 0.0, lambda M, n: 1.0, lambda M, n: 1.0
            )
        ),
        ValueError,
        r"convention .*data coefficient.*must be a finite number > 0",
        "convert-convention-zero-coefficient",
    ),
]

METRICS = [
    case(
        lambda: metrics.nc1(np.ones((6, 4)) + 1j, LABELS, 3),
        TypeError,
        r"\bH must be real",
        "metrics-nc1-features-complex",
    ),
    case(
        lambda: metrics.nc1(np.ones((6, 4)), np.array([0, 1, 2, 0, 1, BIG]), 3),
        ValueError,
        r"labels must lie in",
        "metrics-nc1-label-beyond-int32",
    ),
    case(
        lambda: metrics.nc1(np.ones((6, 4)), np.array(list("abcabc")), 3),
        TypeError,
        r"labels must be integers",
        "metrics-nc1-labels-strings",
    ),
    case(
        lambda: metrics.nc4(np.ones((6, 4)), np.ones((2, 4)), None, LABELS, 3),
        ValueError,
        r"\bW must have shape \(K, d\) = \(3, 4\)",
        "metrics-nc4-head-rows",
    ),
    case(
        lambda: metrics.nc1(np.ones((6, 4), np.float16), LABELS, 3),
        TypeError,
        r"\bH\b.*float16",
        "metrics-nc1-features-float16",
    ),
]


# The shared checks called directly, with the messages the ``solve-`` and ``deep-`` cases above
# expect from them.
SHARED = [
    case(
        lambda: _validate.check_key(0),
        TypeError,
        r"key must be a PRNG key.*got 0 of type int",
        "shared-check-key-int",
    ),
    case(
        lambda: _validate.check_key(jnp.ones(2)),
        TypeError,
        r"key must be a PRNG key.*dtype float",
        "shared-check-key-float-array",
    ),
    case(
        lambda: _validate.check_key(np.zeros(3, np.uint32)),
        TypeError,
        r"key must be a PRNG key.*shape \(3,\)",
        "shared-check-key-wrong-shape",
    ),
    case(
        lambda: _validate.check_key(jax.random.split(jax.random.PRNGKey(0), 3)),
        ValueError,
        r"key must be a single PRNG key",
        "shared-check-key-batch",
    ),
    case(
        lambda: _validate.check_key(jax.random.split(jax.random.key(0), 3)),
        ValueError,
        r"key must be a single PRNG key",
        "shared-check-key-typed-batch",
    ),
    case(
        lambda: _validate.check_tolerance("1e-8", "rtol", np.float64),
        TypeError,
        r"rtol must be a real number",
        "shared-check-tolerance-string",
    ),
    case(
        lambda: _validate.check_tolerance(True, "rtol", np.float64),
        TypeError,
        r"rtol must be a real number, not a bool",
        "shared-check-tolerance-bool",
    ),
    case(
        lambda: _validate.check_tolerance(np.inf, "atol", np.float64),
        ValueError,
        r"atol must be >= 0 and finite, got inf",
        "shared-check-tolerance-inf",
    ),
    case(
        lambda: _validate.check_tolerance(-1e-3, "atol", np.float64),
        ValueError,
        r"atol must be >= 0 and finite, got -0.001",
        "shared-check-tolerance-negative",
    ),
    case(
        lambda: labels_array(np.array(list("abcabc")), 3),
        TypeError,
        r"labels must be integers",
        "shared-labels-array-strings",
    ),
    case(
        lambda: labels_array([0, None, 1], 2),
        TypeError,
        r"labels must be integers",
        "shared-labels-array-none-entry",
    ),
    case(
        lambda: labels_array(LABELS[None], 3),
        ValueError,
        r"labels must be a 1-D integer array",
        "shared-labels-array-2d",
    ),
    case(
        lambda: _validate.check_lambda(True, "lambda_H"),
        TypeError,
        r"lambda_H must be a real number, not a bool",
        "shared-check-lambda-bool",
    ),
    case(
        lambda: _validate.check_memory([(6, 10**12)], np.float64, "widths[1] = 10**12"),
        ValueError,
        r"widths\[1\] = 10\*\*12: needs 4.8e\+04 GB in float64",
        "shared-check-memory",
    ),
    case(
        lambda: _validate.check_int(jnp.ones(()), "max_steps", minimum=0),
        TypeError,
        r"max_steps must be an int >= 0",
        "shared-check-int-float-array",
    ),
    case(
        lambda: _validate.positive_number("0.1", "lr"),
        TypeError,
        r"lr must be a real number > 0",
        "shared-positive-number-string",
    ),
]


@pytest.mark.parametrize(
    "call, exc, match", CONSTRUCTORS + SOLVE + THEORY + CONVERT + METRICS + SHARED
)
def test_bad_input_raises_naming_the_argument(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_catalogue_size():
    """At least 60 distinct, uniquely named cases (with the command line's)."""
    ids = [p.id for p in CONSTRUCTORS + SOLVE + THEORY + CONVERT + METRICS + SHARED]
    assert len(ids) == len(set(ids)) >= 60


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda: reg(feature_dim=np.int64(3)), id="regression-numpy-int-feature-dim"),
        pytest.param(lambda: reg(bias=np.True_), id="regression-numpy-bool-bias"),
        pytest.param(lambda: cls(bias=np.False_), id="classification-numpy-bool-bias"),
        pytest.param(lambda: cls(bias=True), id="classification-bool-bias"),
        pytest.param(
            lambda: theory.classification.optimum(3, 2, 0.1, 0.1, bias=True),
            id="theory-classification-bool-bias",
        ),
        pytest.param(lambda: reg(targets=Y.astype(np.int64)), id="regression-integer-targets"),
        pytest.param(
            lambda: cls(num_classes=np.int32(3), labels=LABELS.astype(np.uint8)),
            id="classification-numpy-ints",
        ),
        pytest.param(
            lambda: cls(bias=np.float32(0.5), dtype=np.float32), id="classification-numpy-lambda-b"
        ),
        pytest.param(
            lambda: theory.classification.optimum(np.int64(3), np.int64(2), 0.1, 0.1),
            id="theory-numpy-ints",
        ),
        pytest.param(
            lambda: convert(num_samples=np.int64(10), target_dim=np.int32(3)),
            id="convert-numpy-ints",
        ),
        pytest.param(lambda: convert(lambda_H=np.array([1e-3, 2e-3])), id="convert-lambda-array"),
        pytest.param(lambda: labels_array(jnp.asarray(LABELS), 3), id="labels-array-jax"),
        pytest.param(lambda: _validate.check_key(jax.random.key(0)), id="check-key-typed"),
        pytest.param(lambda: _validate.check_key(jax.random.PRNGKey(0)), id="check-key-raw"),
        pytest.param(lambda: _validate.check_key(np.zeros(2, np.uint32)), id="check-key-numpy"),
        pytest.param(lambda: _validate.check_int(np.asarray(3), "k"), id="check-int-0d-array"),
    ],
)
def test_valid_input_still_accepted(call):
    call()


def test_memory_message_says_needed_and_available(monkeypatch):
    """feature_dim = 10**8 fits some machines, not others: with 1 GB available it is refused,
    saying how much it needs (6 x 10**8 + 2 x 10**8 + 2 float64 numbers = 6.4 GB)."""
    monkeypatch.setattr(_validate, "available_memory", lambda: (10**9, "test memory"))
    with pytest.raises(
        ValueError,
        match=r"feature_dim = 100000000 .*needs 6.4 GB in float64, "
        r"more than the 1 GB of test memory available",
    ):
        reg(feature_dim=10**8)
    reg(feature_dim=10**6)  # 64 MB: fits


def test_available_memory_is_known_here():
    avail, where = _validate.available_memory()
    assert avail is not None and avail > 0 and where


def test_labels_array_checks_before_the_int32_cast():
    out = labels_array(np.array([2, 0, 1], np.int64), 3)
    assert out.dtype == jnp.int32 and out.tolist() == [2, 0, 1]
    with pytest.raises(ValueError, match=r"labels must have shape \(N,\) = \(4,\)"):
        labels_array(LABELS, 3, num_samples=4)
    with pytest.raises(ValueError, match=r"y must lie in \[0, num_classes\)"):
        labels_array(np.array([0, 1, BIG]), 3, "y")


@pytest.mark.slow
def test_bad_values_under_vmap_are_invalid_input_not_errors():
    """A negative or NaN lambda, or a label out of range, inside a vmapped sweep cannot raise:
    each instance reports ``Status.invalid_input`` (the valid one ``successful``). Momentum
    descent: the cheapest solver to compile."""
    p = reg()
    lams = jnp.array([0.1, -0.1, jnp.nan])
    momentum = optax.sgd(0.1, momentum=0.9)

    def status(lam):
        return ufm.solve(p.replace(lambda_H=lam), momentum, max_steps=2000, rtol=1e-6).status

    S = ufm.Status
    assert jax.vmap(status)(lams).tolist() == [S.successful, S.invalid_input, S.invalid_input]
    # Traced labels pass the constructor (labels_array skips value checks) and are caught by
    # valid(), which ufm.solve turns into Status.invalid_input as above.
    labels = jnp.stack([jnp.asarray(LABELS), jnp.asarray(LABELS).at[0].set(7)])
    assert jax.vmap(lambda y: cls(labels=y).valid())(labels).tolist() == [True, False]


_X32_SCRIPT = """
import json, numpy as np, jax, ufm
from ufm._validate import labels_array
assert not jax.config.jax_enable_x64
big = np.array([0, 1, 2, 2**32 + 1])  # 2**32 + 1 wraps to 1 in int32
calls = {
    "labels_array": lambda: labels_array(big, 3),
    "classification": lambda: ufm.ClassificationUFM(big, 3, 0.1, 0.1, 4),
    "deep-from-labels": lambda: ufm.DeepUFM.from_labels(big, 3, 0.1, 0.1, [4]),
    "metrics-nc1": lambda: ufm.metrics.nc1(np.ones((4, 2)), big, 3),
}
out = {}
for name, call in calls.items():
    try:
        call()
        out[name] = "accepted"
    except Exception as err:
        out[name] = f"{type(err).__name__}: {err}"
print(json.dumps(out))
"""


@functools.cache
def _x32_results():
    env = dict(os.environ, JAX_ENABLE_X64="0", JAX_PLATFORMS="cpu")
    r = subprocess.run(
        [sys.executable, "-c", _X32_SCRIPT], capture_output=True, text=True, env=env, timeout=120
    )
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize(
    "name", ["labels_array", "classification", "deep-from-labels", "metrics-nc1"]
)
def test_label_beyond_int32_refused_in_32_bit_mode(name):
    """Under JAX's default 32-bit mode a label 2**32 + 1 would wrap to the valid class 1."""
    got = _x32_results()[name]
    assert got.startswith("ValueError: labels must lie in [0, num_classes) = [0, 3)"), got
