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
loaded is recompiled and rewritten; the newest ``MAX_FILES`` are kept. The store is used on the
CPU backend only (the one it is tested on); elsewhere, and when the cache is off, programs are
jitted as usual.
"""

from __future__ import annotations

import glob
import hashlib
import os
import pathlib
import pickle
import sys
import tempfile
import threading
from collections.abc import Callable
from typing import Any

import jax
import jax.monitoring
import numpy as np

MAX_FILES = 64
# XLA:CPU's options for a quick compilation: LLVM at -O0 (measured on ``ufm check``'s programs:
# 1.7 -> 1.1 s to compile the exact solve, 1.25 -> 0.75 s the comparison; the exact solve at
# M = 10^6 runs in 0.46 s instead of 0.32 s, while an Adam run takes 3.5x as long, so
# iterative solvers are never compiled this way).
QUICK = {"xla_backend_optimization_level": 0}
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
    """Compiled programs by key, in memory and (``directory`` not ``None``) on disk."""

    def __init__(self, directory: str | None):
        self._lock = threading.Lock()
        self._memory: dict[str, Any] = {}
        self._unverified: set[str] = set()  # loaded from disk, not yet run
        self._base = None
        init = _lapack_initializer()
        if directory is None or jax.default_backend() != "cpu" or init is None:
            return
        path = os.path.join(directory, "programs")
        try:
            os.makedirs(path, exist_ok=True)
        except OSError:
            return
        self._base = path
        self._fingerprint = _environment() + _source_hash()
        # In a second thread, overlapping the loading of the executables; joined before any
        # program is lowered or run.
        self._lapack = threading.Thread(target=init, daemon=True)
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
        ``compiled(*args)``: loaded from disk, or compiled and saved. ``quick``: compile
        without LLVM's optimisation passes (:data:`QUICK`), for programs that pass over their
        data a few times (a third less compile time, up to 1.5x the run time)."""
        if self._base is None:
            return fn.lower(*args, *static).compile(QUICK if quick else None)
        return self._entry(name, fn, args, static, quick)[0]

    def _entry(self, name, fn, args, static, quick, *, reload: bool = True):
        """``(compiled, key, path, loaded)``; ``loaded``: read from disk and not yet run."""
        key = self._key(name, args, (static, quick))
        path = os.path.join(self._base, key + ".bin")
        with self._lock:
            if key in self._memory:
                return self._memory[key], key, path, key in self._unverified
        exe = self._load(path) if reload else None
        loaded = exe is not None
        self._lapack.join()
        if exe is None:
            exe, fresh = _compile_fresh(name, key, fn, args, static, QUICK if quick else None)
            if fresh:
                self._save(path, exe)
        with self._lock:
            self._memory[key] = exe
            if loaded:
                self._unverified.add(key)
        return exe, key, path, loaded

    def run(self, name: str, fn: Callable, args: tuple, static: tuple = (), *, quick=False):
        """``fn(*args, *static)`` through :meth:`compiled` (a plain call when the store is off,
        so that JAX's own caches apply). A program loaded from disk whose first run fails (a
        runtime error: a file jaxlib cannot run) is deleted, compiled and run again."""
        if self._base is None:
            return fn(*args, *static)
        exe, key, path, loaded = self._entry(name, fn, args, static, quick)
        if not loaded:
            return exe(*args)
        try:
            out = jax.block_until_ready(exe(*args))
        except jax.errors.JaxRuntimeError:
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
    def _load(path: str):
        from jax.experimental.serialize_executable import deserialize_and_load

        try:
            with open(path, "rb") as f:
                payload, in_tree, out_tree = pickle.load(f)
            exe = deserialize_and_load(payload, in_tree, out_tree)
        except Exception:  # noqa: BLE001 - missing, torn, foreign or stale: compile again
            return None
        try:
            os.utime(path)  # kept by use: the newest MAX_FILES survive
        except OSError:
            pass
        return exe

    def _save(self, path: str, exe) -> None:
        from jax.experimental.serialize_executable import serialize

        tmp = None
        try:
            blob = pickle.dumps(serialize(exe))
            fd, tmp = tempfile.mkstemp(dir=self._base, suffix=".tmp")
            with os.fdopen(fd, "wb") as f:
                f.write(blob)
            os.replace(tmp, path)
        except Exception:  # noqa: BLE001 - a full disk or an unserialisable program: run anyway
            if tmp is not None and os.path.exists(tmp):
                os.remove(tmp)
            return
        files = sorted(glob.glob(os.path.join(self._base, "*.bin")), key=_mtime)
        for old in files[:-MAX_FILES]:
            try:
                os.remove(old)
            except OSError:
                pass


# jaxlib cannot serialise again an executable that it loaded from JAX's persistent cache (the
# copy runs and fails: "Function ... not found"). The store therefore saves only executables
# compiled here: each is compiled under a name holding its key, so JAX's cache holds it only if
# this store lost its file, and a compilation that JAX's cache answered (seen through
# jax.monitoring) is redone under a fresh name.
_HITS = threading.local()
_LISTENING: list[bool] = []


def _on_event(event: str, **kwargs) -> None:
    if event == "/jax/compilation_cache/cache_hits":
        _HITS.count = getattr(_HITS, "count", 0) + 1


def _cache_hits() -> int:
    return getattr(_HITS, "count", 0)


def _compile_fresh(name: str, key: str, fn: Callable, args: tuple, static: tuple, options=None):
    """``(compiled, fresh)``: ``fn`` (jitted or not; its static arguments trail ``args``)
    compiled under a name from ``key``; ``fresh`` unless JAX's persistent cache answered twice."""
    with _LOCK:
        if not _LISTENING:
            jax.monitoring.register_event_listener(_on_event)
            _LISTENING.append(True)
    inner = getattr(fn, "__wrapped__", fn)  # the Python function under jax.jit
    argnums = tuple(range(len(args), len(args) + len(static)))
    for suffix in (key.rsplit("-", 1)[-1][:16], os.urandom(8).hex()):

        def program(*a):
            return inner(*a)

        program.__name__ = program.__qualname__ = f"ufm_{name}_{suffix}"
        lowered = jax.jit(program, static_argnums=argnums).lower(*args, *static)
        before = _cache_hits()
        exe = lowered.compile(options)
        if _cache_hits() == before:
            return exe, True
    return exe, False


_LOCK = threading.Lock()


def _mtime(path: str) -> float:
    try:
        return os.path.getmtime(path)
    except OSError:
        return 0.0
