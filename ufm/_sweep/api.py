"""``ufm.sweep``: a phase diagram in one call, in vmapped chunks, resumable, sharded.

The data flow, one step a function: the arguments checked (:func:`_setup`) -> the table's
columns, reference and fingerprint (:func:`_layout`) -> the points already in the results
file (:func:`_resume`) -> chunks solved and held against the closed form, rows appended
(:func:`_run`) -> the table in grid order (:func:`_table`).
"""

from __future__ import annotations

import math
import warnings
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import theory

from .. import _exact
from .._linalg import full_precision
from .._solve import _DEFAULT_TOL
from .._solvers import LBFGS, Exact, resolve_solver
from .._validate import check_int
from ..problems import Problem
from . import chunks, imbalance, rows
from .files import ResultsFile, SweepTable, check_output_path, read_rows
from .grid import Grid, check_grid, description, fingerprint
from .points import Spec, run_chunk
from .progress import Progress
from .shard import broadcast, gather, placer

PATHS = ("nxn", "full")


@full_precision
def sweep(
    problem: Problem,
    grid: dict,
    *,
    seeds=None,
    solver=None,
    chunk_size: int | None = None,
    out=None,
    progress=None,
    restarts: int | None = None,
    max_steps: int | None = None,
    rtol=None,
    atol=None,
    path: str | None = None,
    reduction: bool | None = None,
    devices=None,
    reduced: bool | None = None,
    minority=None,
) -> SweepTable:
    """Solve ``problem`` at every point of a grid of its fields and tabulate the results.

    Args:
        problem: any ufm problem; its fields named in ``grid`` are replaced point by point
            (``problem.replace``), the others are kept.
        grid: ``{field: 1-D values}`` for fields in ``problem.sweep_fields`` (regression:
            ``lambda_H``, ``lambda_W``; classification: also ``lambda_b`` with a regularised
            bias and ``label_smoothing``; deep: ``lambda_H``, ``lambda_W``, a scalar set on
            every layer), and for classification ``imbalance_ratio``: ``R = n_A / n_B`` of a
            two-level step imbalance (the problem's ``K_A`` classes of ``n_A`` kept, its
            ``K_B`` minority classes set to ``n_B = n_A / R``, a whole number; one compilation
            per ratio, the other keys traced: ``ufm/_sweep/imbalance.py``). The sweep
            covers the Cartesian product (and the seeds), in ``itertools.product`` order with
            the seed fastest. Values must be finite, >= 0 and distinct (> 0 for the exact
            solver).
        seeds: init seeds (``key = jax.random.PRNGKey(seed)``): ``None`` (seed 0), an int
            ``S`` (seeds ``0..S-1``) or a list of distinct ints.
        solver, restarts, max_steps, rtol, atol: as in :func:`ufm.solve` (default solver: the
            exact one where the problem admits it at every grid value, else L-BFGS).
        chunk_size: at most this many points per compiled, vmapped call (default on the
            exact solver's ``n x n`` path: 256 on a CPU, 2048 on an accelerator; on the full
            path about 2^12 variables (of the problem solved) per chunk on a CPU, 2^24 on an
            accelerator). The grid is cut into equal chunks (the last one padded), so a sweep
            compiles once.
        out: path of a results CSV. Rows are appended chunk by chunk (flushed and fsync'd);
            rerunning the same sweep skips the points already there, and a torn last line
            (a killed run) is cut off first. A file of another sweep (different problem,
            grid, seeds, solver or settings: a fingerprint in its first line) is an error.
        progress: ``None`` (on when stderr is a terminal), ``True``, ``False`` or a callable
            ``fn(done, total, seconds)``. Uses ``tqdm`` when installed, else a line per chunk
            on stderr.
        path: ``None`` (default) takes the exact solver's ``n x n`` path (``"nxn"``: ``H``
            never formed, the cost of a point independent of ``N``) whenever the exact solver
            runs on an MSE problem, else ``"full"``; ``"full"`` forces the full path (``H``
            recovered at every point, all metrics measured).
        reduction: on the full path with a gradient solver, solve the problem's
            :meth:`~ufm.problems.Problem.reduction` (a smaller problem with the same
            stationary points, optimal value, stopping test and certificate) and expand its
            solution. ``None`` (default): with L-BFGS whenever the problem has one (not with
            optax dynamics, whose path from an uncollapsed init is of interest in itself);
            ``True``: with any gradient solver (an error if the problem has none);
            ``False``: never. Classification (CE; MSE with a gradient solver): the class-mean
            reduction (:meth:`ufm.ClassificationUFM.reduction`), ``K`` feature rows instead of
            ``N``, ~40x faster on K = 10 x 100, d = 64 (``benchmarks/sweep.py``); ``nc1``, 0
            by construction, is then not measured (NaN). The loss, certificate and metrics of
            a row are those of the full problem at the expanded variables.
        devices: devices to shard each chunk's points across (default ``jax.devices()``: all
            devices, of every process after ``jax.distributed.initialize``). Results do not
            depend on it.
        reduced: deprecated alias of ``path`` (``True``: ``"nxn"``, ``False``: ``"full"``).
        minority: with ``imbalance_ratio`` swept on a balanced problem: the indices of its
            minority classes (a two-level step's minority is the classes of its smaller size).

    Returns:
        A :class:`ufm.SweepTable`, one row per point in grid order, with columns: the grid
        keys, ``seed``, ``status`` (a :class:`ufm.Status` name), ``loss``; the closed form
        of the problem's :func:`theory.reference` where theory has one (else NaN and
        ``rank_theory = -1``): ``loss_theory``, ``loss_gap = (loss - loss_theory) /
        |loss_theory|``, ``err_gram_W`` (relative error of ``W W^T``; the last layer's for deep
        problems), ``err_gram_H`` (of the sample Gram ``H H^T`` for regression, of the
        class-mean Gram for classification; NaN for deep), ``rank_theory`` and ``rank``
        (collapse rank predicted and found, the numerical rank of ``W W^T``); the problem's
        metrics (``nrc1..3``, ``nc1..4``, or per layer ``nc1_layer1``, ...; on the ``n x n``
        path only those that need no features sample by sample:
        :meth:`~ufm.problems.Problem.exact_metrics`); ``steps``, ``grad_norm``;
        ``restarts_successful`` (fraction) with ``restarts``; for a two-level step imbalance
        (``K_B >= 2``) ``minority_cos`` (the smallest cosine between two minority classifier
        rows: 1 at minority collapse, NaN once a minority row is zero) and
        ``minority_norm_ratio`` (mean minority row norm over the majority's), with
        ``meta["imbalance"]`` (``K_A``, ``n_A``, ``K_B``, ``minority``). ``table.meta`` holds the
        closed form's ``thresholds`` (for :func:`ufm.plot.phase_diagram`) and
        ``nan_columns``: for every column that is NaN by design, why.

    Example::

        lams = np.geomspace(1e-3, 1e0, 50)
        table = ufm.sweep(ufm.RegressionUFM(Y, 1.0, 1.0, 32), {"lambda_H": lams,
                          "lambda_W": lams}, out="phase.csv")
        ufm.plot.phase_diagram(table, "phase.png")
    """
    if reduced is not None:
        warnings.warn(
            "ufm.sweep(reduced=...) is deprecated: use path='nxn' (reduced=True) or "
            "path='full' (reduced=False)",
            DeprecationWarning,
            stacklevel=3,
        )
        if path is None:
            path = {True: "nxn", False: "full"}.get(reduced, reduced)
    s = _setup(
        problem, grid, seeds, solver, chunk_size, out, progress, restarts, max_steps,
        rtol, atol, path, reduction, devices, minority,
    )  # fmt: skip
    lay = _layout(problem, s)
    done = _resume(s, lay)
    new_rows, new_idx = _run(problem, s, lay, done)
    return _table(lay, done, new_rows, new_idx)


