"""The ``ufm`` command itself: no arguments prints the help, ``--version`` the version."""

import shutil
import subprocess

import pytest

import ufm
from ufm._cli import main


def test_no_arguments_prints_the_help_and_exits_0(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: ufm")
    for command in ("check", "metrics", "sweep", "--version"):
        assert command in out


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"ufm {ufm.__version__}"


def test_unknown_command_exits_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["frobnicate"])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("ufm") is None, reason="the ufm command is not installed")
def test_installed_command_alone_and_version():
    alone = subprocess.run(["ufm"], capture_output=True, text=True)
    assert alone.returncode == 0 and alone.stdout.startswith("usage: ufm")
    assert "required" not in alone.stderr
    version = subprocess.run(["ufm", "--version"], capture_output=True, text=True)
    assert version.returncode == 0 and version.stdout.strip() == f"ufm {ufm.__version__}"
