"""ufm.sweep: the table against the closed forms, one compilation per sweep, resumable files,
bad input, plots.

The regression case here (targets ``default_targets(3, 40, 0)``, ``d = 5``, a 4 x 4 grid, two
seeds, chunks of 8) is the one tests/test_sweep_cli.py and tests/test_sharding.py run too, so
the three files share one compiled chunk when they run in one session.
"""

import os
import sys

import jax
import numpy as np
import pytest
from conftest import CompileCounter

import ufm
from ufm._cli.check import default_targets
from ufm._sweep.points import run_chunk

LAMS = np.geomspace(1e-3, 1.0, 4)
GRID = {"lambda_H": LAMS, "lambda_W": LAMS}
KW = {"seeds": 2, "chunk_size": 8}


def regression_problem():
    return ufm.RegressionUFM(default_targets(3, 40, 0), 0.1, 0.1, 5)


@pytest.fixture(scope="module")
def table():
    before = run_chunk._cache_size()
    t = ufm.sweep(regression_problem(), GRID, **KW)
    # Four chunks of 8 points, at most one new executable (none if another file compiled it).
    assert run_chunk._cache_size() - before <= 1
    return t


@pytest.mark.slow
def test_regression_table_matches_closed_form(table):
    names = table.names
    assert names[:5] == ["lambda_H", "lambda_W", "seed", "status", "loss"]
    assert names[5:11] == ["loss_theory", "loss_gap", "err_gram_W", "err_gram_H"] + [
        "rank_theory",
        "rank",
    ]
    assert names[11:] == ["nrc1", "nrc2", "nrc3", "steps", "grad_norm"]
    assert len(table) == 32
    # itertools.product order, the seed fastest.
    np.testing.assert_array_equal(table["lambda_H"], np.repeat(LAMS, 8))
    np.testing.assert_array_equal(table["lambda_W"], np.tile(np.repeat(LAMS, 2), 4))
    np.testing.assert_array_equal(table["seed"], np.tile([0, 1], 16))
    assert np.all(table["status"] == "successful"), table["status"]
    assert np.max(np.abs(table["loss_gap"])) < 1e-10
    assert np.max(table["err_gram_W"]) < 1e-8 and np.max(table["err_gram_H"]) < 1e-8
    np.testing.assert_array_equal(table["rank"], table["rank_theory"])
    assert len(np.unique(table["rank_theory"])) >= 3  # the grid crosses the thresholds
    kept = table["rank_theory"] > 0
    assert np.max(table["nrc3"][kept]) < 1e-12
    # Not measured on the n x n path: NaN, not a made-up 0.
    assert np.all(np.isnan(table["nrc1"])) and np.all(np.isnan(table["nrc2"]))
    assert np.all(table["steps"] > 0)
    # The closed-form loss is the one of theory.regression at that point.
    import theory

    i = 13
    p = ufm.RegressionUFM(default_targets(3, 40, 0), table["lambda_H"][i], table["lambda_W"][i], 5)
    ref = theory.regression.optimum_of(p)
    np.testing.assert_allclose(table["loss_theory"][i], float(ref.loss), rtol=1e-13)


@pytest.mark.slow
def test_reduced_path_equals_solve_of_each_point(table):
    # The n x n path runs the exact solver's own iteration: the same loss and steps as
    # ufm.solve at a point (which recovers H and evaluates the full objective).
    for i in (0, 21):
        p = ufm.RegressionUFM(
            default_targets(3, 40, 0), table["lambda_H"][i], table["lambda_W"][i], 5
        )
        sol = ufm.solve(p, "exact", key=jax.random.PRNGKey(int(table["seed"][i])))
        np.testing.assert_allclose(table["loss"][i], float(sol.loss), rtol=1e-12)
        assert table["steps"][i] == int(sol.num_steps)
        assert ufm.Status(int(sol.status)).name == table["status"][i]


def test_new_values_compile_nothing(table):
    grid = {"lambda_H": LAMS * 1.5, "lambda_W": LAMS * 0.7}
    size = run_chunk._cache_size()
    with CompileCounter() as c:
        t2 = ufm.sweep(regression_problem(), grid, **KW)
    assert c.count == 0, f"a second sweep with new values compiled {c.count} executables"
    assert run_chunk._cache_size() == size
    assert np.all(t2["status"] == "successful") and np.max(np.abs(t2["loss_gap"])) < 1e-10
    assert not np.allclose(t2["loss"], table["loss"])