# -- 1. the arguments -------------------------------------------------------------------------


class Setup(NamedTuple):
    """A sweep's checked arguments."""

    grid: Grid
    solver: Any
    restarts: int | None
    max_steps: int
    tols: tuple
    path: str  # "nxn" | "full"
    reduction: Any  # the problem's Reduction when the sweep solves it, else None
    chunk_size: int | None
    out: str | None
    progress: Any
    devices: list


def _setup(
    problem, grid, seeds, solver, chunk_size, out, progress, restarts, max_steps, rtol, atol,
    path, reduction, devices, minority=None,
) -> Setup:  # fmt: skip
    """Every argument checked, before any work."""
    if not isinstance(problem, Problem):
        raise TypeError(f"problem must be a ufm problem, got {type(problem).__name__}")
    problem.check_unbatched()
    g = check_grid(problem, grid, seeds, minority)
    rep = problem.replace(**{k: float(v.min()) for k, v in g.traced_values})
    solver = resolve_solver(solver, rep)
    solver.check(rep)
    if restarts is not None:
        restarts = check_int(restarts, "restarts", minimum=1)
    max_steps = check_int(
        solver.default_max_steps if max_steps is None else max_steps, "max_steps", minimum=0
    )
    tols = _tolerances(problem.dtype, rtol, atol)
    exact_ok = isinstance(solver, Exact) and problem.exact_data() is not None
    if path is not None and path not in PATHS:
        raise ValueError(f"path must be None, 'nxn' or 'full', got {path!r}")
    if path == "nxn" and not exact_ok:
        raise ValueError("path='nxn' (reduced=True) needs the exact solver on an MSE problem")
    path = "nxn" if exact_ok and path != "full" else "full"
    if reduction is not None and not isinstance(reduction, bool):
        raise TypeError(f"reduction must be None, True or False, got {reduction!r}")
    # Default: with L-BFGS only; optax dynamics from the problem's own (uncollapsed) init are
    # a subject of study in themselves (e.g. how NC1 falls), so they need reduction=True.
    reducer = None if path != "full" or isinstance(solver, Exact) else rep.reduction()
    use = reducer is not None and (reduction or (reduction is None and isinstance(solver, LBFGS)))
    if reduction and not use:
        raise ValueError(
            "reduction=True needs a problem with a reduction (problem.reduction() is not None) "
            f"and a gradient solver, got {type(problem).__name__} and {solver!r}"
        )
    if chunk_size is not None:
        chunk_size = check_int(chunk_size, "chunk_size", minimum=1)
    if out is not None:
        out = check_output_path(out)
    if progress is not None and not isinstance(progress, bool) and not callable(progress):
        raise TypeError(f"progress must be None, a bool or a callable, got {progress!r}")
    devices = list(jax.devices() if devices is None else devices)
    if not devices:
        raise ValueError("devices must hold at least one device")
    return Setup(
        g, solver, restarts, max_steps, tols, path, reducer if use else None, chunk_size,
        out, progress, devices,
    )  # fmt: skip


