"""The rows of a sweep table: the columns (schema), a chunk's device results turned into host
columns (with the reference's host-side columns), and the table's metadata (the closed form's
thresholds and why a column is NaN)."""

from __future__ import annotations

import jax
import numpy as np

from .._exact import ReducedOptimum
from .._solution import Status

INT_COLUMNS = {"seed", "steps", "rank", "rank_theory"}
DTYPES = {"float": np.float64, "int": np.int64, "str": np.str_}


def metric_spec(problem) -> tuple[tuple[str, int | None], ...]:
    """``(name, layers or None)`` of the problem's :meth:`trajectory_metrics`."""
    params = jax.eval_shape(problem.default_init, jax.random.PRNGKey(0))
    shapes = jax.eval_shape(problem.trajectory_metrics, params)
    return tuple((k, None if v.shape == () else int(v.shape[0])) for k, v in shapes.items())


def metric_columns(metrics) -> list[str]:
    """Column names of the problem's metrics (``name`` or ``name_layer{l}`` for layer arrays)."""
    cols = []
    for name, layers in metrics:
        cols += [name] if layers is None else [f"{name}_layer{i + 1}" for i in range(layers)]
    return cols


def schema(names, reference_cols, metric_cols, with_restarts: bool) -> list[tuple[str, str]]:
    """``[(column, kind)]``, kind ``"float"``, ``"int"`` or ``"str"``: the grid keys, seed,
    status, loss, the reference's columns (:attr:`theory.Reference.column_names`), the
    metrics, steps, grad_norm (and restarts_successful)."""
    cols = [*names, "seed", "status", "loss", *reference_cols, *metric_cols, "steps"]
    cols.append("grad_norm")
    if with_restarts:
        cols.append("restarts_successful")
    kinds = {"status": "str"}
    return [(c, kinds.get(c, "int" if c in INT_COLUMNS else "float")) for c in cols]


def host_columns(res, n, vals, seeds, names, table_schema) -> dict[str, np.ndarray]:
    """The first ``n`` rows of a chunk's results as numpy columns (the grid values and seeds
    as given, the status by name); device outputs outside the schema (e.g. ``WWT``, for the
    reference's host-side columns) are kept as they are."""
    cols = {k: np.asarray(vals[:n, i], np.float64) for i, k in enumerate(names)}
    cols["seed"] = np.asarray(seeds[:n], np.int64)
    cols["status"] = np.asarray([Status(int(s)).name for s in np.asarray(res["status"])[:n]])
    kinds = dict(table_schema)
    for name, v in res.items():
        if name in cols:
            continue
        if name in kinds:
            cols[name] = np.asarray(v)[:n].astype(np.int64 if kinds[name] == "int" else np.float64)
        else:
            cols[name] = np.asarray(v)[:n]
    return cols


def finish_chunk(reference, problem, names, cols: dict, table_schema) -> dict:
    """The reference's host-side columns filled in; only the schema's columns kept."""
    swept = {k: cols[k] for k in names}
    reference.host_columns(problem, swept, cols)
    return {name: cols[name] for name, _ in table_schema}


def metadata(reference, problem, names, path: str, reduction) -> dict:
    """The table's metadata: the closed form's ``thresholds`` (for phase diagrams), for every
    column that is NaN by design why (``nan_columns``: column -> reason), which rows have NaN
    closed-form columns (``nan_rows``, e.g. a lambda of 0) and the ``dtype`` of the solves."""
    notes = dict(reference.notes())
    if path == "nxn":
        for name in metric_columns(metric_spec(problem)):
            if name not in _exact_metric_names(problem):
                notes[name] = (
                    "not measured on the exact solver's n x n path: it needs the features "
                    "H sample by sample, which that path never forms (H lies in the row "
                    "space of W by construction); pass path='full' to measure it"
                )
    if reduction is not None:
        for name in reduction.by_construction:
            notes[name] = (
                f"holds by construction on the {type(reduction.problem).__name__} reduction "
                "the sweep solved (not measured); pass reduction=False to measure it"
            )
    meta = {
        "thresholds": reference.thresholds(problem, tuple(names)),
        "nan_columns": notes,
        "dtype": str(np.dtype(problem.dtype)),
    }
    if reference.available and reference.nan_rows:
        meta["nan_rows"] = reference.nan_rows
    return meta


def _exact_metric_names(problem) -> set[str]:
    """Names of the metrics that :meth:`exact_metrics` measures (traced shapes only)."""
    data = problem.exact_data()
    if data is None:
        return set()
    n = problem.targets.shape[1]
    sds = jax.ShapeDtypeStruct
    nn, vec, one = sds((n, n), problem.dtype), sds((n,), problem.dtype), sds((), problem.dtype)
    opt = ReducedOptimum(nn, vec, nn, nn, nn, one, sds((), bool))
    out = jax.eval_shape(problem.exact_metrics, sds((n, n), problem.dtype), opt)
    return set(out)
