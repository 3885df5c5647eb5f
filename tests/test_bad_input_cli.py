"""The bad-input catalogue of ``ufm check``: every bad option or ``--targets`` file
exits 2 with a message naming the option, before any work (nothing on stdout: the heading is
printed just before the solve), and never with a traceback.

In-process through ``ufm._cli.main`` (fast); three cases also as a subprocess to prove that no
traceback reaches the user.
"""

import re
import subprocess
import sys

import numpy as np
import pytest

from ufm._cli import main

Y = np.random.default_rng(0).normal(size=(20, 3))


def _file(tmp_path, name, data, **kw):
    """Write ``data`` (an array, or raw bytes for a non-.npy file) and return the path."""
    f = tmp_path / name
    if isinstance(data, bytes):
        f.write_bytes(data)
    elif name.endswith(".npz"):
        np.savez(f, Y=data)
    else:
        np.save(f, data, **kw)
    return str(f)


TARGET_FILES = [
    (
        "strings.npy",
        np.array([["a", "b"], ["c", "d"]]),
        r"--targets '.*' must hold real numbers, got dtype <U1",
        "strings",
    ),
    ("archive.npz", Y, r"--targets '.*' is an .npz archive holding \['Y'\]", "npz-archive"),
    (
        "complex.npy",
        Y + 1j,
        r"--targets '.*' must be real, got complex dtype complex128",
        "complex",
    ),
    (
        "object.npy",
        np.array([[1.0, None], [2.0, 3.0]], dtype=object),
        r"--targets: cannot read '.*' as a .npy file: .*allow_pickle",
        "object-array",
    ),
    ("nan.npy", np.where(np.eye(20, 3) > 0, np.nan, Y), r"--targets '.*' must be finite", "nan"),
    ("inf.npy", np.where(np.eye(20, 3) > 0, -np.inf, Y), r"--targets '.*' must be finite", "inf"),
    (
        "vector.npy",
        Y[:, 0],
        r"--targets '.*' must hold a 2-D array \(M, n\).*got shape \(20,\)",
        "vector",
    ),
    (
        "one-row.npy",
        Y[:1],
        r"--targets '.*' must hold .* M >= 2 samples.*got shape \(1, 3\)",
        "one-row",
    ),
    ("empty.npy", b"", r"--targets: cannot read '.*' as a .npy file", "empty-file"),
    (
        "table.csv.npy",
        b"1.0,2.0\n3.0,4.0\n",
        r"--targets: cannot read '.*' as a .npy file",
        "csv-text",
    ),
]


@pytest.mark.parametrize(
    "name, data, match", [pytest.param(*c[:3], id=f"targets-{c[3]}") for c in TARGET_FILES]
)
def test_bad_targets_file_exits_2(name, data, match, tmp_path, capsys):
    kw = {} if isinstance(data, bytes) or name.endswith(".npz") else {"allow_pickle": True}
    path = _file(tmp_path, name, data, **kw)
    _assert_exit_2(["check", "--targets", path], match, capsys)


def test_missing_and_unreadable_targets_exit_2(tmp_path, capsys):
    _assert_exit_2(
        ["check", "--targets", str(tmp_path / "no.npy")], r"--targets: cannot read", capsys
    )
    _assert_exit_2(["check", "--targets", str(tmp_path)], r"--targets: cannot read", capsys)


