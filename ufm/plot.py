"""Plots of sweep tables (needs matplotlib: ``pip install 'ufm[plot]'``; imported lazily).

:func:`phase_diagram` draws, over the ``(lambda_H, lambda_W)`` plane of a :func:`ufm.sweep`
table, the collapse rank found, a collapse metric (NRC1 or NC1 where measured) and the loss gap
to the closed form, with the theoretical thresholds drawn over each panel: the curves
``lambda_H lambda_W = lambda_i(Sigma)`` for regression (a direction of the targets collapses
away where ``c = lambda_H lambda_W`` passes its eigenvalue), ``kappa = K sqrt(n lambda_W
lambda_H) = 1`` for balanced classification, ``kappa_i = kappa_crit`` for deep UFMs. It uses
``matplotlib.figure.Figure`` directly (no pyplot), so it runs headless.

:func:`minority_collapse_diagram` draws, over the plane of the imbalance ratio ``R = n_A /
n_B`` of a two-level step imbalance against ``lambda = sqrt(lambda_H lambda_W)`` (the optimum
depends on the lambdas through their product), how far the minority classifiers are from
coinciding (``1 - minority_cos``), with the predicted boundaries: for MSE with a free bias the
exact window ``n_B / N^2 <= lambda_H lambda_W < K n_A n_B / N^3``
(:func:`theory.imbalanced_mse.minority_collapse_window`, docs/theory.md section 9), without a
bias the level ``n_B / N^2`` at which the minority dies; for cross-entropy the level
``sqrt(lambda_H lambda_W) = (1 - delta) sqrt(n_B) / N`` from which the minority rows coincide
(:func:`theory.ce_convex.coincidence_level`, ``delta`` the label smoothing).

Rounding level. A value no computation in the table's dtype can tell from 0 is drawn in one
grey ("below rounding", the colour bar's lower extension), never on the colour scale, where
rounding noise would read as structure. With ``eps`` the machine epsilon of the table's dtype
and ``ROUNDING = 16``:

* loss gap: ``|loss - loss_theory| <= ROUNDING eps L``, ``L`` the largest ``|loss|`` or
  ``|loss_theory|`` in the table: a loss is a sum whose terms reach the data's scale (the loss
  at ``W = 0``, which a sweep across the thresholds reaches), so its rounding is ``eps`` of that
  scale, not of the (possibly much smaller) optimal loss;
* squared-distance metrics (NRC1-NRC3, NC1, the layer metrics; values in [0, 4]):
  ``value <= ROUNDING eps``. A solution is determined to about ``sqrt(eps)`` relative (the
  objective to ``eps``), so a squared distance below a few ``eps`` is not a measurement;
* norm-type metrics (``nc2``, an ETF distance): ``value <= sqrt(ROUNDING eps)``.

Metric cells whose found rank is 0 (the solution is ``W = 0`` up to rounding) are left blank:
a scale-free metric of a zero matrix is not defined there.
"""

from __future__ import annotations

import numpy as np

from ._sweep.imbalance import minority_collapse_curves

# Metric panel: the first of these columns (or its layer-1 value) that holds a finite value.
METRIC_ORDER = ("nrc1", "nc1", "nrc3", "nc2")
# Values within ROUNDING eps (relative where the quantity has a scale) are "below rounding".
ROUNDING = 16
# Metrics that are distances (not squared): their rounding level is sqrt(ROUNDING eps).
NORM_METRICS = ("nc2",)
UNDER_COLOUR = "0.8"  # light grey: below rounding


def _lazy_matplotlib():
    try:
        from matplotlib import colormaps, colors
        from matplotlib.figure import Figure
    except ImportError as err:
        raise ImportError("ufm.plot needs matplotlib: pip install 'ufm[plot]'") from err
    return Figure, colors, colormaps


