"""``ufm.sweep`` over the imbalance ratio of a two-level step imbalance and over
``label_smoothing``; the minority-collapse columns against the exact MSE window
(``theory.imbalanced_mse.minority_collapse_window``, docs/theory.md section 9); the
minority-collapse diagram of ``ufm.plot``.
"""

import numpy as np
import pytest

import theory
import ufm
from theory import ce_convex, label_smoothing
from ufm._sweep.imbalance import minority_columns, step_of

# K_A = 2 classes of n_A = 4, K_B = 2 minority classes; lambda_W fixed, lambda_H swept.
SIZES, LAMBDA_W, D = (4, 4, 2, 2), 0.1, 6


def _problem(sizes=SIZES, loss="mse", bias="free", **kw):
    labels = np.repeat(np.arange(len(sizes)), sizes)
    return ufm.ClassificationUFM(labels, len(sizes), 0.1, LAMBDA_W, D, loss=loss, bias=bias, **kw)


@pytest.mark.slow
def test_ratio_sweep_against_the_exact_minority_collapse_window(tmp_path):
    ratios, lams = [2.0, 4.0], [0.05, 0.15, 0.3]
    out = tmp_path / "r.csv"
    p = _problem()
    table = ufm.sweep(p, {"imbalance_ratio": ratios, "lambda_H": lams}, out=out, progress=False)
    assert table["imbalance_ratio"].tolist() == [2.0] * 3 + [4.0] * 3
    assert np.all(table["status"] == "successful")
    assert table.meta["imbalance"]["minority"] == [2, 3]
    # Each group's closed form is that of its own class sizes (an independent call).
    for i, n_B in ((1, 2), (4, 1)):
        opt = theory.imbalanced_mse.optimum((4, 4, n_B, n_B), lams[i % 3], LAMBDA_W, D, "free")
        assert table["loss_theory"][i] == pytest.approx(float(opt.loss), rel=1e-12)
    cases = set()
    for R, lH, cos in zip(
        table["imbalance_ratio"], table["lambda_H"], table["minority_cos"], strict=True
    ):
        w = theory.imbalanced_mse.minority_collapse_window(2, 4, 2, round(4 / R))
        c = lH * LAMBDA_W
        if c < w.c_low:
            cases.add("apart")
            assert cos < 1 - 1e-3
        elif c < w.c_high:
            cases.add("collapsed")
            assert 1 - cos < 1e-8
        else:
            cases.add("dead")
            assert np.isnan(cos)
    assert cases == {"apart", "collapsed", "dead"}  # the grid crosses the whole window
    assert np.max(np.abs(table["loss_gap"])) < 1e-9
    # Resumed: every point is in the file; nothing is solved or compiled again.
    again = ufm.sweep(p, {"imbalance_ratio": ratios, "lambda_H": lams}, out=out, progress=False)
    np.testing.assert_array_equal(again["minority_cos"], table["minority_cos"])


@pytest.mark.parametrize(
    "problem, grid, kw, match",
    [
        (_problem(), {"imbalance_ratio": [3.0]}, {}, r"n_B = n_A / R = 4 / 3 must be a whole"),
        (_problem(), {"imbalance_ratio": [0.5]}, {}, r"grid\['imbalance_ratio'\] = 0.5"),
        (_problem((3, 3, 3)), {"imbalance_ratio": [1.0]}, {}, r"needs a ufm.ClassificationUFM "
         r"with a two-level step imbalance.*got class sizes \(3, 3, 3\)"),
        (_problem((4, 3, 2)), {"imbalance_ratio": [2.0]}, {}, r"two-level step"),
        (_problem((4, 4, 4)), {"imbalance_ratio": [2.0]}, {"minority": [0, 1, 2]},
         r"minority must be indices in \[0, 3\) leaving a majority"),
        (_problem(), {"imbalance_ratio": [2.0]}, {"minority": [0, 1]},
         r"minority=\[0, 1\] names the larger classes"),
        (_problem(), {"lambda_H": [0.1]}, {"minority": [2, 3]}, r"minority applies to a sweep "
         r"of grid\['imbalance_ratio'\]"),
        (ufm.RegressionUFM(np.eye(3), 0.1, 0.1, 3), {"imbalance_ratio": [2.0]}, {},
         r"not sweepable fields of RegressionUFM"),
        (_problem(), {"label_smoothing": [0.0, 0.1]}, {}, r"grid\['label_smoothing'\] needs a "
         r"cross-entropy problem \(loss='ce'\), got loss='mse'"),
        (_problem(loss="ce"), {"label_smoothing": [0.5, 1.0]}, {},
         r"grid\['label_smoothing'\] must be in \[0, 1\), got \[0.5, 1.0\]"),
    ],
)  # fmt: skip
def test_bad_ratio_grids_fail_before_any_work(problem, grid, kw, match):
    with pytest.raises(ValueError, match=match):
        ufm.sweep(problem, grid, progress=False, **kw)


