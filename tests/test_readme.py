"""The README's tour and the documentation's tour run as written.

Each file's ```python blocks are joined into one script and run in a fresh interpreter (the
way a reader pastes them). Every solve in a tour prints its status; the test fails on an
exception, and on any other status than ``successful`` printed on a line that does not say the
outcome is expected (a solve shown on purpose with the papers' slow protocol says so).
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import ufm

ROOT = Path(__file__).resolve().parents[1]
TOURS = ["README.md", "docs/tour.md", "docs/extending.md"]
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def python_blocks(path: Path) -> list[str]:
    """The ```python fenced blocks of a Markdown file, in order."""
    return _BLOCK.findall(path.read_text(encoding="utf-8"))


def test_blocks_are_found():
    """The extraction sees the README's tour (a test that found no code would pass vacuously)."""
    blocks = python_blocks(ROOT / "README.md")
    assert blocks, "README.md has no ```python block"
    assert "ufm.solve(" in "".join(blocks)


@pytest.mark.slow
@pytest.mark.parametrize("name", TOURS)
def test_tour_runs(name, tmp_path):
    code = "\n".join(python_blocks(ROOT / name))
    assert code.strip(), f"{name} has no ```python block"
    script = tmp_path / "tour.py"
    script.write_text(code, encoding="utf-8")
    env = dict(os.environ, UFM_NO_COMPILE_CACHE="1", MPLBACKEND="Agg")
    proc = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    assert "successful" in proc.stdout
    others = [s.name for s in ufm.Status if s != ufm.Status.successful]
    unexpected = [
        line
        for line in proc.stdout.splitlines()
        if "expected" not in line and any(re.search(rf"\b{s}\b", line) for s in others)
    ]
    assert not unexpected, f"{name}: solves that did not succeed: {unexpected}"
