"""JAX's persistent compilation cache for the command line.

Compiling is most of a small run's time; with the cache, a second run of the same command loads
its executables from disk. The cache lives in a user cache directory:
``$UFM_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/ufm/jax``, else ``~/.cache/ufm/jax``. It is
switched off by ``UFM_NO_COMPILE_CACHE=1`` (any value but ``""``/``"0"``) or by the caller
(``--no-cache``). A directory that cannot be created turns the cache off with a note on stderr,
never an error.
"""

from __future__ import annotations

import os
import sys

ENV_OFF = "UFM_NO_COMPILE_CACHE"
ENV_DIR = "UFM_CACHE_DIR"


def cache_dir() -> str:
    """The directory the cache would use (not created)."""
    if os.environ.get(ENV_DIR):
        return os.environ[ENV_DIR]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "ufm", "jax")


def disabled_by_env() -> bool:
    return os.environ.get(ENV_OFF, "") not in ("", "0")


def enable_compilation_cache(off: bool = False) -> str | None:
    """Point JAX's persistent compilation cache at :func:`cache_dir` and return the path, or
    return ``None`` when it is switched off (``off=True`` or ``UFM_NO_COMPILE_CACHE``) or the
    directory cannot be created. Call before the first compilation."""
    if off or disabled_by_env():
        return None
    path = cache_dir()
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as err:
        print(f"ufm: compilation cache off ({path}: {err.strerror})", file=sys.stderr)
        return None
    import jax

    jax.config.update("jax_compilation_cache_dir", path)
    # Cache every executable: the CLI's are small, and each still costs seconds to compile.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path
