"""ufm.plot.phase_diagram: values at rounding level get their own colour, legends stay outside
the cells (matplotlib's Agg backend, no display)."""

import numpy as np
import pytest

import ufm

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

EPS64 = np.finfo(np.float64).eps
LAMS = np.array([1e-3, 1e-2, 1e-1])


def _table():
    """A 3 x 3 grid (x fastest in the rows below) with chosen metric and loss-gap values."""
    lh, lw = np.meshgrid(LAMS, LAMS)  # row i: lambda_W = LAMS[i]
    nrc3 = np.array([[1e-20, 0.0, 3e-5], [2e-3, 1e-30, np.nan], [1e-12, 1e-9, 0.7]])
    gap = np.array([[1e-17, -2e-16, 1e-6], [1e-16, 3e-9, 0.0], [1e-12, -1e-10, 1e-15]])
    rank = np.array([[2, 2, 2], [2, 1, 1], [2, 1, 0]])  # the corner is W = 0
    loss = np.full((3, 3), 0.5)
    cols = {
        "lambda_H": lh.ravel(),
        "lambda_W": lw.ravel(),
        "seed": np.zeros(9, np.int64),
        "status": np.array(["successful"] * 8 + ["max_steps_reached"]),
        "loss": loss.ravel() + gap.ravel(),
        "loss_theory": loss.ravel(),
        "loss_gap": gap.ravel(),
        "rank": rank.ravel().astype(np.int64),
        "nrc3": nrc3.ravel(),
    }
    thresholds = [
        {"label": "c = lambda_1", "powers": {"lambda_H": 1, "lambda_W": 1}, "value": 1e-3}
    ]
    return ufm.SweepTable(cols, meta={"thresholds": thresholds}), nrc3, gap, rank


def _panels(fig):
    axes = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    return {ax.get_title(): ax for ax in axes}


def _colours(ax):
    mesh = ax.collections[0]
    rgba = mesh.to_rgba(mesh.get_array())
    return mesh, np.asarray(rgba).reshape(3, 3, 4), np.ma.getmaskarray(mesh.get_array())


def test_rounding_cells_get_the_under_colour_and_the_rest_the_scale(tmp_path):
    table, nrc3, gap, rank = _table()
    fig = ufm.plot.phase_diagram(table, tmp_path / "p.png")
    panels = _panels(fig)
    mesh, rgba, masked = _colours(panels["nrc3 (log10)"])
    grey = np.asarray(matplotlib.colors.to_rgba(ufm.plot.UNDER_COLOUR))
    np.testing.assert_allclose(mesh.cmap.get_under(), grey)
    level = ufm.plot.ROUNDING * EPS64
    rounding = np.isfinite(nrc3) & (np.abs(nrc3) <= level) & (rank > 0)
    real = np.isfinite(nrc3) & (np.abs(nrc3) > level) & (rank > 0)
    assert rounding.sum() == 3 and real.sum() == 4
    for i, j in zip(*np.nonzero(rounding), strict=True):
        np.testing.assert_allclose(rgba[i, j], grey)
    for i, j in zip(*np.nonzero(real), strict=True):
        assert not np.allclose(rgba[i, j], grey)  # on the colour scale (viridis)
    # 1e-12 and 1e-9 are real values: different colours, ordered along the scale
    assert not np.allclose(rgba[2, 0], rgba[2, 1])
    # NaN (not measured) and the rank-0 corner (NRC3 of W = 0 is undefined) are blank
    assert masked[1, 2] and masked[2, 2] and masked.sum() == 2
    # loss gap: rounding relative to the table's largest loss (0.5)
    mesh, rgba, masked = _colours(panels["|loss gap| to closed form (log10)"])
    glevel = ufm.plot.ROUNDING * EPS64 * np.max(np.abs(table["loss"]))
    for i in range(3):
        for j in range(3):
            is_grey = np.allclose(rgba[i, j], grey)
            assert is_grey == (abs(gap[i, j]) <= glevel), (i, j, gap[i, j])
    assert not masked.any()
    # the colour bars say what the grey means
    labels = [cb.ax.get_ylabel() for cb in (m.colorbar for m in (mesh,)) if cb is not None]
    assert labels and "rounding" in labels[0]


def test_dtype_sets_the_rounding_level():
    table, nrc3, _, _ = _table()
    fig = ufm.plot.phase_diagram(table, dtype=np.float32)
    _, rgba, _ = _colours(_panels(fig)["nrc3 (log10)"])
    grey = np.asarray(matplotlib.colors.to_rgba(ufm.plot.UNDER_COLOUR))
    # 1e-12 and 1e-9 are below 16 eps(float32) ~ 1.9e-6: rounding there, not in float64
    np.testing.assert_allclose(rgba[2, 0], grey)
    np.testing.assert_allclose(rgba[2, 1], grey)
    assert not np.allclose(rgba[0, 2], grey)  # 3e-5 is real in float32 too


def test_all_rounding_panel_has_no_scale_and_legends_sit_outside_the_cells(tmp_path):
    table, _, _, _ = _table()
    cols = {k: table[k] for k in table.names}
    cols["nrc3"] = np.where(np.isfinite(cols["nrc3"]), 1e-25, np.nan)
    fig = ufm.plot.phase_diagram(ufm.SweepTable(cols, meta=table.meta), tmp_path / "q.png")
    ax = _panels(fig)["nrc3 (log10)"]
    cb = ax.collections[0].colorbar
    assert list(cb.get_ticks()) == [] and "all cells at rounding level" in cb.ax.get_ylabel()
    fig.canvas.draw()
    for ax in _panels(fig).values():
        legend = ax.get_legend()
        assert legend is not None  # the threshold curve and the failed cell's cross
        assert legend.get_window_extent().y1 <= ax.get_window_extent().y0
