"""``ufm.sweep``: a phase diagram in one call, in vmapped chunks, resumable, sharded."""

from __future__ import annotations

import math

import jax
import numpy as np

from . import _exact
from ._linalg import full_precision
from ._solution import Status
from ._solve import _DEFAULT_TOL
from ._solvers import LBFGS, Exact, resolve_solver
from ._sweep_grid import check_grid, description, fingerprint
from ._sweep_io import ResultsFile, SweepTable, check_output_path, read_rows
from ._sweep_progress import Progress
from ._sweep_rows import Spec, deep_reference, metric_columns, run_chunk
from ._sweep_shard import broadcast, gather, placer
from ._validate import check_int
from .problems import ClassificationUFM, DeepUFM, Problem, RegressionUFM

_REFERENCE = ["loss_theory", "loss_gap", "err_gram_W", "err_gram_H", "rank_theory", "rank"]
_INT_COLUMNS = {"seed", "steps", "rank", "rank_theory"}
_DTYPES = {"float": np.float64, "int": np.int64, "str": np.str_}
_MEMORY_PER_CHUNK = 2**28  # bytes a full-path chunk may hold, roughly (sets chunk_size)
# Measured with jax 0.10.2 on CPU: a chunk of 7,000 or 10,000 points of the n x n path never
# finished (every thread waiting on a futex inside device_get), 5,000 did; so at most 4096 points
# a CPU device (larger chunks gain nothing measurable there). The same deadlock hit a chunk of 50
# class-mean CE points (chunks of 1-16 ran): gdb showed the threads of jaxlib's batched LAPACK
# eigh (lapack_dsyevd_ffi -> jax::ParallelBatchMap) waiting on a BlockingCounter while every
# worker of the intra-op pool waited for work; the default chunks stay small on a CPU.
_MAX_CHUNK_CPU = 4096


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
    reduced: bool | None = None,
    reduction: bool | None = None,
    devices=None,
) -> SweepTable:
    """Solve ``problem`` at every point of a grid of its fields and tabulate the results.

    Args:
        problem: any ufm problem; its fields named in ``grid`` are replaced point by point
            (``problem.replace``), the others are kept.
        grid: ``{field: 1-D values}`` for fields in ``problem.sweep_fields`` (regression:
            ``lambda_H``, ``lambda_W``; classification: also ``lambda_b`` with a regularised
            bias; deep: ``lambda_H``, ``lambda_W``, a scalar set on every layer). The sweep
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
        reduced: ``None`` (default) takes the ``n x n`` path whenever the exact solver runs on
            an MSE problem; ``False`` forces the full path (``H`` recovered at every point, all
            metrics measured).
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

    Returns:
        A :class:`ufm.SweepTable`, one row per point in grid order, with columns: the grid
        keys, ``seed``, ``status`` (a :class:`ufm.Status` name), ``loss``; the closed form
        where :mod:`theory` has one (else NaN and ``rank_theory = -1``): ``loss_theory``,
        ``loss_gap = (loss - loss_theory)/|loss_theory|``, ``err_gram_W`` (relative error of
        ``W W^T``; the last layer's for deep problems), ``err_gram_H`` (of the sample Gram
        ``H H^T`` for regression, of the class-mean Gram for classification; NaN for deep),
        ``rank_theory`` and ``rank`` (collapse rank predicted and found, the numerical rank of
        ``W W^T``); the problem's metrics (``nrc1..3``, ``nc1..4``, or per layer
        ``nc1_layer1``, ...; on the exact solver's ``n x n`` path only those that need no
        features sample by sample: ``nrc3``, ``nc2``, ``nc3``, the others NaN); ``steps``,
        ``grad_norm``; ``restarts_successful`` (fraction) with ``restarts``.

    Example::

        lams = np.geomspace(1e-3, 1e0, 50)
        table = ufm.sweep(ufm.RegressionUFM(Y, 1.0, 1.0, 32), {"lambda_H": lams,
                          "lambda_W": lams}, out="phase.csv")
        ufm.plot.phase_diagram(table, "phase.png")
    """
    if not isinstance(problem, Problem):
        raise TypeError(f"problem must be a ufm problem, got {type(problem).__name__}")
    problem.check_unbatched()
    g = check_grid(problem, grid, seeds)
    rep = problem.replace(**{k: float(v.min()) for k, v in zip(g.names, g.values, strict=True)})
    solver = resolve_solver(solver, rep)
    solver.check(rep)
    if restarts is not None:
        restarts = check_int(restarts, "restarts", minimum=1)
    max_steps = check_int(
        solver.default_max_steps if max_steps is None else max_steps, "max_steps", minimum=0
    )
    tols = _tolerances(problem.dtype, rtol, atol)
    exact_ok = isinstance(solver, Exact) and problem.exact_data() is not None
    if reduced and not exact_ok:
        raise ValueError("reduced=True needs the exact solver on an MSE problem")
    path = "reduced" if exact_ok and reduced is not False else "full"
    if reduction is not None and not isinstance(reduction, bool):
        raise TypeError(f"reduction must be None, True or False, got {reduction!r}")
    # Default: with L-BFGS only; optax dynamics from the problem's own (uncollapsed) init are
    # a subject of study in themselves (e.g. how NC1 falls), so they need reduction=True.
    reducer = None if path != "full" or isinstance(solver, Exact) else rep.reduction()
    use_reduction = reducer is not None and (
        reduction or (reduction is None and isinstance(solver, LBFGS))
    )
    if reduction and not use_reduction:
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

    kind, per_class = _kind(problem)
    mets = _metric_spec(problem)
    spec = Spec(g.names, path, kind, restarts, max_steps, per_class, mets, _x64(), use_reduction)
    schema = _schema(g.names, metric_columns(mets), restarts is not None)
    settings = {
        "solver": repr(solver),
        "restarts": restarts,
        "max_steps": max_steps,
        "rtol": float(tols[0]),
        "atol": float(tols[1]),
        "path": path,
    }
    if use_reduction:  # (absent otherwise: files of earlier versions keep their fingerprint)
        settings["reduction"] = type(reducer.problem).__name__
    desc = description(problem, g, settings, [n for n, _ in schema])
    meta = {"thresholds": _thresholds(problem, kind, per_class, g.names)}
    fp = fingerprint(desc)

    writer, done_rows, done_idx = None, None, np.zeros(0, np.int64)
    if out is not None and jax.process_index() == 0:
        writer = ResultsFile.open(out, desc, fp, schema, meta)
        done_rows, done_idx = writer.done, _indices_of(writer.done, g, out)
    done_mask = np.zeros(g.size, bool)
    done_mask[done_idx] = True
    if jax.process_count() > 1:
        # Process 0 owns the file; the others learn what is done from it, and read the rows
        # where the file is on a shared filesystem (else they return the new rows only).
        done_mask = broadcast(done_mask)
        if writer is None and out is not None and done_mask.any():
            rows = read_rows(out, fp, schema)
            if rows is not None and np.all(done_mask[_indices_of(rows, g, out)]):
                if len(rows["seed"]) == done_mask.sum():
                    done_rows, done_idx = rows, _indices_of(rows, g, out)
    pending = np.flatnonzero(~done_mask)

    ndev = len(devices)
    if chunk_size is None:
        chunk_size = _default_chunk(reducer.problem if use_reduction else problem, path, restarts)
    # The chunk size depends on the grid, not on what is left, so that a resumed run reuses
    # the first run's executable (from JAX's caches).
    # Equal chunks of at most chunk_size points (e.g. 2 x 1250, not 2048 + 452 padded).
    if all(d.platform == "cpu" for d in devices):
        chunk_size = min(chunk_size, _MAX_CHUNK_CPU * ndev)
    size = min(chunk_size, g.size)
    size = math.ceil(g.size / math.ceil(g.size / size))
    size = ndev * math.ceil(size / ndev)
    report = Progress(progress, g.size, int(done_mask.sum()))
    if writer is not None and writer.repaired:
        report.note(f"{out}: cut off a torn last line left by an interrupted run")
    new_parts, new_idx = [], []
    try:
        if len(pending):
            put = placer(devices)
            base, solver_d = put(problem, sharded=False), put(solver, sharded=False)
            tols_d = put(tols, sharded=False)
            # The n x n path reads the data once per sweep: Sigma's eigen-decomposition and mean.
            mom = None
            if path == "reduced":
                mom = put(_moments_jit(problem.exact_data().targets), sharded=False)
            for start in range(0, len(pending), size):
                idx = pending[start : start + size]
                padded = np.concatenate([idx, np.full(size - len(idx), idx[-1])])
                vals, sds = g.points(padded)
                res = run_chunk(
                    base,
                    solver_d,
                    put(vals.astype(problem.dtype), sharded=True),
                    put(sds.astype(np.int32), sharded=True),
                    tols_d,
                    spec,
                    mom,
                )
                cols = _host_columns(gather(res), len(idx), vals, sds, g.names, schema)
                if kind == "deep":
                    lw = np.broadcast_to(
                        np.asarray(problem.lambda_W, np.float64), (len(idx), problem.num_layers)
                    ).copy()
                    if "lambda_W" in g.names:
                        lw[:] = cols["lambda_W"][:, None]
                    lh = (
                        cols["lambda_H"]
                        if "lambda_H" in g.names
                        else np.full(len(idx), float(problem.lambda_H))
                    )
                    cols["WWT"] = np.asarray(res["WWT"])[: len(idx)]
                    deep_reference(problem, lh, lw, cols)
                    del cols["WWT"]
                if writer is not None:
                    writer.append(cols)
                new_parts.append(cols)
                new_idx.append(idx)
                report.update(len(idx))
    finally:
        report.close()
        if writer is not None:
            writer.close()
    parts, idx = new_parts, new_idx
    if done_rows is not None and len(done_idx):
        parts, idx = [done_rows, *parts], [done_idx, *idx]
    if not parts:  # a process other than 0 without the file's rows, and nothing left to do
        parts, idx = [{n: np.zeros(0, _DTYPES[k]) for n, k in schema}], [np.zeros(0, int)]
    order = np.argsort(np.concatenate(idx), kind="stable")
    columns = {name: np.concatenate([p[name] for p in parts])[order] for name, _ in schema}
    return SweepTable(columns, schema, meta)


