"""Build a notebook from a list of cells (developer helper; notebooks are committed without outputs).

Usage from Python:
    from tools.nb import write_notebook, md, code, params
    write_notebook("notebooks/01_data_prep.ipynb", [md("# Title"), params("x = 1  # help"), code("...")])
"""

from __future__ import annotations

import nbformat


def md(text: str):
    return nbformat.v4.new_markdown_cell(text.strip("\n"))


def code(text: str):
    return nbformat.v4.new_code_cell(text.strip("\n"))


def params(text: str):
    cell = nbformat.v4.new_code_cell(text.strip("\n"))
    cell.metadata["tags"] = ["parameters"]
    return cell


def write_notebook(path: str, cells: list) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = cells
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i:02d}"
    nbformat.validate(nb)
    nbformat.write(nb, path)
