"""Sweeps: a problem solved over a grid of its fields, held against the closed form, as a
resumable table. Modules in the order of the data flow:

* :mod:`.grid` - the grid checked, its points in order, the sweep's fingerprint;
* :mod:`.chunks` - the points cut into equal, padded chunks;
* :mod:`.points` - one chunk solved (vmapped, jitted once) and held against the problem's
  :class:`theory.Reference` on the device;
* :mod:`.rows` - the table's columns, a chunk's host columns, the table's metadata;
* :mod:`.files` - :class:`SweepTable` and the resumable CSV file;
* :mod:`.api` - :func:`sweep`, which runs the steps above;
* :mod:`.progress`, :mod:`.shard` - progress reports; sharding across devices and hosts
  (and :func:`shard_samples` for one large problem).

This is a workflow layer: it builds on the core and on :mod:`theory` (``import theory`` at
module top, its attributes read at call time, so that importing :mod:`theory` first, which
imports :mod:`ufm`, works).
"""

from .api import sweep as sweep
from .files import SweepTable as SweepTable
from .shard import shard_samples as shard_samples

__all__ = ["SweepTable", "shard_samples", "sweep"]