def _tolerances(dtype, rtol, atol):
    d_rtol, d_atol = _DEFAULT_TOL.get(jnp.dtype(dtype).itemsize, _DEFAULT_TOL[4])
    out = []
    for name, v, default in (("rtol", rtol, d_rtol), ("atol", atol, d_atol)):
        v = float(default if v is None else v)
        if not v >= 0 or not math.isfinite(v):
            raise ValueError(f"{name} must be a finite number >= 0, got {v}")
        out.append(np.asarray(v, dtype))
    return tuple(out)


# -- 2. the table's layout ----------------------------------------------------------------------


class Layout(NamedTuple):
    """The table's columns, the chunks' static settings, the file's identity."""

    spec: Spec
    schema: list
    desc: dict
    fingerprint: str
    meta: dict


def _layout(problem, s: Setup) -> Layout:
    g = s.grid
    ref = theory.reference(_representative(problem, g))
    mets = rows.metric_spec(problem)
    minority = None if g.step is None or g.step.K_B < 2 else g.step.minority
    spec = Spec(
        g.traced, s.path, ref, s.restarts, s.max_steps, mets, s.reduction is not None, minority
    )
    extra = list(imbalance.COLUMNS) if minority is not None else []
    schema = rows.schema(
        g.names, ref.column_names, rows.metric_columns(mets) + extra, s.restarts is not None
    )
    settings = {
        "solver": repr(s.solver),
        "restarts": s.restarts,
        "max_steps": s.max_steps,
        "rtol": float(s.tols[0]),
        "atol": float(s.tols[1]),
        # The fingerprint keeps the name "reduced" for the n x n path: files written with it
        # stay resumable.
        "path": "reduced" if s.path == "nxn" else s.path,
    }
    if s.reduction is not None:  # (absent otherwise: files of earlier versions keep theirs)
        settings["reduction"] = type(s.reduction.problem).__name__
    if g.structural:  # (absent otherwise, as above)
        settings["minority"] = list(g.step.minority)
    desc = description(problem, g, settings, [n for n, _ in schema])
    meta = rows.metadata(ref, problem, g.traced, s.path, s.reduction)
    if g.step is not None:
        meta["imbalance"] = imbalance.meta(g.step, problem)
    return Layout(spec, schema, desc, fingerprint(desc), meta)


def _representative(problem, g: Grid):
    """The problem at the grid's largest values (the reference's availability does not
    depend on the point, except where a lambda of 0 leaves rows NaN)."""
    top = {k: float(v.max()) for k, v in zip(g.names, g.values, strict=True)}
    p = imbalance.at(problem, g.step, {k: top[k] for k in g.structural})
    return p.replace(**{k: top[k] for k in g.traced})


# -- 3. what the results file already holds ---------------------------------------------------


class Done(NamedTuple):
    writer: ResultsFile | None
    rows: dict | None
    idx: np.ndarray
    pending: np.ndarray


