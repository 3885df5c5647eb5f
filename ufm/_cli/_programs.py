"""Compiled programs of the command line, kept on disk as executables.

JAX's persistent compilation cache (``_cache.py``) skips XLA's compilation but not the Python
tracing and the lowering to StableHLO that come before its lookup: for ``ufm check`` that is
most of a warm run (about 0.7 s of the 1.9 s). This store keeps the compiled executable itself
(``jax.experimental.serialize_executable``) under a key computed from what determines it, so
a warm run neither traces, lowers nor compiles:

* the program's name and static arguments (``repr``),
* the arguments' tree structure, shapes, dtypes and weak types,
* the source of the ``ufm`` and ``theory`` packages (a hash of every ``.py`` file: an edited
  checkout never runs a stale program),
* the JAX and jaxlib versions, the backend's platform, version and devices, ``jax_enable_x64``,
  the default matmul precision, ``XLA_FLAGS``, and the CPU's instruction-set flags (a cache
  directory shared between machines never runs code built for another CPU).

Files live in ``<cache dir>/programs/`` (the cache directory of ``_cache.py``), are written
atomically (a temporary file, then ``os.replace``) and are trusted like JAX's own cache: they
hold native code, so the directory must be the user's own. A file that cannot be read or
loaded is recompiled and rewritten; the newest ``MAX_FILES`` are kept. Files are used on the
CPU backend only (the one this is tested on); elsewhere, and when the cache is off
(``--no-cache``), the store keeps the compiled programs in memory for the process.

Before this store a warm ``ufm check`` took 1.7-1.9 s, of which about 0.7 s was tracing and
lowering; with it (and the quick options below), 0.84-0.96 s (``benchmarks/check_time.py``).
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import pathlib
import pickle
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.monitoring
import numpy as np

MAX_FILES = 64
# XLA:CPU's options for a quick compilation, for programs that pass over their data a few times
# (the exact solve, the comparison): LLVM at -O0, XLA's older elemental emitters instead of its
# MLIR fusion emitters, one code-generation thread (two programs compile at once on 2 cores).
# Measured on `ufm check`'s exact solve (2026-11-30, 2 cores, quiet): 2.1 s to compile by
# default, 0.53-0.61 s with these; run time at M = 10^6 0.22 s instead of 0.19 s, and 1.0x-1.2x
# at smaller M (iterative solvers would run 4x slower, so they keep XLA's defaults).
QUICK = {
    "xla_backend_optimization_level": 0,
    "xla_cpu_use_fusion_emitters": False,
    "xla_cpu_parallel_codegen_split_count": 1,
}
_PACKAGES = ("ufm", "theory")


def _source_hash() -> str:
    root = pathlib.Path(__file__).resolve().parents[2]
    h = hashlib.sha256()
    for pkg in _PACKAGES:
        for path in sorted((root / pkg).rglob("*.py")):
            h.update(str(path.relative_to(root)).encode())
            h.update(path.read_bytes())
    return h.hexdigest()


def _cpu_flags() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return f"{platform.machine()} {platform.processor()}"


def _environment() -> str:
    import jaxlib

    backend = jax.devices()[0].client
    devices = [d.device_kind for d in jax.devices()]
    return repr(
        (
            jax.__version__,
            jaxlib.__version__,
            backend.platform,
            backend.platform_version,
            devices,
            bool(jax.config.jax_enable_x64),
            str(jax.config.jax_default_matmul_precision),
            os.environ.get("XLA_FLAGS", ""),
            _cpu_flags(),
            sys.version_info[:2],
        )
    )


def _aval(x) -> tuple:
    if isinstance(x, jax.ShapeDtypeStruct):
        return tuple(x.shape), str(np.dtype(x.dtype)), bool(x.weak_type)
    t = jax.typeof(x)
    return tuple(t.shape), str(np.dtype(t.dtype)), bool(getattr(t, "weak_type", False))


def _lapack_initializer() -> Callable[[], None] | None:
    """jaxlib fills in its LAPACK kernels' addresses (importing SciPy, about 0.2 s) while
    lowering a program that uses them; a loaded executable is never lowered, so the store calls
    this first. ``None`` when this jaxlib has no such hook (the store is then not used)."""
    try:
        from jaxlib import lapack
    except ImportError:
        return None
    init = getattr(getattr(lapack, "_lapack", None), "initialize", None)
    return init if callable(init) else None


class ProgramStore:
    """Compiled programs by key: in memory, and on disk when ``directory`` is given (and the
    backend is the CPU)."""

    def __init__(self, directory: str | None):
        self._lock = threading.Lock()
        self._memory: dict[str, Any] = {}
        self._unverified: set[str] = set()  # loaded from disk, not yet run
        self._base = None
        self._writable = False
        self._lapack = threading.Thread(target=lambda: None)
        self._cpu = jax.default_backend() == "cpu"
        self._fingerprint = ""
        init = _lapack_initializer()
        if directory is None or not self._cpu or init is None:
            self._lapack.start()
            return
        path = os.path.join(directory, "programs")
        try:
            os.makedirs(path, exist_ok=True)
        except OSError:
            self._lapack.start()
            return
        self._base = path
        self._writable = os.path.isdir(path) and os.access(path, os.W_OK | os.X_OK)
        self._fingerprint = _environment() + _source_hash()
        # In a second thread, overlapping the loading (or lowering) of the executables; joined
        # before any program runs. (Lowering an eigh calls the same idempotent set-up.) Not a
        # daemon: an interpreter that shuts down while it runs would abort.
        self._lapack = threading.Thread(target=init)
        self._lapack.start()

    @property
    def on_disk(self) -> bool:
        return self._base is not None

    def _key(self, name: str, args: tuple, static: tuple) -> str:
        leaves, tree = jax.tree_util.tree_flatten(args)
        text = repr((name, static, str(tree), [_aval(x) for x in leaves], self._fingerprint))
        return f"{name}-{hashlib.sha256(text.encode()).hexdigest()[:40]}"

    def compiled(self, name: str, fn: Callable, args: tuple, static: tuple = (), *, quick=False):
        """The compiled ``fn(*args, *static)`` (a jitted ``fn`` with ``static`` as its trailing
        static arguments; ``args`` arrays or ``jax.ShapeDtypeStruct``), called as
        ``compiled(*args)``: from memory, loaded from disk, or compiled (and saved). ``quick``:
        compile with :data:`QUICK` (on the CPU), for programs that pass over their data a few
        times (a quarter of the compile time, up to 1.2x the run time)."""
        return self._entry(name, fn, args, static, quick)[0]

    def _entry(self, name, fn, args, static, quick, *, reload=True, lowered=None):
        """``(compiled, key, path, loaded)``; ``loaded``: read from disk and not yet run.
        ``lowered()`` is called once no more Python work is left (see :meth:`run`)."""
        lowered = _Once(lowered)
        key = self._key(name, args, (static, quick))
        path = None if self._base is None else os.path.join(self._base, key + ".bin")
        with self._lock:
            if key in self._memory:
                lowered()
                return self._memory[key], key, path, key in self._unverified
        exe = None
        if reload and path is not None and os.path.isfile(path):  # not a FIFO, not a folder
            lowered()
            exe = self._load(path, key)
        loaded = exe is not None
        if exe is None:
            options = QUICK if quick and self._cpu else None
            save = path is not None and self._writable
            exe, fresh = _compile_fresh(name, key, fn, args, static, options, lowered, save)
            if fresh and save:
                self._writable = self._save(path, key, exe)
        with self._lock:
            self._memory[key] = exe
            if loaded:
                self._unverified.add(key)
        return exe, key, path, loaded

    def run(self, name, fn, args, static=(), *, quick=False, lowered=None):
        """``fn(*args, *static)`` through :meth:`compiled`. A program loaded from disk whose
        first run fails (a file jaxlib cannot run, or one that does not take these arguments)
        is deleted, compiled and run again.

        ``lowered()``, if given, is called once this call has no more Python work to do (before
        loading from disk, or after tracing and lowering, when XLA compiles without holding
        the interpreter): ``ufm check`` starts the comparison's tracing then, so that the two
        tracings do not share one interpreter while a core idles."""
        exe, key, path, loaded = self._entry(name, fn, args, static, quick, lowered=lowered)
        self._lapack.join()  # a LAPACK kernel run before this would jump to a null address
        if not loaded:
            return exe(*args)
        try:
            out = jax.block_until_ready(exe(*args))
        except Exception:  # noqa: BLE001 - a file jaxlib cannot run, or a foreign program
            with self._lock:
                self._memory.pop(key, None)
                self._unverified.discard(key)
            try:
                os.remove(path)
            except OSError:
                pass
            return self._entry(name, fn, args, static, quick, reload=False)[0](*args)
        with self._lock:
            self._unverified.discard(key)
        return out

    @staticmethod
    def _load(path: str, key: str):
        from jax.experimental.serialize_executable import deserialize_and_load

        try:
            with open(path, "rb") as f:
                stored, payload, in_tree, out_tree = pickle.load(f)
            if stored != key:  # a file copied or renamed from another key
                return None
            exe = deserialize_and_load(payload, in_tree, out_tree)
        except Exception:  # noqa: BLE001 - missing, torn, foreign or stale: compile again
            return None
        try:
            os.utime(path)  # kept by use: the newest MAX_FILES survive
        except OSError:
            pass
        return exe

    def _save(self, path: str, key: str, exe) -> bool:
        """Write ``exe`` under ``path`` (with its ``key``); ``False`` when it could not be."""
        from jax.experimental.serialize_executable import serialize

        tmp = None
        try:
            blob = pickle.dumps((key, *serialize(exe)))
            fd, tmp = tempfile.mkstemp(dir=self._base, suffix=".tmp")
            with os.fdopen(fd, "wb") as f:
                f.write(blob)
            os.replace(tmp, path)
        except Exception:  # noqa: BLE001 - a full disk or an unserialisable program: run anyway
            if tmp is not None and os.path.exists(tmp):
                os.remove(tmp)
            return False
        files = sorted(glob.glob(os.path.join(self._base, "*.bin")), key=_mtime)
        # ... and temporary files that a killed process left (older than an hour).
        stale = [f for f in glob.glob(os.path.join(self._base, "*.tmp")) if _age(f) > 3600]
        for old in files[:-MAX_FILES] + stale:
            try:
                os.remove(old)
            except OSError:
                pass
        return True


# jaxlib cannot serialise again an executable that it loaded from JAX's persistent cache (the
# copy runs and fails: "Function ... not found"). The store therefore saves only executables
# compiled here: each is compiled under a name holding its key, with JAX's cache writes off, so
# JAX's cache holds it only where that switch is missing; a compilation that JAX's cache
# answered anyway (seen through jax.monitoring) is redone under a fresh name.
_HITS = threading.local()
_LISTENING: list[bool] = []
_LOCK = threading.Lock()


def _on_event(event: str, **kwargs) -> None:
    if event == "/jax/compilation_cache/cache_hits":
        _HITS.count = getattr(_HITS, "count", 0) + 1


def _cache_hits() -> int:
    return getattr(_HITS, "count", 0)


def _compile_fresh(name, key, fn, args, static, options=None, lowered=None, save=True):
    """``(compiled, fresh)``: ``fn`` (jitted or not; its static arguments trail ``args``)
    compiled under a name from ``key``; ``fresh`` unless JAX's persistent cache answered. With
    ``save`` (the store will write it): JAX's cache is not written (the store keeps the
    program) and a compilation that JAX's cache answered is redone under a fresh name."""
    with _LOCK:
        if not _LISTENING:
            jax.monitoring.register_event_listener(_on_event)
            _LISTENING.append(True)
    inner = getattr(fn, "__wrapped__", fn)  # the Python function under jax.jit
    argnums = tuple(range(len(args), len(args) + len(static)))
    suffixes = (key.rsplit("-", 1)[-1][:16], os.urandom(8).hex())
    for suffix in suffixes if save else suffixes[:1]:

        def program(*a):
            return inner(*a)

        program.__name__ = program.__qualname__ = f"ufm_{name}_{suffix}"
        ir = jax.jit(program, static_argnums=argnums).lower(*args, *static)
        if lowered is not None:
            lowered()
        before = _cache_hits()
        with _no_jax_cache_writes() if save else contextlib.nullcontext():
            try:
                exe = ir.compile(options)
            except Exception:  # noqa: BLE001 - an option this jaxlib lacks: XLA's defaults
                if not options:
                    raise
                exe = ir.compile()
        if _cache_hits() == before:
            return exe, True
    return exe, False


class _Once:
    """``fn()`` on the first call only (``fn`` may be ``None``)."""

    def __init__(self, fn):
        self._fn = fn

    def __call__(self) -> None:
        fn, self._fn = self._fn, None
        if fn is not None:
            fn()


def _no_jax_cache_writes():
    """A context (this thread only) in which JAX's persistent cache writes nothing: a JAX
    setting without a public switch, so a no-op where its name has changed."""
    try:
        from jax._src import config

        return config.persistent_cache_min_compile_time_secs(1e30)
    except (ImportError, AttributeError, TypeError):
        return contextlib.nullcontext()


def _age(path: str) -> float:
    return time.time() - _mtime(path)


def _mtime(path: str) -> float:
    try:
        return os.path.getmtime(path)
    except OSError:
        return 0.0
