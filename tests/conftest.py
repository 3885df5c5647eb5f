"""Test configuration: float64 once for the whole suite, hypothesis profiles, shared helpers.

Hypothesis profiles, chosen by the environment variable ``UFM_HYPOTHESIS_PROFILE``:

- ``ci`` (the default): derandomised, so every run draws the same inputs, with
  ``max_examples=12`` per property test. The regimes that matter are forced with ``@example``
  in the tests themselves (collapse rank >= 2, ``n < d``, ``n = d``, ``n > d``, ``n = 1``, and
  ``c = lambda_H lambda_W`` below, between and above the eigenvalues), so the quick profile
  covers them whatever it draws.
- ``thorough``: random (a new seed every run), at least ``THOROUGH_EXAMPLES`` (300) examples per
  property test, for a maintainer before a release::

      UFM_HYPOTHESIS_PROFILE=thorough python -m pytest -k "not notebook"

  A failure prints the falsifying example and a ``@reproduce_failure`` blob, and is replayed
  from the local example database (``.hypothesis/``) on the next run.

Tests that set their own ``max_examples`` pass it through :func:`examples`, so the thorough
profile raises it too. The strategies draw values, not shapes: shapes come from short fixed
lists (:data:`REGRESSION_SHAPES`), so a property test compiles a handful of programs instead of
one per example.

The suite runs on two pytest-xdist workers (``-n 2 --dist loadfile`` in ``pyproject.toml``);
``python -m pytest -m "not slow"`` is the quick tier (no notebooks, subprocesses or the
slowest solves).
"""

import gc
import os
import shutil
import tempfile

import jax
import numpy as np
import pytest
from hypothesis import HealthCheck, example, settings
from hypothesis import strategies as st

jax.config.update("jax_enable_x64", True)
# In-process CLI calls must not switch on the command line's own compilation cache (a global
# JAX setting) or write to the user's cache; tests of that cache unset this themselves.
os.environ.setdefault("UFM_NO_COMPILE_CACHE", "1")

# Compiling dominates the suite's time (about 85% of it on a 2-core CPU), and most of a CPU
# compilation is LLVM optimising the generated code, which the tests' small programs do not
# need: the suite compiles with LLVM's optimisation level 0. XLA's HLO passes, fusion
# included, are unchanged and floating-point code is not reassociated, but the results can
# differ from an optimised build's in the last bits (e.g. where multiply-adds are fused), which
# every tolerance here absorbs; a test that compares two processes bit for bit passes these
# flags on. ``UFM_TEST_XLA_OPT=full`` tests the fully optimised backend that users get (a
# maintainer's run before a release); an ``XLA_FLAGS`` that already sets the level is kept.
# Set before JAX starts its backend, and inherited by every subprocess.
if os.environ.get("UFM_TEST_XLA_OPT", "") != "full":
    _flags = os.environ.get("XLA_FLAGS", "")
    if "xla_backend_optimization_level" not in _flags:
        os.environ["XLA_FLAGS"] = (_flags + " --xla_backend_optimization_level=0").strip()

# One JAX persistent compilation cache for the whole run, shared by the pytest-xdist workers and
# by every subprocess a test starts (the command line, the README's tour, the notebooks): a
# program compiled once anywhere in the run is loaded from disk everywhere else, also after
# the per-module clearing below. The directory is made by the process that starts the run (the
# xdist controller, or the only process with -n 0) before the workers start, handed to them
# and to subprocesses through JAX's own environment variables, and removed at the end, so
# every run starts cold. ``UFM_TEST_JAX_CACHE=0`` switches it off; a
# ``JAX_COMPILATION_CACHE_DIR`` set by the caller is used as it is and kept.
JAX_CACHE_ENV = ("JAX_COMPILATION_CACHE_DIR",)
_CACHE_SETTINGS = {
    "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
    "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "-1",
}
JAX_CACHE_ENV += tuple(_CACHE_SETTINGS)
_MADE_CACHE: list[str] = []


