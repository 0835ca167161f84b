"""Notebooks are Jupytext pairs: ``notebooks/NN_name.py`` (percent format, the reviewed
source) and ``notebooks/NN_name.ipynb`` (committed without outputs), kept in sync."""

import jupytext
import nbformat
import pytest
from jupytext.compare import compare_notebooks

from conftest import ROOT

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
FIX = "run `jupytext --sync notebooks/*.ipynb` (or save the notebook in JupyterLab)"


def test_every_notebook_has_its_percent_script_and_back():
    assert NOTEBOOKS
    scripts = sorted((ROOT / "notebooks").glob("*.py"))
    assert [p.stem for p in scripts] == [p.stem for p in NOTEBOOKS]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_in_sync_with_its_pair(path):
    nb = jupytext.read(path)
    assert nb.metadata["jupytext"]["formats"] == "ipynb,py:percent"
    script = path.with_suffix(".py")
    # The exact text jupytext would write from the .ipynb is the committed script ...
    assert jupytext.writes(nb, "py:percent") == script.read_text(), f"{script.name}: {FIX}"
    # ... and the script read back gives the notebook's cells (sources, types, tags).
    compare_notebooks(jupytext.read(script), nb, "py:percent")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, \
                f"{path.name}: clear its outputs (jupyter nbconvert --clear-output --inplace)"


def test_the_pair_round_trips(tmp_path):
    """Editing the script and syncing changes the notebook's cell, and nothing else."""
    import shutil
    import subprocess
    import sys

    src = NOTEBOOKS[0]
    for p in (src, src.with_suffix(".py")):
        shutil.copy(p, tmp_path / p.name)
    script = tmp_path / src.with_suffix(".py").name
    script.write_text(script.read_text().replace("# %% [markdown]\n# # ", "# %% [markdown]\n# # Edited ", 1))
    subprocess.run([sys.executable, "-m", "jupytext", "--sync", "--quiet",
                    str(tmp_path / src.name)], check=True)
    before, after = nbformat.read(src, 4), nbformat.read(tmp_path / src.name, 4)
    assert len(before.cells) == len(after.cells)
    changed = [i for i, (a, b) in enumerate(zip(before.cells, after.cells, strict=True)) if a != b]
    assert changed == [0]
    assert after.cells[0].source.startswith("# Edited ")
    assert [c.id for c in after.cells] == [c.id for c in before.cells]