# -- helpers -----------------------------------------------------------------------------------


_moments_jit = jax.jit(_exact.moments)


def _x64() -> bool:
    return bool(jax.config.jax_enable_x64)


def _tolerances(dtype, rtol, atol):
    import jax.numpy as jnp

    d_rtol, d_atol = _DEFAULT_TOL.get(jnp.dtype(dtype).itemsize, _DEFAULT_TOL[4])
    out = []
    for name, v, default in (("rtol", rtol, d_rtol), ("atol", atol, d_atol)):
        v = float(default if v is None else v)
        if not v >= 0 or not math.isfinite(v):
            raise ValueError(f"{name} must be a finite number >= 0, got {v}")
        out.append(np.asarray(v, dtype))
    return tuple(out)


def _kind(problem) -> tuple[str, int | None]:
    if isinstance(problem, RegressionUFM):
        return "regression", None
    if isinstance(problem, ClassificationUFM):
        counts = np.bincount(np.asarray(problem.labels), minlength=problem.num_classes)
        return "classification", int(counts[0]) if np.all(counts == counts[0]) else None
    if isinstance(problem, DeepUFM):
        return "deep", None
    return "other", None


def _metric_spec(problem) -> tuple[tuple[str, int | None], ...]:
    params = jax.eval_shape(problem.default_init, jax.random.PRNGKey(0))
    shapes = jax.eval_shape(problem.trajectory_metrics, params)
    return tuple((k, None if v.shape == () else int(v.shape[0])) for k, v in shapes.items())


