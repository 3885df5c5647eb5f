"""Test configuration: float64 once for the whole suite, hypothesis profile, shared helpers."""

import gc
import os

import jax
import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

jax.config.update("jax_enable_x64", True)
# In-process CLI calls must not switch on the persistent compilation cache (a global JAX
# setting) or write to the user's cache; tests of the cache unset this themselves.
os.environ.setdefault("UFM_NO_COMPILE_CACHE", "1")

settings.register_profile(
    "ufm",
    deadline=None,
    max_examples=12,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,
)
settings.load_profile("ufm")


def random_targets(rng: np.random.Generator, M: int, n: int, rank: int | None = None, shift=1.0):
    """Targets ``Y = Z B^T + mu`` with a random covariance of the given rank (default n)."""
    k = n if rank is None else rank
    B = rng.normal(size=(n, k)) / np.sqrt(k)
    return rng.normal(size=(M, k)) @ B.T + shift * rng.normal(size=n)


def lambdas_for_regime(eigs: np.ndarray, regime: str, ratio: float):
    """``(lambda_H, lambda_W)`` with ``lambda_H / lambda_W = ratio`` and ``c = lambda_H lambda_W``
    placed in ``regime``: below the smallest positive eigenvalue, between two eigenvalues with a
    clear gap (a rank drop), or above the largest (the zero solution)."""
    lam = np.sort(eigs)[::-1]
    pos = lam[lam > 1e-9 * lam[0]]
    if regime == "below":
        c = 0.5 * pos[-1]
    elif regime == "above":
        c = 2.0 * lam[0]
    else:
        gaps = [i for i in range(len(pos) - 1) if pos[i] > 1.5 * pos[i + 1]]
        i = gaps[0] if gaps else 0
        c = np.sqrt(pos[i] * pos[i + 1]) if gaps else 0.5 * pos[0]
    lam_W = np.sqrt(c / ratio)
    return ratio * lam_W, lam_W


@st.composite
def regression_problems(draw, max_n=4, max_d=6, max_M=40, ratios=(0.2, 1.0, 5.0)):
    """Random regression UFMs: sizes (n > d included), rank-deficient covariances, bias on or
    off, and c = lambda_H lambda_W below, between or above the eigenvalues."""
    import ufm

    n = draw(st.integers(1, max_n))
    d = draw(st.integers(1, max_d))
    M = draw(st.integers(6, max_M))
    rank = draw(st.integers(1, n))  # rank < n: rank-deficient Sigma
    regime = draw(st.sampled_from(("below", "between", "above")))
    ratio = draw(st.sampled_from(ratios))
    bias = draw(st.booleans())
    Y = random_targets(np.random.default_rng(draw(st.integers(0, 2**16))), M, n, rank)
    _, S = ufm.RegressionUFM(Y, 1.0, 1.0, d, bias=bias).target_moments()
    lH, lW = lambdas_for_regime(np.linalg.eigvalsh(np.asarray(S)), regime, ratio)
    return ufm.RegressionUFM(Y, lH, lW, d, bias=bias)


class CompileCounter:
    """Counts XLA compilations (JAX's monitoring events) while active."""

    EVENT = "/jax/core/compile/backend_compile_duration"

    def __enter__(self):
        self.count = 0

        def listener(name, duration, **kwargs):
            if name == self.EVENT:
                self.count += 1

        self._listener = listener
        jax.monitoring.register_event_duration_secs_listener(listener)
        return self

    def __exit__(self, *exc):
        jax.monitoring.unregister_event_duration_listener(self._listener)


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Drop JAX's compiled executables after every test module. One process compiles
    thousands of programs over the suite; each holds memory maps, and a full run crashed inside
    an XLA compile (segfault) late in the suite while the same module passed on its own."""
    yield
    jax.clear_caches()
    gc.collect()
