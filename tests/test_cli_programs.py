"""The command line's on-disk store of compiled programs (``ufm/_cli/_programs.py``).

In-process tests use a toy program and count the store's own compilations (JAX's persistent
cache in the test process is the suite's, see ``tests/conftest.py``); the end-to-end test runs
``ufm check`` in subprocesses with both of the command line's caches on and none of the
suite's, including the case that once produced a broken file: JAX's persistent cache holding a
program the store has lost.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import without_jax_cache

from ufm._cli import _programs
from ufm._cli._programs import ProgramStore


@functools.partial(jax.jit, static_argnums=(1,))
def _toy(x, power):
    return jnp.sum(x**power), jnp.linalg.eigvalsh(jnp.outer(x, x) + jnp.eye(x.shape[0]))


def _files(tmp_path):
    return sorted((tmp_path / "programs").glob("*.bin"))


def _expected(x, power):
    return np.sum(np.asarray(x) ** power), np.linalg.eigvalsh(np.outer(x, x) + np.eye(len(x)))


def _count_compiles(monkeypatch):
    calls = []
    real = _programs._compile_fresh

    def counting(*a, **k):
        calls.append(a[0])
        return real(*a, **k)

    monkeypatch.setattr(_programs, "_compile_fresh", counting)
    return calls


def test_round_trip_loads_without_compiling(tmp_path, monkeypatch):
    calls = _count_compiles(monkeypatch)
    x = jnp.arange(1.0, 4.0)
    first = ProgramStore(str(tmp_path)).run("toy", _toy, (x,), (2,))
    assert calls == ["toy"] and len(_files(tmp_path)) == 1
    # A new process's store (nothing in memory): loaded from disk, not compiled; the loaded
    # executable uses LAPACK (eigvalsh), which the store initialises itself.
    second = ProgramStore(str(tmp_path)).run("toy", _toy, (x,), (2,))
    assert calls == ["toy"]
    for a, b, ref in zip(first, second, _expected(x, 2), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        np.testing.assert_allclose(np.asarray(b), ref, rtol=1e-12)


def test_key_separates_statics_shapes_dtypes_and_source(tmp_path, monkeypatch):
    calls = _count_compiles(monkeypatch)
    store = ProgramStore(str(tmp_path))
    x = jnp.arange(1.0, 4.0)
    store.run("toy", _toy, (x,), (2,))
    out3 = store.run("toy", _toy, (x,), (3,))
    store.run("toy", _toy, (jnp.arange(1.0, 5.0),), (2,))
    store.run("toy", _toy, (x.astype(jnp.float32),), (2,))
    store.run("toy", _toy, (x,), (2,))  # in memory
    assert len(calls) == 4 and len(_files(tmp_path)) == 4
    np.testing.assert_allclose(float(out3[0]), 36.0)
    # Edited source: a new key, never the stale program.
    monkeypatch.setattr(_programs, "_source_hash", lambda: "edited")
    ProgramStore(str(tmp_path)).run("toy", _toy, (x,), (2,))
    assert len(calls) == 5 and len(_files(tmp_path)) == 5


def test_torn_or_foreign_file_is_recompiled(tmp_path, monkeypatch):
    calls = _count_compiles(monkeypatch)
    x = jnp.arange(1.0, 4.0)
    ProgramStore(str(tmp_path)).run("toy", _toy, (x,), (2,))
    (path,) = _files(tmp_path)
    path.write_bytes(path.read_bytes()[:1000])  # torn by a kill
    out = ProgramStore(str(tmp_path)).run("toy", _toy, (x,), (2,))
    assert len(calls) == 2
    np.testing.assert_allclose(float(out[0]), 14.0)
    path.write_bytes(b"not a pickle")
    ProgramStore(str(tmp_path)).run("toy", _toy, (x,), (2,))
    assert len(calls) == 3
    ProgramStore(str(tmp_path)).run("toy", _toy, (x,), (2,))  # the rewritten file loads
    assert len(calls) == 3
    assert not list((tmp_path / "programs").glob("*.tmp"))


def test_a_file_under_another_key_or_not_a_file_is_not_loaded(tmp_path, monkeypatch):
    calls = _count_compiles(monkeypatch)
    x = jnp.arange(1.0, 4.0)
    store = ProgramStore(str(tmp_path))
    store.run("toy", _toy, (x,), (2,))
    (square,) = _files(tmp_path)
    store.run("toy", _toy, (x,), (3,))
    (cube,) = set(_files(tmp_path)) - {square}
    cube.write_bytes(square.read_bytes())  # the same signature, another program
    out = ProgramStore(str(tmp_path)).run("toy", _toy, (x,), (3,))
    assert len(calls) == 3 and float(out[0]) == 36.0
    cube.unlink()
    os.mkfifo(cube)  # opening it would block
    out = ProgramStore(str(tmp_path)).run("toy", _toy, (x,), (3,))
    assert len(calls) == 4 and float(out[0]) == 36.0 and cube.is_file()


def test_keeps_the_newest_files(tmp_path, monkeypatch):
    monkeypatch.setattr(_programs, "MAX_FILES", 2)
    store = ProgramStore(str(tmp_path))
    x = jnp.arange(1.0, 4.0)
    for power in (1, 2, 3):
        store.run("toy", _toy, (x,), (power,))
    assert len(_files(tmp_path)) == 2


@pytest.mark.slow
def test_off_without_a_directory(tmp_path):
    store = ProgramStore(None)
    assert not store.on_disk
    out = store.run("toy", _toy, (jnp.arange(1.0, 4.0),), (2,))
    np.testing.assert_allclose(float(out[0]), 14.0)


# In a subprocess: let JAX's persistent cache write the store's programs too (what it does
# where the store cannot switch its writes off), so that a later run finds them there.
_JAX_WRITES = (
    "import contextlib, ufm._cli._programs as P; P._no_jax_cache_writes = contextlib.nullcontext; "
)


def _check(cache, *args, patch=""):
    env = {k: v for k, v in without_jax_cache(os.environ).items() if k != "UFM_NO_COMPILE_CACHE"}
    env["UFM_CACHE_DIR"] = str(cache)
    code = (
        patch + "import sys; from ufm._cli import run; sys.argv = ['ufm', 'check', *sys.argv[1:]]; "
        "run()"
    )
    r = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=600
    )
    table = [ln for ln in r.stdout.splitlines() if "steps," not in ln]
    return r.returncode, table, r.stdout + r.stderr


def _contents(programs):
    return {f.name: f.read_bytes() for f in programs.glob("*.bin")}


def _jax_entries(cache):
    return sorted(p.name for p in cache.glob("jit_ufm_*"))


@pytest.mark.slow
def test_check_with_both_caches(tmp_path):
    cold = _check(tmp_path)
    assert cold[0] == 0 and "PASS" in cold[2], cold[2]
    programs = tmp_path / "programs"
    written = _contents(programs)
    assert len(written) == 2
    assert _jax_entries(tmp_path) == []  # kept once, by the store, not by JAX's cache too
    warm = _check(tmp_path)
    assert warm[0] == 0 and warm[1] == cold[1], warm[2]  # the same table, to the last digit
    assert _contents(programs) == written  # loaded, not written again
    # No usable programs folder: the store keeps programs in memory only.
    shutil.rmtree(programs)
    programs.write_text("not a folder")
    nodir = _check(tmp_path)
    assert nodir[0] == 0 and nodir[1] == cold[1], nodir[2]
    # Bad input found after the store has started its thread: exit 2 and a message, never an
    # abort of the interpreter.
    bad = _check(tmp_path, "--targets", str(tmp_path / "missing.npy"))
    assert bad[0] == 2 and "cannot read" in bad[2] and "Fatal" not in bad[2], bad[2]


@pytest.mark.slow
def test_check_when_jax_cache_holds_the_programs(tmp_path):
    # JAX's cache holds the programs and the store has lost its files: the files written now
    # must load and run without being replaced (jaxlib cannot serialise an executable it
    # loaded from its own cache: such a copy fails to run, and the store would rewrite it).
    first = _check(tmp_path, patch=_JAX_WRITES)
    assert first[0] == 0 and len(_jax_entries(tmp_path)) == 2, first[2]
    programs = tmp_path / "programs"
    shutil.rmtree(programs)
    again = _check(tmp_path)
    assert again[0] == 0 and again[1] == first[1], again[2]
    rewritten = _contents(programs)
    assert len(rewritten) == 2
    # The console entry point's exit status (it leaves by os._exit) on a failed check, with
    # the rewritten programs loaded as they are.
    failed = _check(tmp_path, "--tol", "1e-300")
    assert failed[0] == 1 and "FAIL" in failed[2], failed[2]
    assert _contents(programs) == rewritten


@pytest.mark.slow
def test_check_classification_program_with_static_arguments(tmp_path):
    args = ("--problem", "mse", "--classes", "3", "--per-class", "2", "--d", "5")
    cold = _check(tmp_path, *args)
    assert cold[0] == 0 and "PASS" in cold[2], cold[2]
    written = _contents(tmp_path / "programs")
    warm = _check(tmp_path, *args)
    assert warm[0] == 0 and warm[1] == cold[1], warm[2]
    assert _contents(tmp_path / "programs") == written and len(written) == 2
