"""``ufm sweep``: the command line against ufm.sweep, value specs, bad arguments, the plot, the
compilation cache helper.

The command runs in-process (``ufm._cli.main``) with ``--no-cache`` (so that no global JAX
setting changes here) on the instance of tests/test_sweep.py, whose compiled chunk it reuses.
"""

import numpy as np
import pytest

import ufm
from ufm._cli import main
from ufm._cli._cache import cache_dir, enable_compilation_cache
from ufm._cli.check import default_targets
from ufm._cli.sweep import parse_values

ARGS = ["sweep", "--n", "3", "--M", "40", "--d", "5", "--seeds", "2", "--chunk-size", "8"]
GRID = ["--lambda-H", "1e-3:1:4", "--lambda-W", "1e-3:1:4", "--no-cache", "--quiet"]


def test_parse_values():
    np.testing.assert_array_equal(parse_values("1e-3:1:4", "--x"), np.geomspace(1e-3, 1.0, 4))
    assert parse_values("1e-3:1:4", "--x")[[0, -1]].tolist() == [1e-3, 1.0]  # inclusive
    np.testing.assert_array_equal(parse_values("0,0.5, 2", "--x"), [0.0, 0.5, 2.0])
    np.testing.assert_array_equal(parse_values("0.3:0.3:1", "--x"), [0.3])


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("1:0:5", "reversed range"),
        ("1e-3:1:0", "NUM must be >= 1"),
        ("1e-3:1:-2", "NUM must be >= 1"),
        ("0:1:5", "> 0"),
        ("1e-3:1", "LO:HI:NUM"),
        ("1e-3:1:2.5", "NUM an integer"),
        ("0.1:0.1:3", "distinct"),
        ("a,b", "comma list"),
    ],
)
def test_bad_value_specs(text, match):
    with pytest.raises(ValueError, match=match):
        parse_values(text, "--lambda-H")


def test_bad_arguments_exit_2_before_any_work(tmp_path, capsys):
    out = tmp_path / "r.csv"
    for extra, match in [
        (["--lambda-H", "1:0:5"], "reversed range"),
        (["--lambda-H", "1e-3:1:0"], "NUM must be >= 1"),
        (["--lambda-H", "0.1,-1"], ">= 0"),
        ([], "at least one of --lambda-H"),
        (["--lambda-H", "0.1", "--plot", str(tmp_path / "p.png")], "both --lambda-H"),
    ]:
        with pytest.raises(SystemExit) as exc:
            main(["sweep", "--out", str(out), "--no-cache", *extra])
        assert exc.value.code == 2
        assert match in capsys.readouterr().err
        assert not out.exists()
    with pytest.raises(SystemExit) as exc:
        main(["sweep", "--out", str(tmp_path), "--lambda-H", "0.1", "--no-cache"])
    assert exc.value.code == 2 and "is a directory" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_writes_the_api_table_resumes_and_plots(tmp_path, capsys):
    out, png = tmp_path / "r.csv", tmp_path / "phase.png"
    assert main([*ARGS, *GRID, "--out", str(out), "--plot", str(png)]) == 0
    printed = capsys.readouterr().out
    assert "32 points" in printed and "32 successful" in printed
    assert "collapse rank agrees at 32 of 32 points" in printed
    assert png.read_bytes()[:4] == b"\x89PNG"
    # The CLI's file is ufm.sweep's on the same instance, row for row.
    lams = np.geomspace(1e-3, 1.0, 4)
    api = ufm.sweep(
        ufm.RegressionUFM(default_targets(3, 40, 0), 0.1, 0.1, 5),
        {"lambda_H": lams, "lambda_W": lams},
        seeds=2,
        chunk_size=8,
    )
    api.to_csv(tmp_path / "api.csv")
    rows = out.read_text().split("\n")[2:]
    assert rows == (tmp_path / "api.csv").read_text().split("\n")
    # Rerunning the command resumes: nothing to do, the same file.
    before = out.read_bytes()
    assert main([*ARGS, *GRID, "--out", str(out)]) == 0
    assert out.read_bytes() == before
    # Another grid into the same file: exit 2, file untouched.
    with pytest.raises(SystemExit) as exc:
        main([*ARGS, "--lambda-H", "1e-3:1:5", *GRID[2:], "--out", str(out)])
    assert exc.value.code == 2 and "different sweep" in capsys.readouterr().err
    assert out.read_bytes() == before


def test_compilation_cache_dir_and_switch(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("UFM_CACHE_DIR", raising=False)
    assert cache_dir() == str(tmp_path / "ufm" / "jax")
    monkeypatch.setenv("UFM_CACHE_DIR", str(tmp_path / "c"))
    assert cache_dir() == str(tmp_path / "c")
    # Switched off: nothing is set or created (enabling it is left to the subprocess test).
    assert enable_compilation_cache(off=True) is None
    monkeypatch.setenv("UFM_NO_COMPILE_CACHE", "1")
    assert enable_compilation_cache() is None
    assert not (tmp_path / "c").exists()


def test_no_reduction_flag_reaches_sweep(tmp_path, monkeypatch):
    """``--no-reduction`` is ``ufm.sweep(..., reduction=False)``; without it, the default."""
    seen = []
    real = ufm.sweep

    def spy(*args, **kwargs):
        seen.append(kwargs.get("reduction", "missing"))
        return real(*args, **kwargs)

    monkeypatch.setattr(ufm, "sweep", spy)
    for i, extra in enumerate([["--no-reduction"], []]):
        assert main([*ARGS, *GRID, "--out", str(tmp_path / f"r{i}.csv"), *extra]) == 0
    assert seen == [False, None]