def test_step_of_reads_the_minority():
    assert step_of(_problem()).minority == (2, 3)
    step = step_of(_problem((3, 3, 3, 3)), minority=[1, 3])
    assert (step.K_A, step.n_A, step.K_B) == (2, 3, 2)
    assert step.sizes_at(3.0) == (3, 1, 3, 1)
    assert step_of(_problem((3, 3, 3))) is None


def test_minority_columns_on_known_classifiers():
    p = _problem()
    a, b = np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])
    W = np.stack([2 * a, 2 * b, a + b, a + b])  # minority rows equal
    out = minority_columns(p, W, (2, 3))
    assert float(out["minority_cos"]) == pytest.approx(1.0, abs=1e-15)
    assert float(out["minority_norm_ratio"]) == pytest.approx(np.sqrt(2) / 2)
    out = minority_columns(p, np.stack([a + b, a + b, a, b]), (2, 3))
    assert float(out["minority_cos"]) == pytest.approx(0.0, abs=1e-15)
    out = minority_columns(p, np.stack([a, b, a, 0 * b]), (2, 3))
    assert np.isnan(float(out["minority_cos"]))  # a dead minority class: no direction
    # lambda_W = 0 (allowed for the iterative solvers): the rows' own norms set the scale.
    out = minority_columns(p.replace(lambda_W=0.0), W, (2, 3))
    assert float(out["minority_cos"]) == pytest.approx(1.0, abs=1e-15)
    assert float(out["minority_norm_ratio"]) == pytest.approx(np.sqrt(2) / 2)


def test_collapse_curves_are_the_exact_window():
    info = {"K_A": 2, "n_A": 4, "K_B": 2, "loss": "mse", "bias": "free"}
    curves = ufm.plot.minority_collapse_curves(info, [1.0, 4.0])
    ratio = curves[0]["ratio"]
    assert ratio.tolist() == [4.0, 2.0, 4 / 3]
    for R, lo, hi in zip(ratio, curves[0]["lambda"], curves[1]["lambda"], strict=True):
        w = theory.imbalanced_mse.minority_collapse_window(2, 4, 2, round(4 / R))
        assert (lo, hi) == (w.lambda_low, w.lambda_high)
    dead = ufm.plot.minority_collapse_curves({**info, "bias": "none"}, [1.0, 4.0])
    np.testing.assert_allclose(
        dead[0]["lambda"], np.sqrt([1, 2, 3]) / (8 + 2 * np.array([1, 2, 3]))
    )


