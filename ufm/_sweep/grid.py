"""The grid of a sweep: checked values, the points in order, and the sweep's fingerprint.

A grid maps problem fields (``problem.sweep_fields``) to 1-D value lists; the sweep covers the
Cartesian product of the lists and the seeds, in ``itertools.product`` order over
``(*grid values, seeds)`` (the last grid key varies fastest among the grid keys, the seed
fastest of all). Point ``i`` of that order is the ``i``-th row of the table.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import NamedTuple

import jax
import numpy as np

from .._validate import check_int
from . import imbalance

FORMAT = "ufm-sweep/1"
_MAX_SEED = 2**31 - 1


class Grid(NamedTuple):
    """A checked grid.

    Attributes:
        names: the grid keys, in the caller's order.
        values: one float64 array per key (the values as given, unique).
        seeds: int array of the init seeds (``jax.random.PRNGKey(seed)``).
        step: the two-level step imbalance (:class:`.imbalance.Step`) of a classification
            problem whose minority is measured (``imbalance_ratio`` swept, or the problem's
            classes a step with ``K_B >= 2``), else ``None``.
    """

    names: tuple[str, ...]
    values: tuple[np.ndarray, ...]
    seeds: np.ndarray
    step: imbalance.Step | None = None

    @property
    def traced(self) -> tuple[str, ...]:
        """The grid keys that are the problem's traced fields (not :data:`imbalance.STRUCTURAL`)."""
        return tuple(k for k in self.names if k not in imbalance.STRUCTURAL)

    @property
    def traced_values(self) -> list[tuple[str, np.ndarray]]:
        """``(key, values)`` of the traced grid keys."""
        return [(k, v) for k, v in zip(self.names, self.values, strict=True) if k in self.traced]

    def groups(self, pending: np.ndarray) -> list[tuple[dict, np.ndarray]]:
        """``(structural values {key: value}, indices)`` for each combination of the structural
        keys' values among the ``pending`` point indices (one group, ``{}``, without such
        keys), each group's indices in grid order."""
        if not self.structural:
            return [({}, pending)]
        pos = [self.names.index(k) for k in self.structural]
        sub = np.unravel_index(pending, self.shape)
        keys = np.stack([sub[i] for i in pos], axis=-1)
        out = []
        for key in np.unique(keys, axis=0):
            sel = np.all(keys == key, axis=-1)
            vals = {
                k: float(self.values[i][j])
                for k, i, j in zip(self.structural, pos, key, strict=True)
            }
            out.append((vals, pending[sel]))
        return out

    @property
    def structural(self) -> tuple[str, ...]:
        """The grid keys that change the problem's shapes (one compilation per value)."""
        return tuple(k for k in self.names if k in imbalance.STRUCTURAL)

    @property
    def shape(self) -> tuple[int, ...]:
        return (*(len(v) for v in self.values), len(self.seeds))

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    def points(self, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(values (k, len(names)), seeds (k,))`` of the points with the given indices."""
        sub = np.unravel_index(np.asarray(index, dtype=np.int64), self.shape)
        vals = np.stack([v[i] for v, i in zip(self.values, sub[:-1], strict=True)], axis=-1)
        return vals.reshape(len(index), len(self.names)), self.seeds[sub[-1]]

    def index_of(self) -> dict[tuple, int]:
        """Map ``(*values, seed)`` (Python floats and an int) to the point index."""
        vals, seeds = self.points(np.arange(self.size))
        return {
            (*map(float, v), int(s)): i for i, (v, s) in enumerate(zip(vals, seeds, strict=True))
        }


def _check_values(name: str, values) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(f"grid[{name!r}] must be a 1-D list of numbers, got {values!r}") from err
    if arr.ndim == 0:
        arr = arr[None]
    if arr.ndim != 1:
        raise ValueError(f"grid[{name!r}] must be 1-D, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"grid[{name!r}] is empty: give at least one value")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"grid[{name!r}] must be finite, got {arr[~np.isfinite(arr)].tolist()}")
    if np.any(arr < 0):
        raise ValueError(f"grid[{name!r}] must be >= 0, got {arr[arr < 0].tolist()}")
    if len(np.unique(arr)) != arr.size:
        raise ValueError(f"grid[{name!r}] holds duplicate values: {arr.tolist()}")
    return arr


def check_seeds(seeds) -> np.ndarray:
    """``None`` -> ``[0]``; an int ``S >= 1`` -> ``0, ..., S-1``; or distinct ints in
    ``[0, 2^31)``."""
    if seeds is None:
        return np.zeros(1, np.int64)
    if isinstance(seeds, int | np.integer) and not isinstance(seeds, bool | np.bool_):
        return np.arange(check_int(seeds, "seeds", minimum=1), dtype=np.int64)
    try:
        items = [check_int(s, "seeds[i]", minimum=0) for s in seeds]
    except TypeError as err:
        raise TypeError(
            f"seeds must be None, an int S >= 1 (seeds 0..S-1) or a list of ints >= 0, got "
            f"{seeds!r}"
        ) from err
    arr = np.asarray(items, dtype=np.int64)
    if arr.size == 0:
        raise ValueError("seeds is empty: give None, an int >= 1 or a non-empty list")
    if len(np.unique(arr)) != arr.size:
        raise ValueError(f"seeds holds duplicates: {arr.tolist()}")
    if arr.max() > _MAX_SEED:
        raise ValueError(f"seeds must be < 2^31, got {int(arr.max())}")
    return arr


def check_grid(problem, grid, seeds, minority=None) -> Grid:
    """Check ``grid`` against ``problem.sweep_fields`` and :data:`imbalance.STRUCTURAL` (clear
    errors before any work); ``minority``: the minority classes of a balanced problem whose
    ``imbalance_ratio`` is swept."""
    if not isinstance(grid, Mapping):
        raise TypeError(
            "grid must be a dict mapping field names to 1-D value lists, e.g. "
            f"{{'lambda_H': [...], 'lambda_W': [...]}}, got {type(grid).__name__}"
        )
    if not grid:
        raise ValueError(
            f"grid is empty: give at least one of {list(problem.sweep_fields)} with its values"
        )
    takes = list(problem.sweep_fields)
    if imbalance.class_sizes(problem) is not None:
        takes += list(imbalance.STRUCTURAL)
    unknown = [k for k in grid if k not in takes]
    if unknown:
        raise ValueError(
            f"grid keys {unknown} are not sweepable fields of {type(problem).__name__}; "
            f"it takes {takes}"
        )
    if "lambda_b" in grid and getattr(problem, "bias_mode", None) != "reg":
        raise ValueError(
            "grid['lambda_b'] needs a problem with a regularised bias (bias=<lambda_b number>), "
            f"got bias={getattr(problem, 'bias_mode', None)!r}"
        )
    if "label_smoothing" in grid and getattr(problem, "loss", None) != "ce":
        raise ValueError(
            "grid['label_smoothing'] needs a cross-entropy problem (loss='ce'), got "
            f"loss={getattr(problem, 'loss', None)!r}"
        )
    names = tuple(grid)
    values = tuple(_check_values(k, grid[k]) for k in names)
    delta = values[names.index("label_smoothing")] if "label_smoothing" in grid else None
    if delta is not None and np.any(delta >= 1):
        raise ValueError(f"grid['label_smoothing'] must be in [0, 1), got {delta.tolist()}")
    if imbalance.RATIO in grid:
        step = imbalance.check_ratios(problem, values[names.index(imbalance.RATIO)], minority)
    else:
        if minority is not None:
            raise ValueError(f"minority applies to a sweep of grid[{imbalance.RATIO!r}]")
        step = imbalance.step_of(problem)
    if step is not None and step.K_B < 2 and imbalance.RATIO not in grid:
        step = None  # one minority class: no pair to compare
    return Grid(names, values, check_seeds(seeds), step)


def _leaf_summary(x) -> dict:
    arr = np.asarray(x)
    if arr.ndim == 0 or arr.size <= 8:
        return {"dtype": str(arr.dtype), "shape": list(arr.shape), "values": arr.tolist()}
    digest = hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest()
    return {"dtype": str(arr.dtype), "shape": list(arr.shape), "sha256": digest}


def describe_problem(problem, swept: tuple[str, ...]) -> dict:
    """A JSON-able description of the problem: its type, static options and every leaf that is
    not swept (small ones by value, arrays by a SHA-256 of their bytes)."""
    leaves, _ = problem._flatten()
    out = {"type": type(problem).__name__, "static": {}, "leaves": {}}
    for k in problem._static:
        v = getattr(problem, k)
        out["static"][k] = v if isinstance(v, bool | int | float | str | type(None)) else repr(v)
    for k, v in zip(problem._leaves, leaves, strict=True):
        if k not in swept and v is not None:
            out["leaves"][k] = _leaf_summary(v)
    return out


def description(problem, grid: Grid, settings: dict, columns: list[str]) -> dict:
    """Everything that makes two sweeps the same sweep (hashed into the fingerprint)."""
    return {
        "format": FORMAT,
        "problem": describe_problem(problem, grid.names),
        "grid": {
            k: [repr(float(x)) for x in v] for k, v in zip(grid.names, grid.values, strict=True)
        },
        "seeds": grid.seeds.tolist(),
        "settings": settings,
        "columns": columns,
        "x64": bool(jax.config.jax_enable_x64),
    }


def fingerprint(desc: dict) -> str:
    """First 16 hex digits of the SHA-256 of the canonical JSON of ``desc``."""
    text = json.dumps(desc, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def differences(old: dict, new: dict) -> list[str]:
    """The top-level sections in which two descriptions differ."""
    keys = sorted(set(old) | set(new))
    return [k for k in keys if old.get(k) != new.get(k)]
