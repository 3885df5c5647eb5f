"""Every notebook in notebooks/ runs top to bottom in its quick mode (UFM_NOTEBOOK_QUICK=1).

Notebooks are stored stripped (no outputs, no execution counts), read ``UFM_NOTEBOOK_QUICK``
(the one quick-mode variable of every notebook) to shrink their sizes, and say their level and
run time in their first cell; figures render headless (``MPLBACKEND=Agg``). A notebook's own
``assert`` cells check its claims, so a failing claim fails here.
"""

import os
import pathlib

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((pathlib.Path(__file__).parents[1] / "notebooks").glob("*.ipynb"))


def test_notebooks_exist():
    assert NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_stored_stripped_and_introduces_itself(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, "strip outputs"
    text = "\n".join(cell.source for cell in nb.cells)
    assert 'os.environ.get("UFM_NOTEBOOK_QUICK") == "1"' in text, "read the quick-mode variable"
    assert "UFM_NOTEBOOK_SMALL" not in text, "one quick-mode variable: UFM_NOTEBOOK_QUICK"
    assert "THEORY.md" not in text, "cite docs/theory.md (the repository's copy)"
    first = nb.cells[0]
    assert first.cell_type == "markdown"
    assert "**Level" in first.source and "**Run time**" in first.source
    assert "quick mode" in first.source and "full mode" in first.source


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_in_quick_mode(path, monkeypatch):
    nb = nbformat.read(path, as_version=4)
    monkeypatch.setenv("UFM_NOTEBOOK_QUICK", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("JAX_PLATFORMS", os.environ.get("JAX_PLATFORMS", "cpu"))
    NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    ).execute()