def test_resume_repairs_a_torn_line_and_never_duplicates(table, tmp_path):
    out = tmp_path / "r.csv"
    full = ufm.sweep(regression_problem(), GRID, out=out, **KW)
    for k in table.names:
        np.testing.assert_array_equal(full[k], table[k])
    text = out.read_text()
    lines = text.split("\n")
    assert lines[0].startswith("# ufm-sweep/1 fingerprint=")
    assert lines[2] == ",".join(table.names) and len(lines) == 3 + 32 + 1
    # An interrupted run: 19 complete rows and half of the 20th.
    cut = "\n".join(lines[: 3 + 19]) + "\n" + lines[3 + 19][:25]
    out.write_text(cut)
    with CompileCounter() as c:
        again = ufm.sweep(regression_problem(), GRID, out=out, **KW)
    assert c.count == 0  # the resumed run's chunks have the first run's shape
    for k in table.names:
        np.testing.assert_array_equal(again[k], table[k])
    rows = out.read_text().split("\n")[3:-1]
    assert len(rows) == 32 and len(set(rows)) == 32
    assert sorted(rows) == sorted(lines[3:-1])  # no row lost, none half-written
    back = ufm.SweepTable.from_csv(out)
    assert sorted(back["loss"].tolist()) == sorted(table["loss"].tolist())
    # A finished file: a rerun solves nothing and returns the same table.
    done = ufm.sweep(regression_problem(), GRID, out=out, **KW)
    np.testing.assert_array_equal(done["loss"], table["loss"])
    # Killed while the header itself was written: the header is written again.
    out.write_text(text[:30])
    ufm.sweep(regression_problem(), GRID, out=out, **KW)
    assert out.read_text() == text


def test_a_file_of_another_sweep_is_an_error_and_left_alone(tmp_path):
    out = tmp_path / "r.csv"
    ufm.sweep(regression_problem(), {"lambda_H": LAMS[:2], "lambda_W": LAMS[:4]}, out=out, **KW)
    before = out.read_bytes()
    other = {"lambda_H": LAMS[:2], "lambda_W": LAMS[:4] * 2}
    with pytest.raises(ValueError, match="different sweep.*grid"):
        ufm.sweep(regression_problem(), other, out=out, **KW)
    Y = default_targets(3, 40, 1)
    with pytest.raises(ValueError, match="different sweep.*problem"):
        ufm.sweep(ufm.RegressionUFM(Y, 0.1, 0.1, 5), GRID, out=out, **KW)
    assert out.read_bytes() == before
    foreign = tmp_path / "mine.csv"
    foreign.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="not a ufm sweep results file"):
        ufm.sweep(regression_problem(), GRID, out=foreign, **KW)
    assert foreign.read_text() == "a,b\n1,2\n"


@pytest.mark.parametrize(
    ("grid", "kwargs", "match"),
    [
        ({}, {}, "grid is empty"),
        ({"lambda_X": [1.0]}, {}, "not sweepable fields"),
        ({"lambda_H": []}, {}, "is empty"),
        ({"lambda_H": [0.1, np.nan]}, {}, "finite"),
        ({"lambda_H": [0.1, -1.0]}, {}, ">= 0"),
        ({"lambda_H": [0.1, 0.1]}, {}, "duplicate"),
        ({"lambda_H": [[0.1]]}, {}, "1-D"),
        ({"lambda_H": [0.0, 0.1]}, {"solver": "exact"}, "needs lambda_H > 0"),
        ({"lambda_H": [0.1]}, {"seeds": 0}, "seeds"),
        ({"lambda_H": [0.1]}, {"seeds": [1, 1]}, "duplicates"),
        ({"lambda_H": [0.1]}, {"chunk_size": 0}, "chunk_size"),
        ({"lambda_H": [0.1]}, {"out": "."}, "is a directory"),
        ({"lambda_H": [0.1]}, {"out": "/nonexistent-dir/r.csv"}, "does not exist"),
    ],
)
def test_bad_input_is_a_clear_error_before_any_work(grid, kwargs, match):
    with CompileCounter() as c, pytest.raises((ValueError, TypeError), match=match):
        ufm.sweep(regression_problem(), grid, **kwargs)
    assert c.count == 0


def test_lambda_b_needs_a_regularised_bias():
    import theory

    labels = theory.classification.balanced_labels(3, 4)
    p = ufm.ClassificationUFM(labels, 3, 1e-3, 1e-3, 5, loss="mse", bias="free")
    with pytest.raises(ValueError, match="regularised bias"):
        ufm.sweep(p, {"lambda_b": [0.1, 1.0]})


def test_not_a_grid_or_problem():
    with pytest.raises(TypeError, match="grid must be a dict"):
        ufm.sweep(regression_problem(), [("lambda_H", [1.0])])
    with pytest.raises(TypeError, match="problem must be a ufm problem"):
        ufm.sweep("regression", GRID)


def test_unwritable_output_is_an_error(tmp_path):
    """An existing file this process may not write: a read-only file, or for root (who may
    write any file) a read-only kernel setting under /proc/sys."""
    out = tmp_path / "r.csv"
    out.write_text("")
    out.chmod(0o444)
    if os.access(out, os.W_OK):
        out = "/proc/sys/kernel/osrelease"
    assert os.path.isfile(out) and not os.access(out, os.W_OK)
    with pytest.raises(ValueError, match="not readable and writable"):
        ufm.sweep(regression_problem(), GRID, out=out, **KW)


