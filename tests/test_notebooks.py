"""Every notebook in notebooks/ runs top to bottom in its reduced-size mode (UFM_NOTEBOOK_SMALL=1).

Notebooks are stored stripped (no outputs, no execution counts) and must read
``UFM_NOTEBOOK_SMALL`` to shrink their sizes; figures render headless (``MPLBACKEND=Agg``). A
notebook's own ``assert`` cells check its claims, so a failing claim fails here.
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
def test_notebook_runs_and_is_stored_without_outputs(path, monkeypatch):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, "strip outputs"
    source = "\n".join(cell.source for cell in nb.cells if cell.cell_type == "code")
    assert "UFM_NOTEBOOK_SMALL" in source, "the notebook needs a reduced-size mode for the tests"
    monkeypatch.setenv("UFM_NOTEBOOK_SMALL", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("JAX_PLATFORMS", os.environ.get("JAX_PLATFORMS", "cpu"))
    NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    ).execute()