OPTIONS = [
    (["--seed", "-1"], r"--seed must be an int in \[0, 2\*\*32\), got -1", "seed-negative"),
    (["--seed", str(2**32)], r"--seed must be an int in \[0, 2\*\*32\)", "seed-too-large"),
    (["--seed", "abc"], r"argument --seed: invalid int value", "seed-not-int"),
    (["--tol", "-1"], r"--tol must be a finite number > 0, got -1.0", "tol-negative"),
    (["--tol", "nan"], r"--tol must be a finite number > 0, got nan", "tol-nan"),
    (["--tol", "0"], r"--tol must be a finite number > 0, got 0.0", "tol-zero"),
    (
        ["--lambda-H", "0"],
        r"--lambda-H must be a finite number > 0 \(the closed form and the exact solver need "
        r"lambdas > 0\), got 0.0",
        "lambda-H-zero",
    ),
    (["--lambda-H", "-1"], r"--lambda-H must be a finite number > 0", "lambda-H-negative"),
    (["--lambda-W", "nan"], r"--lambda-W must be a finite number > 0.*got nan", "lambda-W-nan"),
    (["--lambda-H", "inf"], r"--lambda-H must be a finite number > 0.*got inf", "lambda-H-inf"),
    (
        ["--problem", "ce", "--lambda-W", "0"],
        r"--lambda-W must be a finite number > 0",
        "classification-lambda-W-zero",
    ),
    (
        ["--dtype", "float32", "--lambda-H", "1e-60"],
        r"--lambda-H = 1e-60 is not representable in float32",
        "lambda-H-underflows-float32",
    ),
    (
        ["--solver", "gd", "--lr", "-0.1"],
        r"--lr must be a finite number > 0, got -0.1",
        "lr-negative",
    ),
    (["--solver", "adam", "--lr", "nan"], r"--lr must be a finite number > 0, got nan", "lr-nan"),
    (["--lr", "0.1"], r"--lr applies to gd, momentum and adam", "lr-with-exact"),
    (
        ["--check-every", "4"],
        r"--check-every applies to gd, momentum and adam",
        "check-every-with-exact",
    ),
    (
        ["--solver", "momentum", "--check-every", "0"],
        r"--check-every must be an int from 1 to 2\*\*30, got 0",
        "check-every-zero",
    ),
    (["--max-steps", "-1"], r"--max-steps must be an int >= 0, got -1", "max-steps-negative"),
    (
        ["--d", str(10**12)],
        r"--M 1000, --n 3, --d 1000000000000 are too large.*needs [\d.e+]+ GB",
        "d-1e12-memory",
    ),
    (["--M", str(10**13)], r"--M 10000000000000.*too large.*GB", "M-1e13-memory"),
    (["--M", "1"], r"--M must be an int >= 2, got 1", "M-one"),
    (["--n", "0"], r"--n must be an int >= 1, got 0", "n-zero"),
    (
        ["--problem", "ce", "--classes", str(10**6)],
        r"--classes 1000000, --per-class 25.*too large.*GB",
        "classes-1e6-memory",
    ),
    (["--problem", "ce", "--per-class", "0"], r"--per-class >= 1", "per-class-zero"),
    (
        ["--problem", "mse", "--bias", "-1"],
        r"--bias must be none, free or a number lambda_b >= 0, got '-1'",
        "bias-negative",
    ),
    (
        ["--problem", "mse", "--bias", "nan"],
        r"--bias must be none, free or a number lambda_b >= 0, got 'nan'",
        "bias-nan",
    ),
    (["--problem", "mse", "--bias", "true"], r"--bias must be none, free or a number", "bias-true"),
    (["--dtype", "float16"], r"argument --dtype: invalid choice: 'float16'", "dtype-float16"),
    (["--problem", "svm"], r"argument --problem: invalid choice", "problem-unknown"),
]


@pytest.mark.parametrize("args, match", [pytest.param(a, m, id=i) for a, m, i in OPTIONS])
def test_bad_option_exits_2_before_any_work(args, match, capsys):
    _assert_exit_2(["check", *args], match, capsys)


def _assert_exit_2(argv, match, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""  # nothing ran: the heading is printed just before the solve
    assert "Traceback" not in err
    assert re.search(match, err), err


def test_catalogue_size():
    assert len(TARGET_FILES) + 2 + len(OPTIONS) >= 30


@pytest.mark.slow
@pytest.mark.parametrize(
    "args, match",
    [
        pytest.param(
            ["--lambda-H", "0"], r"--lambda-H must be a finite number > 0", id="lambda-H-zero"
        ),
        pytest.param(
            ["--seed", "-1"], r"--seed must be an int in \[0, 2\*\*32\)", id="seed-negative"
        ),
        pytest.param(None, r"--targets '.*' must be real, got complex", id="targets-complex"),
    ],
)
def test_subprocess_exit_2_without_traceback(args, match, tmp_path):
    if args is None:
        args = ["--targets", _file(tmp_path, "c.npy", Y + 1j)]
    code = "import sys; from ufm._cli import main; sys.exit(main())"
    r = subprocess.run(
        [sys.executable, "-c", code, "check", *args], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""
    assert re.search(match, r.stderr), r.stderr
