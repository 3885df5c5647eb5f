"""Every matrix product that feeds a comparison with theory runs at full precision.

GPUs multiply float32 matrices in TF32 by default (about 1e-3 relative error), which would
break the documented float32 accuracy. ``ufm.solve``, ``ufm.sweep``, the metrics, the closed
forms and ``theory.compare`` trace their matrix products with ``precision=HIGHEST``; these
tests read the traced programs (on any backend), so they hold without a GPU. Float32 only:
the precision flag is what matters on accelerators, and the programs are the same.
"""

import jax
import jax.extend.core
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import theory
import ufm
from theory import _classification_reference, _reference, _regression_reference


def _dot_precisions(closed_jaxpr) -> list:
    """The ``precision`` of every ``dot_general`` in a jaxpr, sub-jaxprs (loops, conds, jits,
    custom derivatives) included."""
    found = []

    def walk(jaxpr):
        for eqn in jaxpr.eqns:
            if eqn.primitive.name == "dot_general":
                found.append(eqn.params["precision"])
            for sub in jax.extend.core.jaxprs_in_params(eqn.params):
                walk(sub)

    walk(closed_jaxpr.jaxpr)
    return found


def _assert_highest(fn, *args) -> int:
    precisions = _dot_precisions(jax.make_jaxpr(fn)(*args))
    assert precisions, "no matrix product traced: the test would prove nothing"
    highest = (jax.lax.Precision.HIGHEST, jax.lax.Precision.HIGHEST)
    bad = [p for p in precisions if p != highest]
    assert not bad, f"{len(bad)} of {len(precisions)} matrix products below HIGHEST: {bad[:3]}"
    return len(precisions)


@pytest.fixture(scope="module")
def problems():
    rng = np.random.default_rng(0)
    Y = rng.normal(size=(20, 3)).astype(np.float32)
    labels = np.repeat(np.arange(3), 4)
    return {
        "regression": ufm.RegressionUFM(Y, 0.1, 0.1, 6),
        "ce": ufm.ClassificationUFM(labels, 3, 0.01, 0.01, 6, "ce", "free", np.float32),
        "mse": ufm.ClassificationUFM(labels, 3, 0.01, 0.01, 6, "mse", "none", np.float32),
        "deep": ufm.DeepUFM.from_labels(labels, 3, 0.01, 0.01, (5, 4), "relu", dtype=np.float32),
    }


@pytest.mark.parametrize(
    "kind, solver",
    [("regression", "exact"), ("mse", "exact"), ("ce", "lbfgs"), ("deep", "adam")],
)
def test_solve_traces_full_precision(problems, kind, solver):
    problem = problems[kind]
    if solver == "adam":
        solver = optax.adam(1e-2)
    _assert_highest(lambda: ufm.solve(problem, solver, max_steps=3))


def test_user_jit_and_vmap_keep_full_precision(problems):
    """The precision is recorded at trace time, so it holds inside a caller's jit and vmap."""
    problem = problems["regression"]
    lams = jnp.asarray([0.1, 0.2], jnp.float32)

    def many(lams):
        return jax.vmap(lambda lam: ufm.solve(problem.replace(lambda_H=lam), "lbfgs").loss)(lams)

    _assert_highest(jax.jit(many), lams)


def test_metrics_and_closed_forms_trace_full_precision(problems):
    reg, ce = problems["regression"], problems["ce"]
    H = jnp.ones((20, 6), jnp.float32) + jnp.arange(6.0, dtype=jnp.float32)
    W = jnp.arange(18.0, dtype=jnp.float32).reshape(3, 6)
    y = ce.labels
    _assert_highest(lambda: ufm.metrics.nrc1(H, 3))
    _assert_highest(lambda: ufm.metrics.nrc2(H, W))
    _assert_highest(lambda: ufm.metrics.nrc3(W, reg.targets, 0.01))
    Hc = H[:12]
    _assert_highest(lambda: ufm.metrics.nc1(Hc, y, 3))
    _assert_highest(lambda: ufm.metrics.nc2(Hc, W, y, 3)["etf_means"])
    _assert_highest(lambda: ufm.metrics.nc4(Hc, W, jnp.zeros(3), y, 3))
    _assert_highest(lambda: ufm.metrics.deep_nc([Hc, Hc[:, :4]], y, 3)["nc1"])
    _assert_highest(lambda: theory.regression.optimum_of(reg).WWT)


def test_compare_traces_full_precision(problems):
    """What :func:`theory.compare` compiles, for a regression and a classification problem."""
    reg, mse = problems["regression"], problems["mse"]

    def params(p):
        N, n = p.targets.shape
        d = p.feature_dim
        return ufm.Params(jnp.ones((N, d)), jnp.ones((n, d)), jnp.ones(n))

    ref = _reference.reference_precision(reg)
    n_reg = _assert_highest(lambda P: _regression_reference.compare_numbers(ref, P), params(ref))
    ref = _reference.reference_precision(mse)
    n_cls = _assert_highest(
        lambda P: _classification_reference.compare_numbers(ref, P, 4, True), params(ref)
    )
    assert n_reg > 3 and n_cls > 3


@pytest.mark.slow
def test_sweep_runs_its_chunks_at_full_precision(problems, monkeypatch):
    """``ufm.sweep`` traces its chunks (its own ``n x n`` path included) under HIGHEST."""
    import ufm._sweep.api as sweep_module

    seen = []
    run_chunk = sweep_module.run_chunk

    def spy(*args, **kwargs):
        seen.append(jax.config.jax_default_matmul_precision)
        return run_chunk(*args, **kwargs)

    monkeypatch.setattr(sweep_module, "run_chunk", spy)
    table = ufm.sweep(problems["regression"], {"lambda_H": [0.1, 0.2]}, progress=False)
    assert len(table["loss"]) == 2
    assert seen and all(p == "highest" for p in seen)