def test_progress_lines_and_callback(table, capsys, monkeypatch):
    seen = []
    ufm.sweep(regression_problem(), GRID, progress=lambda *a: seen.append(a), **KW)
    assert [s[:2] for s in seen] == [(8, 32), (16, 32), (24, 32), (32, 32)]
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)  # without tqdm: one line per chunk
    ufm.sweep(regression_problem(), GRID, progress=True, **KW)
    err = capsys.readouterr().err.strip().split("\n")
    assert len(err) == 4 and err[-1].startswith("ufm sweep: 32/32 points (100%)")
    assert "points/s" in err[0] and "s left" in err[0]


def test_progress_bar_with_tqdm(table, capsys):
    pytest.importorskip("tqdm", reason="tqdm is in the test extra")
    ufm.sweep(regression_problem(), GRID, progress=True, **KW)
    err = capsys.readouterr().err
    assert "32/32" in err and "ufm sweep: 32/32 points" not in err


def test_table_csv_and_pandas(table, tmp_path):
    path = tmp_path / "t.csv"
    table.to_csv(path)
    lines = path.read_text().strip().split("\n")
    assert lines[0] == ",".join(table.names) and len(lines) == 33
    first = dict(zip(table.names, lines[1].split(","), strict=True))
    assert float(first["loss"]) == table["loss"][0]  # floats round-trip exactly
    assert first["status"] == "successful"
    pd = pytest.importorskip("pandas")
    df = table.to_pandas()
    assert list(df.columns) == table.names and isinstance(df, pd.DataFrame)


@pytest.mark.slow
def test_classification_mse_with_restarts_matches_closed_form():
    import theory

    labels = theory.classification.balanced_labels(3, 4)
    p = ufm.ClassificationUFM(labels, 3, 1e-3, 1e-3, 5, loss="mse", bias="free")
    lams = np.array([1e-3, 3e-2, 0.2])
    t = ufm.sweep(p, {"lambda_H": lams, "lambda_W": lams[:2]}, restarts=2)
    assert t.names[-1] == "restarts_successful" and len(t) == 6
    assert {"nc1", "nc2", "nc3", "nc4"} <= set(t.names)
    assert np.all(t["status"] == "successful") and np.all(t["restarts_successful"] == 1.0)
    assert np.max(np.abs(t["loss_gap"])) < 1e-10
    assert np.max(t["err_gram_W"]) < 1e-8 and np.max(t["err_class_mean_gram"]) < 1e-8
    np.testing.assert_array_equal(t["rank"], t["rank_theory"])
    kappa = 3 * np.sqrt(4 * t["lambda_H"] * t["lambda_W"])
    np.testing.assert_array_equal(t["rank_theory"] == 0, kappa >= 1)  # the kappa = 1 threshold
    live = kappa < 1
    assert np.max(t["nc2"][live]) < 1e-8 and np.max(t["nc3"][live]) < 1e-8


@pytest.mark.slow
def test_deep_linear_sweep_against_theory_deep():
    # Full path (L-BFGS on every variable), layer-wise metrics, closed form from theory.deep.
    Y = default_targets(3, 24, 0)
    p = ufm.DeepUFM(Y, 1e-3, 1e-3, (4, 4), "linear", False)
    t = ufm.sweep(p, {"lambda_H": [1e-3, 1e-2], "lambda_W": [1e-3, 3e-2]}, solver="lbfgs", seeds=2)
    layered = [f"{m}_layer{i}" for m in ("nrc1", "nrc2", "nrc3") for i in (1, 2)]
    assert set(layered) <= set(t.names) and np.all(np.isnan(t["err_gram_H"]))
    assert np.all(t["status"] == "successful") and np.all(t["rank_theory"] >= 2)
    # The closed form is the global minimum: no run goes below it, and the better of the two
    # seeds reaches it at every point (a stationary point of a deep UFM need not be global).
    assert np.all(t["loss_gap"] > -1e-12)
    best = np.minimum(t["loss_gap"][0::2], t["loss_gap"][1::2])
    assert np.max(best) < 1e-10
    hit = t["loss_gap"] < 1e-10
    assert np.max(t["err_gram_W"][hit]) < 1e-8
    np.testing.assert_array_equal(t["rank"][hit], t["rank_theory"][hit])


def test_plot_phase_diagram_headless(table, tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "phase.png"
    fig = ufm.plot.phase_diagram(table, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
    axes = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert [ax.get_title() for ax in axes] == [
        "collapse rank (found)",
        "nrc3 (log10)",
        "|loss gap| to closed form (log10)",
    ]
    # One dashed curve lambda_H lambda_W = lambda_i(Sigma) per eigenvalue, on every panel.
    assert len(table.meta["thresholds"]) == 3
    assert all(len(ax.get_legend().get_texts()) == 3 for ax in axes)
    with pytest.raises(ValueError, match="no column"):
        ufm.plot.phase_diagram(table, x="lambda_b")
