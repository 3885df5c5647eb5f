"""``ufm check`` and ``ufm sweep`` with ``--class-sizes``, ``--label-smoothing`` and
``--imbalance-ratio``: the exact MSE optimum of Dang et al.'s setting through the command line
(its closed form from ``theory.reference``), and every bad value of the new options exiting 2
before any work with a message naming the option, never a traceback.
"""

import re

import numpy as np
import pytest

from ufm._cli import main
from ufm._cli._problems import parse_class_sizes


def _exit_2(argv, match, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    out, err = capsys.readouterr()
    assert out == "" and "Traceback" not in err
    assert re.search(match, err), err


CHECK = [
    (["--problem", "mse", "--class-sizes", "40,20,0,8"], r"--class-sizes: every class needs a "
     r"sample \(sizes >= 1\); class 2 has size 0", "size-zero"),
    (["--problem", "mse", "--class-sizes", "40,-3"], r"--class-sizes: .*class 1 has size -3",
     "size-negative"),
    (["--problem", "mse", "--class-sizes", "40,2x"], r"--class-sizes must be a comma list of "
     r"K >= 2 ints >= 1", "size-not-int"),
    (["--problem", "mse", "--class-sizes", "4.5,3"], r"--class-sizes must be a comma list",
     "size-float"),
    (["--problem", "mse", "--class-sizes", "40"], r"--class-sizes needs at least 2 classes",
     "one-class"),
    (["--problem", "mse", "--class-sizes", "40,20", "--per-class", "5"],
     r"--class-sizes and --per-class both given", "per-class-conflict"),
    (["--problem", "ce", "--class-sizes", "40,20,8", "--classes", "4"],
     r"--classes 4 does not match --class-sizes '40,20,8' \(3 classes\)", "classes-mismatch"),
    (["--class-sizes", "40,20"], r"--class-sizes applies to --problem mse\|ce", "regression"),
    (["--problem", "deep", "--class-sizes", "4,2"], r"--class-sizes applies to --problem mse\|ce",
     "deep"),
    (["--problem", "ce", "--label-smoothing", "1"], r"--label-smoothing must be a number in "
     r"\[0, 1\), got 1.0", "delta-one"),
    (["--problem", "ce", "--label-smoothing", "-0.1"], r"--label-smoothing must be a number in "
     r"\[0, 1\)", "delta-negative"),
    (["--problem", "ce", "--label-smoothing", "nan"], r"--label-smoothing must be a number",
     "delta-nan"),
    (["--problem", "mse", "--label-smoothing", "0.1"], r"--label-smoothing applies to --problem "
     r"ce \(cross-entropy\), got --problem mse", "delta-with-mse"),
    (["--problem", "ce", "--label-smoothing", "x"], r"argument --label-smoothing: invalid float",
     "delta-not-number"),
]  # fmt: skip


@pytest.mark.parametrize("args, match", [pytest.param(a, m, id=i) for a, m, i in CHECK])
def test_check_bad_class_options_exit_2(args, match, capsys):
    _exit_2(["check", *args], match, capsys)


SWEEP = [
    (["--problem", "mse", "--class-sizes", "4,0", "--lambda-H", "0.1"],
     r"class 1 has size 0", "size-zero"),
    (["--problem", "mse", "--class-sizes", "4,4,2,2", "--per-class", "2", "--lambda-H", "0.1"],
     r"--class-sizes and --per-class both given", "per-class-conflict"),
    (["--problem", "mse", "--class-sizes", "4,4,2,2", "--imbalance-ratio", "3",
      "--lambda-H", "0.1"], r"--imbalance-ratio 3: R must be >= 1 with n_B = n_A / R a whole "
     r"number \(n_A = 4", "ratio-not-whole"),
    (["--problem", "mse", "--class-sizes", "4,4,2,2", "--imbalance-ratio", "0.5,1",
      "--lambda-H", "0.1"], r"--imbalance-ratio 0.5: R must be >= 1", "ratio-below-1"),
    (["--problem", "mse", "--imbalance-ratio", "2", "--lambda-H", "0.1"],
     r"--imbalance-ratio needs --class-sizes with two sizes", "ratio-without-sizes"),
    (["--problem", "mse", "--class-sizes", "4,3,2", "--imbalance-ratio", "2",
      "--lambda-H", "0.1"], r"--imbalance-ratio needs --class-sizes with exactly two distinct "
     r"sizes", "ratio-three-sizes"),
    (["--problem", "regression", "--imbalance-ratio", "2", "--lambda-H", "0.1"],
     r"--class-sizes and --imbalance-ratio apply to --problem mse\|ce", "ratio-regression"),
    (["--problem", "ce", "--label-smoothing", "0,1"], r"--label-smoothing values must be in "
     r"\[0, 1\), got \[1.0\]", "delta-one"),
    (["--problem", "mse", "--label-smoothing", "0,0.1"], r"--label-smoothing applies to "
     r"--problem ce", "delta-with-mse"),
    (["--problem", "ce", "--label-smoothing", "a,b"], r"--label-smoothing 'a,b': give LO:HI:NUM "
     r"or a comma list", "delta-not-numbers"),
    (["--problem", "mse", "--class-sizes", "4,4,4,2", "--imbalance-ratio", "2",
      "--lambda-H", "0.1", "--plot", "x.png"], r"--plot with --imbalance-ratio needs at least "
     r"two minority classes", "plot-one-minority"),
    (["--problem", "mse", "--class-sizes", "4,4,2,2", "--imbalance-ratio", "1,2"],
     r"give at least one of --lambda-H, --lambda-W, --label-smoothing", "ratio-alone"),
]  # fmt: skip


@pytest.mark.parametrize("args, match", [pytest.param(a, m, id=i) for a, m, i in SWEEP])
def test_sweep_bad_class_options_exit_2(args, match, tmp_path, capsys):
    out = tmp_path / "r.csv"
    _exit_2(["sweep", "--out", str(out), "--no-cache", "--quiet", *args], match, capsys)
    assert not out.exists()


def test_parse_class_sizes():
    assert parse_class_sizes("40,20,8,8") == (40, 20, 8, 8)
    assert parse_class_sizes(" 3, 1") == (3, 1)


@pytest.mark.parametrize(
    "bias, value",
    [
        pytest.param("none", "0.389674093369", marks=pytest.mark.slow, id="none"),
        pytest.param("free", "0.265882848880", id="free"),
    ],
)
def test_check_dang_setting_against_the_imbalanced_closed_form(bias, value, capsys):
    # Dang et al.'s setting (docs/theory.md section 9): the exact solver against
    # theory.imbalanced_mse through theory.reference (the CLI holds no formula).
    argv = ["check", "--problem", "mse", "--class-sizes", "40,20,8,8", "--lambda-H", "0.035",
            "--lambda-W", "0.035", "--d", "8", "--no-cache"]  # fmt: skip
    assert main([*argv, "--bias", bias]) == 0
    out = capsys.readouterr().out
    assert "K = 4 classes of sizes (40, 20, 8, 8), N = 76" in out
    theory_loss = re.search(r"loss \((?:closed form|theory)\)\s+([\d.]+)", out).group(1)
    solver_loss = re.search(r"loss \(solver\)\s+([\d.]+)", out).group(1)
    assert float(theory_loss) == pytest.approx(float(value), abs=1e-12)
    assert float(solver_loss) == pytest.approx(float(theory_loss), rel=1e-9)
    assert "PASS" in out


@pytest.mark.slow
def test_sweep_cli_imbalance_ratio_matches_the_api(tmp_path, capsys):
    import ufm

    out = tmp_path / "r.csv"
    argv = ["sweep", "--problem", "mse", "--class-sizes", "4,4,2,2", "--bias", "free",
            "--imbalance-ratio", "2,4", "--lambda-H", "0.02,0.05", "--lambda-W", "0.02",
            "--d", "6", "--out", str(out), "--no-cache", "--quiet"]  # fmt: skip
    assert main(argv) == 0
    assert "8 points" not in capsys.readouterr().out  # 2 ratios x 2 lambdas = 4 points
    table = ufm.SweepTable.from_csv(out)
    assert len(table) == 4
    assert table["imbalance_ratio"].tolist() == [2.0, 2.0, 4.0, 4.0]
    assert table.meta["imbalance"]["minority"] == [2, 3]
    assert np.all(np.abs(table["loss_gap"]) < 1e-9)


@pytest.mark.slow
@pytest.mark.parametrize(
    "args",
    [
        pytest.param(
            ["--classes", "4", "--per-class", "3", "--label-smoothing", "0.1"], id="smooth"
        ),
        pytest.param(["--class-sizes", "6,6,2,2"], id="sizes"),
    ],
)
def test_check_cross_entropy_through_the_reference(args, capsys):
    # The CLI passes the options to ufm.ClassificationUFM and compares through
    # theory.reference (the smoothed closed form, or the certified convex optimum).
    argv = ["check", "--problem", "ce", "--bias", "none", "--no-cache", *args]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "loss = ce" in out and "PASS" in out
    if "--label-smoothing" in args:
        assert "label smoothing 0.1" in out
