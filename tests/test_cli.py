"""``ufm check``: the main job."""

import shutil
import subprocess

import numpy as np
import pytest

from ufm._cli import main


def test_default_check_passes(capsys):
    assert main(["check"]) == 0
    out = capsys.readouterr().out
    assert "PASS" in out and "rel. error WWT" in out and "NRC3" in out and "collapse rank" in out


@pytest.mark.slow
def test_check_options_and_user_targets(tmp_path, capsys):
    Y = np.random.default_rng(0).normal(size=(80, 4))
    f = tmp_path / "Y.npy"
    np.save(f, Y)
    args = ["check", "--targets", str(f), "--d", "3", "--lambda-H", "0.05", "--solver", "lbfgs"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "M = 80, n = 4, d = 3" in out
    assert main(["check", "--dtype", "float32", "--no-bias", "--M", "300"]) == 0


@pytest.mark.slow
def test_classification_checks(capsys):
    assert main(["check", "--problem", "ce", "--classes", "3", "--per-class", "4"]) == 0
    out = capsys.readouterr().out
    assert "loss = ce" in out and "NC1" in out and "PASS" in out
    assert main(["check", "--problem", "mse", "--bias", "0.5", "--solver", "lbfgs"]) == 0
    assert main(["check", "--problem", "mse", "--bias", "none", "--dtype", "float32"]) == 0


@pytest.mark.slow
def test_check_all_runs_every_problem_kind(capsys):
    assert main(["check", "--all", "--M", "200", "--per-class", "5"]) == 0
    out = capsys.readouterr().out
    assert "8 of 8 problem kinds pass" in out
    for kind in ("loss = mse, bias = none", "loss = mse, bias = 1.0", "loss = ce, bias = free"):
        assert kind in out


def test_check_with_momentum_and_a_test_every_8th_step(capsys):
    """``--check-every 8`` reaches the closed form too, and stops on a tested step."""
    args = ["check", "--M", "100", "--solver", "momentum", "--lr", "0.1", "--check-every", "8"]
    assert main([*args, "--max-steps", "20000"]) == 0
    out = capsys.readouterr().out
    assert "PASS" in out and "solver = momentum" in out
    steps = int(out.split("solver: ")[1].split(" steps")[0])
    assert steps % 8 == 0, out


@pytest.mark.slow
def test_check_fails_when_solver_stops_early(capsys):
    assert main(["check", "--solver", "lbfgs", "--max-steps", "2"]) == 1
    assert "FAIL" in capsys.readouterr().out
    assert main(["check", "--problem", "ce", "--max-steps", "2"]) == 1
    assert "FAIL" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args, message",
    [
        (["check", "--lambda-W", "-1"], "--lambda-W must be a finite number > 0"),
        (["check", "--solver", "newton"], "--solver must be one of"),
        (["check", "--d", "0"], "--d must be an int >= 1"),
        (["check", "--targets", "/nonexistent.npy"], "--targets: cannot read"),
        (["check", "--problem", "ce", "--bias", "maybe"], "--bias must be none, free or a number"),
        (["check", "--problem", "ce", "--classes", "1"], "--classes must be >= 2"),
        (["check", "--bias", "none"], "--bias applies to --problem mse|ce"),
        (["check", "--problem", "mse", "--no-bias"], "--no-bias applies to regression"),
    ],
)
def test_bad_arguments_exit_2(args, message, capsys):
    with pytest.raises(SystemExit) as e:
        main(args)
    assert e.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("ufm") is None, reason="console script not installed")
def test_console_script():
    r = subprocess.run(["ufm", "check"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "PASS" in r.stdout


@pytest.mark.slow
def test_check_deep(capsys):
    args = ["check", "--problem", "deep", "--classes", "3", "--per-class", "2"]
    assert main([*args, "--widths", "4,4,4", "--activation", "linear", "--restarts", "4"]) == 0
    out = capsys.readouterr().out
    assert "deep UFM, widths = (4, 4, 4)" in out and "PASS" in out and "feature_gram_3" in out
    with pytest.raises(SystemExit) as e:
        main([*args, "--widths", "4,0"])
    assert e.value.code == 2 and "--widths" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "why"),
    [
        (["--widths", "4,4,4", "--classes", "3", "--per-class", "2"], "L = 3 >= 3 layers"),
        (["--widths", "2,2", "--classes", "4"], "every width >= K = 4"),
    ],
    ids=["relu-three-layers-three-classes", "relu-widths-below-K"],
)
def test_check_refuses_a_deep_model_theory_does_not_predict(extra, why, capsys, monkeypatch):
    import ufm._cli.check as check_module

    def no_solve(*args, **kwargs):
        raise AssertionError("ufm check solved a problem it should have refused")

    monkeypatch.setattr(check_module, "_run", no_solve)
    with pytest.raises(SystemExit) as e:
        main(["check", "--problem", "deep", "--activation", "relu", *extra])
    err = capsys.readouterr().err
    assert e.value.code == 2, err
    assert "--activation/--widths" in err and why in err and "Theory covers" in err
    assert "Traceback" not in err
