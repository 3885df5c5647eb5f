"""The points of a sweep cut into chunks: how many points a compiled, vmapped call takes, and
the chunks of the points still to solve (equal sizes, the last one padded)."""

from __future__ import annotations

import math
from collections.abc import Iterator

import jax
import numpy as np

_MEMORY_PER_CHUNK = 2**28  # bytes a full-path chunk may hold, roughly (sets chunk_size)
# Measured with jax 0.10.2 on CPU: a chunk of 7,000 or 10,000 points of the n x n path never
# finished (every thread waiting on a futex inside device_get), 5,000 did; so at most 4096 points
# a CPU device (larger chunks gain nothing measurable there). The same deadlock hit a chunk of 50
# class-mean CE points (chunks of 1-16 ran): gdb showed the threads of jaxlib's batched LAPACK
# eigh (lapack_dsyevd_ffi -> jax::ParallelBatchMap) waiting on a BlockingCounter while every
# worker of the intra-op pool waited for work; the default chunks stay small on a CPU.
MAX_CHUNK_CPU = 4096


def default_chunk(problem, path: str, restarts) -> int:
    """Points per chunk. A batched ``while_loop`` runs until its slowest point stops, so
    batching pays only while it vectorises small problems whose step counts are alike.

    * ``n x n`` path: 256 points on a CPU (small chunks also stay in cache), 2048 on an
      accelerator. Measured on 2 cores, 10,000 regression points, (n, d, M) = (3, 256, 10^4):
      chunks of 128-512 points 0.40-0.48 s, 1024 0.51-0.55 s, 2048 0.86-1.05 s.
    * full path (``problem`` is the one solved: the reduced one with a reduction): about
      ``2^12`` variables per chunk on a CPU (``2^24`` on an accelerator), within ~256 MB.
      Measured on 2 CPU cores, CE K = 10 x 100, d = 64, class-mean reduction (1290
      variables), 100 points whose L-BFGS step counts range over 50-1250: chunks of 1, 4, 8,
      16 points 5.5, 4.0, 7.1, 11.9 s; without the reduction 24 points took 99 s one at a
      time, 243 s in chunks of 12.
    """
    if path == "nxn":
        return 256 if jax.default_backend() == "cpu" else 2048
    params = jax.eval_shape(problem.default_init, jax.random.PRNGKey(0))
    size = sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(params)) * (restarts or 1)
    target = 2**12 if jax.default_backend() == "cpu" else 2**24
    memory = _MEMORY_PER_CHUNK // (40 * size * np.dtype(problem.dtype).itemsize)
    return int(np.clip(min(target // size, memory), 1, 1024))


def chunk_size(requested: int, grid_size: int, devices) -> int:
    """Equal chunks of at most ``requested`` points (e.g. 2 x 1250, not 2048 + 452 padded), a
    multiple of the device count. It depends on the grid, not on what is left, so that a
    resumed run reuses the first run's executable (from JAX's caches)."""
    ndev = len(devices)
    if all(d.platform == "cpu" for d in devices):
        requested = min(requested, MAX_CHUNK_CPU * ndev)
    size = min(requested, grid_size)
    size = math.ceil(grid_size / math.ceil(grid_size / size))
    return ndev * math.ceil(size / ndev)


def chunks(pending: np.ndarray, size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(indices, padded)`` of each chunk of the ``pending`` point indices: ``padded`` has
    ``size`` entries (the last index repeated)."""
    for start in range(0, len(pending), size):
        idx = pending[start : start + size]
        yield idx, np.concatenate([idx, np.full(size - len(idx), idx[-1])])