def test_minority_collapse_diagram_draws_cells_and_window(tmp_path):
    pytest.importorskip("matplotlib")
    R, lam = np.meshgrid([2.0, 4.0], [0.05, 0.15, 0.3], indexing="ij")
    cos = np.array([-0.2, 1.0, np.nan, -0.1, 1.0 - 1e-12, np.nan])
    table = ufm.SweepTable(
        {
            "imbalance_ratio": R.ravel(),
            "lambda_H": lam.ravel(),
            "seed": np.zeros(6, np.int64),
            "status": np.array(["successful"] * 5 + ["max_steps_reached"]),
            "loss": np.ones(6),
            "minority_cos": cos,
        },
        meta={
            "imbalance": {
                "K_A": 2,
                "n_A": 4,
                "K_B": 2,
                "loss": "mse",
                "bias": "free",
                "lambda_W": LAMBDA_W,
            }
        },  # fmt: skip
    )
    fig = ufm.plot.minority_collapse_diagram(table, tmp_path / "mc.png")
    assert (tmp_path / "mc.png").stat().st_size > 0
    ax = fig.axes[0]
    mesh = ax.collections[0].get_array()
    assert mesh.shape == (2, 3) and np.ma.count_masked(mesh) == 2  # the dead cells
    labels = ax.get_legend_handles_labels()[1]
    assert "not successful" in labels and any("n_B / N^2" in t for t in labels)
    assert "grey: minority rows zero" in labels


def test_cross_entropy_diagram_draws_the_swept_label_smoothing(tmp_path):
    # The base problem's delta (0) is not the one swept: the curve follows the column.
    pytest.importorskip("matplotlib")
    K_A, n_A, K_B = 2, 4, 2
    table = ufm.SweepTable(
        {
            "imbalance_ratio": np.array([2.0, 4.0]),
            "label_smoothing": np.array([0.2, 0.2]),
            "lambda_H": np.array([0.05, 0.05]),
            "seed": np.zeros(2, np.int64),
            "status": np.array(["successful"] * 2),
            "loss": np.ones(2),
            "minority_cos": np.array([0.5, 1.0]),
        },
        meta={
            "imbalance": {
                "K_A": K_A,
                "n_A": n_A,
                "K_B": K_B,
                "loss": "ce",
                "bias": "none",
                "lambda_W": 0.05,
                "label_smoothing": 0.0,
            }
        },  # fmt: skip
    )
    ax = ufm.plot.minority_collapse_diagram(table).axes[0]
    (line,) = [ln for ln in ax.get_lines() if ln.get_label().startswith("collapse starts")]
    lam, ratio = line.get_data()
    n_B = n_A / np.asarray(ratio)
    np.testing.assert_allclose(lam, 0.8 * np.sqrt(n_B) / (K_A * n_A + K_B * n_B), rtol=1e-12)


@pytest.mark.slow
def test_label_smoothing_is_a_traced_grid_key():
    # Balanced K = 4, n = 3, no bias: the L-BFGS solutions against the smoothed closed form
    # (theory.label_smoothing), both values of delta in one compiled chunk.
    p = _problem((3, 3, 3, 3), loss="ce", bias="none")
    deltas = [0.0, 0.1]
    table = ufm.sweep(
        p, {"label_smoothing": deltas, "lambda_H": [5e-3]}, progress=False,
        chunk_size=2,
    )  # fmt: skip
    assert np.all(table["status"] == "successful")
    for delta, loss in zip(table["label_smoothing"], table["loss"], strict=True):
        opt = label_smoothing.optimum(4, 3, 5e-3, LAMBDA_W, delta, D)
        assert loss == pytest.approx(float(opt.loss), rel=1e-9)


def test_cross_entropy_curve_is_the_certified_threshold():
    # The diagram's CE boundary (the exact level) against the bisection on certified convex
    # optima (theory.ce_convex.minority_collapse_threshold), at R = 2 and R = 4.
    info = {"K_A": 2, "n_A": 4, "K_B": 2, "loss": "ce", "bias": "free"}
    (curve,) = ufm.plot.minority_collapse_curves(info, [2.0, 4.0])
    assert curve["ratio"].tolist() == [4.0, 2.0]
    for R, lam in zip(curve["ratio"], curve["lambda"], strict=True):
        n_B = round(4 / R)
        thr = ce_convex.minority_collapse_threshold(2, 2, R, n_B=n_B, bias="free", rtol=1e-6)
        assert lam == pytest.approx(thr.lambda_threshold, rel=2e-6)