def pytest_configure(config):
    if os.environ.get("UFM_TEST_JAX_CACHE", "1") in ("", "0"):
        return
    if not hasattr(config, "workerinput") and not os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        path = tempfile.mkdtemp(prefix="ufm-tests-jax-cache-")
        _MADE_CACHE.append(path)
        os.environ["JAX_COMPILATION_CACHE_DIR"] = path
    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        for name, value in _CACHE_SETTINGS.items():
            os.environ.setdefault(name, value)
        jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
        jax.config.update(
            "jax_persistent_cache_min_compile_time_secs",
            float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]),
        )
        jax.config.update(
            "jax_persistent_cache_min_entry_size_bytes",
            int(os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"]),
        )


def pytest_unconfigure(config):
    for path in _MADE_CACHE:
        shutil.rmtree(path, ignore_errors=True)


def without_jax_cache(env: dict) -> dict:
    """``env`` without the run's JAX cache variables (:data:`JAX_CACHE_ENV`), for a subprocess
    that tests a compilation cache of its own."""
    return {k: v for k, v in env.items() if k not in JAX_CACHE_ENV}


THOROUGH_EXAMPLES = 300
_COMMON = dict(
    deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
settings.register_profile("ci", max_examples=12, derandomize=True, **_COMMON)
settings.register_profile(
    "thorough", max_examples=THOROUGH_EXAMPLES, derandomize=False, print_blob=True, **_COMMON
)
PROFILE = os.environ.get("UFM_HYPOTHESIS_PROFILE", "ci")
if PROFILE not in ("ci", "thorough"):
    raise ValueError(f"UFM_HYPOTHESIS_PROFILE must be 'ci' or 'thorough', got {PROFILE!r}")
settings.load_profile(PROFILE)


def examples(n: int) -> int:
    """``max_examples`` for a test that sets its own: ``n`` in the ``ci`` profile, at least
    ``THOROUGH_EXAMPLES`` in the ``thorough`` one."""
    return n if PROFILE == "ci" else max(n, THOROUGH_EXAMPLES)


def random_targets(rng: np.random.Generator, M: int, n: int, rank: int | None = None, shift=1.0):
    """Targets ``Y = Z B^T + mu`` with a random covariance of the given rank (default n)."""
    k = n if rank is None else rank
    B = rng.normal(size=(n, k)) / np.sqrt(k)
    return rng.normal(size=(M, k)) @ B.T + shift * rng.normal(size=n)


def lambdas_for_regime(eigs: np.ndarray, regime: str, ratio: float, gap: int = 0):
    """``(lambda_H, lambda_W)`` with ``lambda_H / lambda_W = ratio`` and ``c = lambda_H lambda_W``
    placed in ``regime``: below the smallest positive eigenvalue, between two eigenvalues with a
    clear gap (a rank drop; ``gap`` picks which of the clear gaps, from the top, clipped to the
    last), or above the largest (the zero solution)."""
    lam = np.sort(eigs)[::-1]
    pos = lam[lam > 1e-9 * lam[0]]
    if regime == "below":
        c = 0.5 * pos[-1]
    elif regime == "above":
        c = 2.0 * lam[0]
    else:
        gaps = [i for i in range(len(pos) - 1) if pos[i] > 1.5 * pos[i + 1]]
        i = gaps[min(gap, len(gaps) - 1)] if gaps else 0
        c = np.sqrt(pos[i] * pos[i + 1]) if gaps else 0.5 * pos[0]
    lam_W = np.sqrt(c / ratio)
    return ratio * lam_W, lam_W


# (M, n, d) of the regression property tests: n < d, n = d, n > d (the rank capped by d) and
# the scalar case n = 1. Few shapes, so that the solvers compile once per shape and bias.
REGRESSION_SHAPES = ((24, 3, 5), (18, 3, 3), (20, 4, 2), (10, 1, 3))
REGIMES = ("below", "between", "above")


def regression_case(shape, rank=None, regime="below", ratio=1.0, bias=True, seed=0, gap=0):
    """A regression UFM of ``shape = (M, n, d)`` whose targets have covariance rank ``rank``
    (default ``n``) and whose ``c = lambda_H lambda_W`` lies in ``regime`` (see
    :func:`lambdas_for_regime`); deterministic in its arguments (for ``@example``)."""
    import ufm

    M, n, d = shape
    Y = random_targets(np.random.default_rng(seed), M, n, rank)
    _, S = ufm.RegressionUFM(Y, 1.0, 1.0, d, bias=bias).target_moments()
    lH, lW = lambdas_for_regime(np.linalg.eigvalsh(np.asarray(S)), regime, ratio, gap)
    return ufm.RegressionUFM(Y, lH, lW, d, bias=bias)


@st.composite
def regression_problems(draw, shapes=REGRESSION_SHAPES, ratios=(0.2, 1.0, 5.0)):
    """Random regression UFMs over the fixed ``shapes``: rank-deficient covariances (rank from
    1 to n), bias on or off, and c = lambda_H lambda_W below, between or above the
    eigenvalues. The values vary freely; the shapes do not (no compilation per example)."""
    shape = draw(st.sampled_from(shapes))
    rank = draw(st.integers(1, shape[1]))  # rank < n: rank-deficient Sigma
    regime = draw(st.sampled_from(REGIMES))
    ratio = draw(st.sampled_from(ratios))
    bias = draw(st.booleans())
    seed = draw(st.integers(0, 2**16))
    gap = draw(st.integers(0, 2)) if regime == "between" else 0
    return regression_case(shape, rank, regime, ratio, bias, seed, gap)


# (shape, rank, regime, ratio, bias, seed, gap) of the regimes every regression property test
# checks whatever hypothesis draws; the comment gives the collapse rank of the optimum. They
# hold every shape of REGRESSION_SHAPES with and without a bias, so the drawn examples reuse
# their compiled programs.
REGRESSION_EXAMPLES = (
    ((24, 3, 5), 3, "below", 1.0, True, 0, 0),  # n < d, rank 3
    ((24, 3, 5), 3, "between", 1.0, False, 3, 1),  # a rank drop to 2
    ((18, 3, 3), 3, "below", 0.2, True, 1, 0),  # n = d, rank 3
    ((18, 3, 3), 2, "between", 5.0, False, 2, 0),  # rank-deficient targets, rank 1
    ((20, 4, 2), 4, "below", 1.0, False, 3, 0),  # n > d, rank capped at d = 2
    ((20, 4, 2), 3, "above", 1.0, True, 4, 0),  # the zero optimum
    ((10, 1, 3), 1, "below", 0.2, True, 5, 0),  # n = 1, rank 1
    ((10, 1, 3), 1, "above", 5.0, False, 5, 0),  # n = 1, the zero optimum
)
# The sizes the README's accuracy figures are stated for (the exact solver only).
LARGE_REGRESSION_EXAMPLES = (
    ((10_000, 3, 64), 3, "below", 1.0, True, 0, 0),  # rank 3
    ((10_000, 3, 256), 3, "between", 1.0, False, 3, 1),  # a rank drop
)


def regime_examples(*extra, large: bool = False):
    """Decorator: ``@example(problem, *extra)`` for every case of :data:`REGRESSION_EXAMPLES`
    (and of :data:`LARGE_REGRESSION_EXAMPLES` with ``large=True``)."""

    def decorate(test):
        cases = REGRESSION_EXAMPLES + (LARGE_REGRESSION_EXAMPLES if large else ())
        for case in reversed(cases):
            test = example(regression_case(*case), *extra)(test)
        return test

    return decorate


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
    """Drop JAX's compiled executables after every test module. Each pytest-xdist worker still
    runs about half the suite in one process and compiles thousands of programs, each holding
    memory maps; kept, they can exhaust the process's map limit and crash an XLA compile
    (segfault) late in a run while the same module passes on its own. The modules share few
    programs, so the cost is small."""
    yield
    jax.clear_caches()
    gc.collect()