def _resume(s: Setup, lay: Layout) -> Done:
    g, out = s.grid, s.out
    writer, done_rows, done_idx = None, None, np.zeros(0, np.int64)
    if out is not None and jax.process_index() == 0:
        writer = ResultsFile.open(out, lay.desc, lay.fingerprint, lay.schema, lay.meta)
        done_rows, done_idx = writer.done, _indices_of(writer.done, g, out)
    done_mask = np.zeros(g.size, bool)
    done_mask[done_idx] = True
    if jax.process_count() > 1:
        # Process 0 owns the file; the others learn what is done from it, and read the rows
        # where the file is on a shared filesystem (else they return the new rows only).
        done_mask = broadcast(done_mask)
        if writer is None and out is not None and done_mask.any():
            found = read_rows(out, lay.fingerprint, lay.schema)
            if found is not None and np.all(done_mask[_indices_of(found, g, out)]):
                if len(found["seed"]) == done_mask.sum():
                    done_rows, done_idx = found, _indices_of(found, g, out)
    return Done(writer, done_rows, done_idx, np.flatnonzero(~done_mask))


def _indices_of(found: dict, g: Grid, out) -> np.ndarray:
    lookup = g.index_of()
    idx = []
    for i in range(len(found["seed"])):
        key = (*(float(found[k][i]) for k in g.names), int(found["seed"][i]))
        if key not in lookup:
            raise ValueError(f"{out}: row {i + 1} is not a point of this sweep ({key})")
        idx.append(lookup[key])
    idx = np.asarray(idx, np.int64)
    if len(np.unique(idx)) != len(idx):
        raise ValueError(f"{out}: holds a point twice; the file was edited outside ufm.sweep")
    return idx


# -- 4. chunks solved, held against the closed form, appended ---------------------------------

_moments_jit = jax.jit(_exact.moments)


def _run(problem, s: Setup, lay: Layout, done: Done):
    g, spec = s.grid, lay.spec
    groups = g.groups(done.pending)
    n_groups = int(np.prod([len(g.values[g.names.index(k)]) for k in g.structural]))
    requested = s.chunk_size
    if requested is None:
        # Sized on the largest problem (the smallest imbalance ratio: the most samples).
        low = {k: float(g.values[g.names.index(k)].min()) for k in g.structural}
        big = imbalance.at(problem, g.step, low)
        solved = big if s.reduction is None else big.reduction().problem
        requested = chunks.default_chunk(solved, s.path, s.restarts)
    # One chunk size for every group, from the grid (not what is left): a resumed run reuses
    # the first run's executables.
    size = chunks.chunk_size(requested, g.size // n_groups, s.devices)
    report = Progress(s.progress, g.size, g.size - len(done.pending))
    if done.writer is not None and done.writer.repaired:
        report.note(f"{s.out}: cut off a torn last line left by an interrupted run")
    new_rows, new_idx = [], []
    cols_traced = [g.names.index(k) for k in g.traced]
    try:
        put = placer(s.devices)
        solver, tols = put(s.solver, sharded=False), put(s.tols, sharded=False)
        for structural, pending in groups:
            if not len(pending):
                continue
            here = imbalance.at(problem, g.step, structural)
            base = put(here, sharded=False)
            spec_here = spec
            if structural:  # the closed form's class sizes are static: one reference a group
                top = {k: float(v.max()) for k, v in g.traced_values}
                spec_here = spec._replace(reference=theory.reference(here.replace(**top)))
            # The n x n path reads the data once per sweep (per group): Sigma's
            # eigen-decomposition and mean.
            mom = None
            if s.path == "nxn":
                mom = put(_moments_jit(here.exact_data().targets), sharded=False)
            for idx, padded in chunks.chunks(pending, size):
                vals, sds = g.points(padded)
                res = run_chunk(
                    base,
                    solver,
                    put(vals[:, cols_traced].astype(here.dtype), sharded=True),
                    put(sds.astype(np.int32), sharded=True),
                    tols,
                    spec_here,
                    mom,
                )
                cols = rows.host_columns(gather(res), len(idx), vals, sds, g.names, lay.schema)
                cols = rows.finish_chunk(spec_here.reference, here, g.names, cols, lay.schema)
                if done.writer is not None:
                    done.writer.append(cols)
                new_rows.append(cols)
                new_idx.append(idx)
                report.update(len(idx))
    finally:
        report.close()
        if done.writer is not None:
            done.writer.close()
    return new_rows, new_idx


# -- 5. the table -------------------------------------------------------------------------------


def _table(lay: Layout, done: Done, parts: list, idx: list) -> SweepTable:
    if done.rows is not None and len(done.idx):
        parts, idx = [done.rows, *parts], [done.idx, *idx]
    if not parts:  # a process other than 0 without the file's rows, and nothing left to do
        parts = [{n: np.zeros(0, rows.DTYPES[k]) for n, k in lay.schema}]
        idx = [np.zeros(0, int)]
    order = np.argsort(np.concatenate(idx), kind="stable")
    columns = {name: np.concatenate([p[name] for p in parts])[order] for name, _ in lay.schema}
    return SweepTable(columns, lay.schema, lay.meta)
