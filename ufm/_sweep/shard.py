"""Sharding across devices with JAX's own machinery (``Mesh``, ``NamedSharding``).

* A sweep: each chunk's point axis is split across the devices (:func:`placer`); every point
  is solved independently, so the rows do not depend on the device count.
* One large problem: :func:`shard_samples` splits the sample axis of the targets (and labels)
  across the devices; :func:`ufm.solve` runs unchanged and XLA's sharding propagation splits
  ``H`` (``(N, d)``, samples first) the same way, reducing over the devices where the objective
  sums over samples.

Both work across hosts after ``jax.distributed.initialize()``: ``jax.devices()`` then lists
the devices of every process, and arrays are assembled from each process's part
(``jax.make_array_from_callback``); results are gathered with
``jax.experimental.multihost_utils.process_allgather``.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec


def _put(x, sharding):
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, sharding, lambda i: x[i])


def placer(devices):
    """``put(tree, sharded)``: arrays onto a 1-D mesh over ``devices`` with the leading (point)
    axis split (``sharded=True``) or replicated."""
    if len(devices) == 1 and jax.process_count() == 1:
        return lambda tree, sharded: jax.device_put(tree, devices[0])
    mesh = Mesh(np.asarray(devices), ("points",))

    def put(tree, sharded):
        sharding = NamedSharding(mesh, PartitionSpec("points") if sharded else PartitionSpec())
        return jax.tree_util.tree_map(lambda x: _put(x, sharding), tree)

    return put


def gather(tree):
    """Every process gets the full arrays (numpy)."""
    if jax.process_count() == 1:
        return jax.device_get(tree)
    from jax.experimental import multihost_utils

    return multihost_utils.process_allgather(tree, tiled=True)


def broadcast(x: np.ndarray) -> np.ndarray:
    """Process 0's ``x`` on every process (a no-op with one process)."""
    if jax.process_count() == 1:
        return x
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.broadcast_one_to_all(x))


def shard_samples(problem, devices=None):
    """The same problem with its sample axis split across ``devices`` (default: all devices).

    The leaves whose leading axis is the sample axis (``N`` entries: the targets, the labels)
    are placed with ``NamedSharding(Mesh(devices, ("samples",)), PartitionSpec("samples"))``,
    the other leaves replicated. :func:`ufm.solve` runs on it
    unchanged; the solution equals the unsharded one up to rounding (sums over samples are
    reduced across devices in another order). The number of samples must be a multiple of the
    number of devices.

    Example (4 devices)::

        big = ufm.shard_samples(ufm.RegressionUFM(Y, 1e-3, 1e-3, 256))
        sol = ufm.solve(big, "lbfgs")  # sol.params.H is sharded along samples too
    """
    devices = list(jax.devices() if devices is None else devices)
    if not devices:
        raise ValueError("devices must hold at least one device")
    N = problem.num_samples
    if N % len(devices):
        raise ValueError(
            f"the number of samples N = {N} must be a multiple of the number of devices "
            f"({len(devices)}) to shard the sample axis; pass devices=jax.devices()[:k]"
        )
    mesh = Mesh(np.asarray(devices), ("samples",))
    leaves, aux = problem._flatten()
    out = []
    for x in leaves:
        if x is None:
            out.append(x)
            continue
        # A leaf whose leading axis has N entries is split along it (targets (N, n), labels
        # (N,)); sharding never changes a result, only where the work runs.
        along = np.ndim(x) >= 1 and np.shape(x)[0] == N
        spec = PartitionSpec("samples") if along else PartitionSpec()
        out.append(_put(x, NamedSharding(mesh, spec)))
    return type(problem)._unflatten(aux, tuple(out))
