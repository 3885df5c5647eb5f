"""Plots of sweep tables (needs matplotlib: ``pip install 'ufm[plot]'``; imported lazily).

:func:`phase_diagram` draws, over the ``(lambda_H, lambda_W)`` plane of a :func:`ufm.sweep`
table, the collapse rank found, a collapse metric (NRC1 or NC1 where measured) and the loss gap
to the closed form, with the theoretical thresholds drawn over each panel: the curves
``lambda_H lambda_W = lambda_i(Sigma)`` for regression (a direction of the targets collapses
away where ``c = lambda_H lambda_W`` passes its eigenvalue), ``kappa = K sqrt(n lambda_W
lambda_H) = 1`` for balanced classification, ``kappa_i = kappa_crit`` for deep UFMs. It uses
``matplotlib.figure.Figure`` directly (no pyplot), so it runs headless.
"""

from __future__ import annotations

import numpy as np

# Metric panel: the first of these columns (or its layer-1 value) that holds a finite value.
METRIC_ORDER = ("nrc1", "nc1", "nrc3", "nc2")


def _lazy_matplotlib():
    try:
        from matplotlib import colors
        from matplotlib.figure import Figure
    except ImportError as err:
        raise ImportError("ufm.plot needs matplotlib: pip install 'ufm[plot]'") from err
    return Figure, colors


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

    With several seeds per cell each panel shows the seed with the lowest finite loss; cells
    whose best seed did not end ``successful`` are marked with a cross.

    Returns:
        The ``matplotlib.figure.Figure``.
    """
    Figure, colors = _lazy_matplotlib()
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
    floor = 1e-17
    panels = [("rank", "collapse rank (found)", False)]
    if metric is not None:
        panels.append((metric, f"{metric} (log10)", True))
    panels.append(("loss_gap", "|loss gap| to closed form (log10)", True))
    fig = Figure(figsize=(5.2 * len(panels), 4.4), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    ex, ey = _edges(xs), _edges(ys)
    status = np.asarray(table["status"])
    failed = (rows >= 0) & (status[np.maximum(rows, 0)] != "successful")
    for ax, (col, label, log) in zip(axes, panels, strict=True):
        Z = _field(table, col, rows)
        if log:
            Z = np.abs(Z)
            positive = Z[np.isfinite(Z) & (Z > 0)]
            Z = np.log10(np.maximum(Z, positive.min() if positive.size else floor))
            mesh = ax.pcolormesh(ex, ey, Z, cmap="viridis", shading="flat")
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
        if not log:
            cb.set_ticks(np.arange(0, int(np.nanmax(np.nan_to_num(Z))) + 1))
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
        ax.plot(xx, yy, color="white", lw=1.4, ls=styles[i % len(styles)], label=t["label"])
    if thresholds:
        handles, labels = ax.get_legend_handles_labels()
        if handles:
            ax.legend(fontsize=7, loc="lower left", framealpha=0.6)