def _edges(v: np.ndarray) -> np.ndarray:
    """Cell edges around sorted positive values, midway in log space."""
    lv = np.log(v)
    if len(v) == 1:
        return np.exp([lv[0] - 0.5, lv[0] + 0.5])
    mid = 0.5 * (lv[1:] + lv[:-1])
    return np.exp(np.concatenate([[2 * lv[0] - mid[0]], mid, [2 * lv[-1] - mid[-1]]]))


def _best_rows(table, x: str, y: str, fixed: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(xs, ys, rows)``: the sorted axis values and, per cell, the row with the lowest finite
    loss over the seeds (-1 where the table has no row)."""
    mask = np.ones(len(table), bool)
    for k, v in fixed.items():
        mask &= table[k] == v
    others = [
        k
        for k in table.names[: table.names.index("seed")]
        if k not in (x, y) and k not in fixed and len(np.unique(table[k][mask])) > 1
    ]
    if others:
        raise ValueError(f"the table also varies {others}: pick values with fixed={{...}}")
    xs, ys = np.unique(table[x][mask]), np.unique(table[y][mask])
    rows = np.full((len(ys), len(xs)), -1)
    best = np.full((len(ys), len(xs)), np.inf)
    loss = np.where(np.isfinite(table["loss"]), table["loss"], np.inf)
    for r in np.flatnonzero(mask):
        i, j = np.searchsorted(ys, table[y][r]), np.searchsorted(xs, table[x][r])
        if rows[i, j] < 0 or loss[r] < best[i, j]:
            rows[i, j], best[i, j] = r, loss[r]
    return xs, ys, rows


def _field(table, name: str, rows: np.ndarray) -> np.ndarray:
    col = np.asarray(table[name], np.float64)
    return np.where(rows >= 0, col[np.maximum(rows, 0)], np.nan)


def _table_eps(table, dtype) -> float:
    """Machine epsilon of ``dtype``, else of the table's float columns (float64 from CSV)."""
    if dtype is None:
        dtype = table.meta.get("dtype") if hasattr(table, "meta") else None
    if dtype is None:
        dtype = np.asarray(table["loss"]).dtype
    return float(np.finfo(np.dtype(dtype)).eps)


def rounding_level(table, col: str, rows: np.ndarray, eps: float) -> np.ndarray:
    """Per cell, the largest ``|value|`` of column ``col`` that is rounding (module docstring)."""
    if col == "loss_gap":
        loss = np.abs(np.asarray(table["loss"], np.float64))
        theory = np.abs(np.asarray(table["loss_theory"], np.float64))
        scale = np.nanmax(np.concatenate([loss, theory, [0.0]]))
        return np.full(rows.shape, ROUNDING * eps * scale)
    base = col.split("_layer")[0]
    level = np.sqrt(ROUNDING * eps) if base in NORM_METRICS else ROUNDING * eps
    return np.full(rows.shape, level)


def phase_diagram(
    table,
    path=None,
    *,
    x: str = "lambda_H",
    y: str = "lambda_W",
    metric: str | None = None,
    fixed: dict | None = None,
    thresholds: bool = True,
    title: str | None = None,
    dtype=None,
):
    """Three panels over the ``(x, y)`` plane: collapse rank, a collapse metric, loss gap.

    Args:
        table: a :class:`ufm.SweepTable` (or ``SweepTable.from_csv(path)``) with ``x`` and
            ``y`` among its grid keys (all values > 0: the axes are logarithmic).
        path: write the figure there (PNG, PDF, ... by extension); ``None``: only return it.
        metric: the metric column (default: the first of ``nrc1``, ``nc1``, ``nrc3``, ``nc2``,
            or their ``_layer1`` column for deep UFMs, holding a finite value; the exact
            solver's ``n x n`` path measures ``nrc3``/``nc2``).
        fixed: values of other grid keys that vary in the table, e.g. ``{"lambda_b": 0.1}``.
        thresholds: draw the table's theoretical thresholds (``table.meta["thresholds"]``).
        dtype: the dtype the sweep ran in, for the rounding level (default:
            ``table.meta["dtype"]``, else the dtype of the ``loss`` column; float64 from CSV).

    With several seeds per cell each panel shows the seed with the lowest finite loss; cells
    whose best seed did not end ``successful`` are marked with a cross. On the metric and
    loss-gap panels (log10 of the absolute value) cells at rounding level are grey, the colour
    bar's lower extension (module docstring); blank cells have no value (not measured, no row,
    or a metric at found rank 0). Legends sit below the panels, outside the cells.

    Returns:
        The ``matplotlib.figure.Figure``.
    """
    Figure, colors, _ = _lazy_matplotlib()
    for k in (x, y):
        if k not in table:
            raise ValueError(f"the table has no column {k!r}; its columns are {table.names}")
    xs, ys, rows = _best_rows(table, x, y, dict(fixed or {}))
    if np.any(xs <= 0) or np.any(ys <= 0):
        raise ValueError(f"{x} and {y} must be > 0 for the logarithmic axes")
    if metric is None:
        names = [n for m in METRIC_ORDER for n in (m, f"{m}_layer1")]
        found = [m for m in names if m in table and np.any(np.isfinite(table[m]))]
        metric = found[0] if found else None
    eps = _table_eps(table, dtype)
    panels = [("rank", "collapse rank (found)", False)]
    if metric is not None:
        panels.append((metric, f"{metric} (log10)", True))
    panels.append(("loss_gap", "|loss gap| to closed form (log10)", True))
    fig = Figure(figsize=(5.2 * len(panels), 5.0), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    ex, ey = _edges(xs), _edges(ys)
    status = np.asarray(table["status"])
    failed = (rows >= 0) & (status[np.maximum(rows, 0)] != "successful")
    rank = _field(table, "rank", rows)
    for ax, (col, label, log) in zip(axes, panels, strict=True):
        Z = _field(table, col, rows)
        if log:
            mesh, note, any_real = _log_panel(ax, (ex, ey), table, col, rows, Z, rank, eps)
            cb = fig.colorbar(mesh, ax=ax, extend="min", extendfrac=0.08)
            cb.set_label(note, fontsize=8)
            if not any_real:
                cb.set_ticks([])  # no value above rounding: the scale has nothing to show
        else:
            top = int(np.nanmax(Z)) if np.any(np.isfinite(Z)) else 1
            cmap = colors.ListedColormap(
                [
                    (0.15 + 0.8 * i / max(top, 1), 0.3, 0.9 - 0.7 * i / max(top, 1))
                    for i in range(top + 1)
                ]
            )
            norm = colors.BoundaryNorm(np.arange(-0.5, top + 1.5), cmap.N)
            mesh = ax.pcolormesh(ex, ey, Z, cmap=cmap, norm=norm, shading="flat")
            cb = fig.colorbar(mesh, ax=ax)
            cb.set_ticks(np.arange(0, top + 1))
        if np.any(failed):
            fy, fx = np.nonzero(failed)
            ax.plot(xs[fx], ys[fy], "x", color="red", ms=4, label="not successful")
        if thresholds:
            _draw_thresholds(ax, table.meta.get("thresholds", []), x, y, ex)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(ex[0], ex[-1])
        ax.set_ylim(ey[0], ey[-1])
        ax.set_xlabel(x)
        ax.set_ylabel(y)
        ax.set_title(label, fontsize=10)
        handles, labels = ax.get_legend_handles_labels()
        if handles:  # below the panel, outside the cells
            ax.legend(
                fontsize=7,
                loc="upper center",
                bbox_to_anchor=(0.5, -0.16),
                ncol=min(len(handles), 2),
                frameon=False,
            )
    if title:
        fig.suptitle(title)
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig


def _draw_thresholds(ax, thresholds, x: str, y: str, ex: np.ndarray) -> None:
    """Curves ``x^a y^b = value`` -> ``y = (value / x^a)^(1/b)``."""
    xx = np.geomspace(ex[0], ex[-1], 200)
    styles = ["--", ":", "-.", (0, (5, 1, 1, 1))]
    for i, t in enumerate(thresholds):
        powers = t.get("powers", {})
        if set(powers) != {x, y} or powers[y] == 0:
            continue
        yy = (t["value"] / xx ** powers[x]) ** (1.0 / powers[y])
        ax.plot(xx, yy, color="black", lw=1.2, ls=styles[i % len(styles)], label=t["label"])


def _log_panel(ax, edges, table, col, rows, Z, rank, eps):
    """``log10 |Z|`` with the cells at rounding level in the colour map's "under" colour.

    Returns the mesh, the colour bar's note and whether any cell is above rounding."""
    A = np.abs(Z)
    level = rounding_level(table, col, rows, eps)
    if col != "loss_gap":
        A = np.where(rank == 0, np.nan, A)  # scale-free metric of W = 0: not defined
    rounding = np.isfinite(A) & (A <= level)
    real = np.isfinite(A) & ~rounding
    L = np.log10(np.where(real, A, 1.0))
    # the scale starts at the lowest real value or the lowest rounding level, whichever is lower
    ends = [np.min(L[real])] if np.any(real) else []
    ends += [np.log10(np.min(level[rounding]))] if np.any(rounding) and np.min(level) > 0 else []
    vmin = float(min(ends)) if ends else -16.0
    vmax = float(np.max(L[real])) if np.any(real) else vmin + 1.0
    vmax = max(vmax, vmin + 1e-3)
    shown = np.where(real, L, np.where(rounding, vmin - 1.0, np.nan))
    _, colors, colormaps = _lazy_matplotlib()
    cmap = colormaps["viridis"].with_extremes(under=UNDER_COLOUR, bad="white")
    norm = colors.Normalize(vmin=vmin, vmax=vmax)
    mesh = ax.pcolormesh(*edges, np.ma.masked_invalid(shown), cmap=cmap, norm=norm)
    if col == "loss_gap":
        what = f"{ROUNDING} eps max|loss|"
    elif col.split("_layer")[0] in NORM_METRICS:
        what = f"sqrt({ROUNDING} eps)"
    else:
        what = f"{ROUNDING} eps"
    note = f"grey: rounding, <= {what} ({int(rounding.sum())} cells)"
    if not np.any(real):
        note = f"all cells at rounding level (<= {what})"
    if np.any(~np.isfinite(A) & (rows >= 0)):
        note += "; blank: no value"
    return mesh, note, bool(np.any(real))


#: ``1 - minority_cos`` at or below this is drawn as collapsed (the rows' directions agree to
#: about ``sqrt`` of float64 rounding, where a solution is determined).
COLLAPSED = 1e-7


def minority_collapse_diagram(table, path=None, *, fixed: dict | None = None, title=None):
    """Minority collapse over (``sqrt(lambda_H lambda_W)``, imbalance ratio).

    Args:
        table: a :func:`ufm.sweep` table with the grid key ``imbalance_ratio`` and at least one
            of ``lambda_H``, ``lambda_W`` (the other is the problem's, from
            ``table.meta["imbalance"]``), and the column ``minority_cos``.
        path: write the figure there; ``None``: only return it.
        fixed: values of other grid keys that vary in the table (e.g. ``{"seed": 0}`` is not
            needed: the seed with the lowest finite loss is shown).

    One panel: ``log10(1 - minority_cos)`` per cell (``minority_cos``: the smallest cosine
    between two minority classifier rows); cells at or below :data:`COLLAPSED` are drawn in
    the colour bar's lower extension (collapsed), cells whose minority rows are zero in grey
    (the minority died), cells not ``successful`` crossed. The predicted boundaries are drawn as
    curves of ``lambda`` against ``R`` (module docstring).

    Returns:
        The ``matplotlib.figure.Figure``.
    """
    Figure, colors, colormaps = _lazy_matplotlib()
    from matplotlib.ticker import NullFormatter

    info = dict(table.meta.get("imbalance") or {})
    for k in ("imbalance_ratio", "minority_cos"):
        if k not in table:
            raise ValueError(f"the table has no column {k!r}; sweep grid key 'imbalance_ratio'")
    lam = np.ones(len(table))
    for k in ("lambda_H", "lambda_W"):
        lam = lam * (np.asarray(table[k], np.float64) if k in table else info.get(k, np.nan))
    if not np.any(np.isfinite(lam)):
        raise ValueError("the table holds neither lambda_H nor lambda_W values")
    rows_table = _WithLambda(table, np.sqrt(lam))
    xs, ys, rows = _best_rows(rows_table, "lambda", "imbalance_ratio", dict(fixed or {}))
    spread = 1.0 - _field(table, "minority_cos", rows)
    if "label_smoothing" in table:  # swept: the one value of the rows shown
        info["label_smoothing"] = float(np.asarray(table["label_smoothing"])[rows[rows >= 0]][0])
    dead = (rows >= 0) & np.isnan(spread)
    shown = np.where(spread > COLLAPSED, np.log10(np.maximum(spread, COLLAPSED)), -np.inf)
    shown = np.where(np.isnan(spread), np.nan, shown)
    finite = shown[np.isfinite(shown)]
    vmin = float(np.log10(COLLAPSED))
    vmax = max(float(finite.max()) if finite.size else vmin + 1, vmin + 1)
    fig = Figure(figsize=(6.4, 5.0), layout="constrained")
    ax = fig.subplots()
    ex, ey = _edges(xs), _edges(ys)
    cmap = colormaps["viridis"].with_extremes(under="black", bad=UNDER_COLOUR)
    Z = np.where(np.isneginf(shown), vmin - 1, shown)
    mesh = ax.pcolormesh(ex, ey, np.ma.masked_invalid(Z), cmap=cmap,
                         norm=colors.Normalize(vmin=vmin, vmax=vmax))  # fmt: skip
    cb = fig.colorbar(mesh, ax=ax, extend="min", extendfrac=0.08)
    cb.set_label(f"log10(1 - minority_cos); black: <= {COLLAPSED:g}, collapsed", fontsize=8)
    if np.any(dead):  # grey cells (the colour map's "bad" colour); a legend entry for them
        ax.fill_between([], [], color=UNDER_COLOUR, label="grey: minority rows zero")
    status = np.asarray(table["status"])
    failed = (rows >= 0) & (status[np.maximum(rows, 0)] != "successful")
    if np.any(failed):
        fy, fx = np.nonzero(failed)
        ax.plot(xs[fx], ys[fy], "x", color="red", ms=4, label="not successful")
    for curve in minority_collapse_curves(info, ey):  # (also ufm.plot.minority_collapse_curves)
        ax.plot(curve["lambda"], curve["ratio"], color="red", lw=1.5, ls=curve.get("ls", "--"),
                label=curve["label"])  # fmt: skip
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(ex[0], ex[-1])
    ax.set_ylim(ey[0], ey[-1])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_yticks(ys, [f"{v:g}" for v in ys])
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("lambda = sqrt(lambda_H lambda_W)")
    ax.set_ylabel("imbalance ratio R = n_A / n_B")
    handles, _ = ax.get_legend_handles_labels()
    if handles:
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2,
                  frameon=False)  # fmt: skip
    if title:
        ax.set_title(title, fontsize=10)
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig


class _WithLambda:
    """A table view with the column ``lambda`` (``sqrt(lambda_H lambda_W)`` per row) as a grid
    key, for :func:`_best_rows`."""

    def __init__(self, table, lam: np.ndarray):
        self._table, self._lam = table, lam
        names = [n for n in table.names if n not in ("lambda_H", "lambda_W")]
        self.names = ["lambda", *names]

    def __getitem__(self, name):
        return self._lam if name == "lambda" else self._table[name]

    def __len__(self):
        return len(self._table)