def _schema(names, metric_cols, with_restarts: bool) -> list[tuple[str, str]]:
    cols = [*names, "seed", "status", "loss", *_REFERENCE, *metric_cols, "steps", "grad_norm"]
    if with_restarts:
        cols.append("restarts_successful")
    kinds = {"status": "str"}
    return [(c, kinds.get(c, "int" if c in _INT_COLUMNS else "float")) for c in cols]


def _default_chunk(problem, path: str, restarts) -> int:
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
    if path == "reduced":
        return 256 if jax.default_backend() == "cpu" else 2048
    params = jax.eval_shape(problem.default_init, jax.random.PRNGKey(0))
    size = sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(params)) * (restarts or 1)
    target = 2**12 if jax.default_backend() == "cpu" else 2**24
    memory = _MEMORY_PER_CHUNK // (40 * size * np.dtype(problem.dtype).itemsize)
    return int(np.clip(min(target // size, memory), 1, 1024))


def _indices_of(rows: dict, g, out) -> np.ndarray:
    lookup = g.index_of()
    idx = []
    for i in range(len(rows["seed"])):
        key = (*(float(rows[k][i]) for k in g.names), int(rows["seed"][i]))
        if key not in lookup:
            raise ValueError(f"{out}: row {i + 1} is not a point of this sweep ({key})")
        idx.append(lookup[key])
    idx = np.asarray(idx, np.int64)
    if len(np.unique(idx)) != len(idx):
        raise ValueError(f"{out}: holds a point twice; the file was edited outside ufm.sweep")
    return idx


def _host_columns(res, n, vals, seeds, names, schema) -> dict[str, np.ndarray]:
    cols = {k: np.asarray(vals[:n, i], np.float64) for i, k in enumerate(names)}
    cols["seed"] = np.asarray(seeds[:n], np.int64)
    cols["status"] = np.asarray([Status(int(s)).name for s in np.asarray(res["status"])[:n]])
    for name, kind in schema:
        if name in cols:
            continue
        cols[name] = np.asarray(res[name])[:n].astype(np.int64 if kind == "int" else np.float64)
    return cols


def _thresholds(problem, kind: str, per_class, names) -> list[dict]:
    """Curves ``prod_k field_k^power_k = value`` of the closed forms' transitions (for plots)."""
    both = {"lambda_H": 1, "lambda_W": 1}
    if kind == "regression":
        _, S = problem.target_moments()
        ev = np.sort(np.linalg.eigvalsh(np.asarray(S, np.float64)))[::-1]
        r = min(problem.target_dim, problem.feature_dim)
        return [
            {"label": f"c = lambda_{i + 1}(Sigma)", "powers": both, "value": float(v)}
            for i, v in enumerate(ev[:r])
            if v > 0
        ]
    if kind == "classification" and per_class is not None:
        K = problem.num_classes
        out = [{"label": "kappa = 1", "powers": both, "value": 1.0 / (K**2 * per_class)}]
        if problem.loss == "mse" and problem.bias_mode == "reg" and "lambda_b" not in names:
            lb = float(problem.lambda_b)
            if lb > 0:
                v = 1.0 / (K**2 * per_class * (1 + 1 / lb) ** 2)
                out.append({"label": "kappa (1 + 1/lambda_b) = 1", "powers": both, "value": v})
        return out
    if kind == "deep":
        import theory.deep as td

        lw = np.asarray(problem.lambda_W)
        if "lambda_W" not in names and not np.all(lw == lw[0]):
            return []
        L, P = problem.num_layers, problem.num_layers + 1
        Y = np.asarray(problem.targets, np.float64)
        Yc = Y - Y.mean(0) if problem.bias else Y
        y = np.linalg.svd(Yc, compute_uv=False)[: min(problem.widths)]
        kc, N = td.kappa_crit(P), Y.shape[0]
        # kappa_i = gamma N y_i^{2/P - 2} < kappa_crit, gamma^P = lambda_H lambda_W^L; equal
        # singular values (balanced one-hot targets) give one curve.
        out = []
        for i, v in enumerate(y):
            value = float((kc * v ** (2 - 2 / P) / N) ** P)
            if v > 1e-12 * y[0] and not (out and np.isclose(out[-1]["value"], value)):
                powers = {"lambda_H": 1, "lambda_W": L}
                out.append(
                    {"label": f"kappa_{i + 1} = kappa_crit", "powers": powers, "value": value}
                )
        return out
    return []
