"""HTML reports of a pipeline run, to read in a browser without Jupyter.

:func:`notebook_html` renders an executed notebook with nbconvert (interactive HoloViews
views keep working: their JavaScript is in the notebook's outputs); :func:`write_index`
writes the run's ``index.html``: the steps with their times and reports, the results table
of notebook 05 (``table4.csv``), the key figures and the other files.
"""

from __future__ import annotations

import html
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["notebook_html", "write_index", "KEY_FIGURES", "REPORT_DIR"]

#: Folder of the run with one HTML file per executed notebook.
REPORT_DIR = "reports"
#: Figures shown on the index page when present, in this order (others are linked).
KEY_FIGURES = ("01_composites", "03_ndsi_histograms", "03_ndsi_curves", "03_ndsi_error_maps",
               "04_learning_curves", "05_error_maps", "05_outlines", "06_change",
               "06_outlines")

_CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;
text-align:right}th{background:#f2f2f2}td:first-child,th:first-child{text-align:left}
img{max-width:100%;border:1px solid #ddd;margin:0.5em 0}h2{margin-top:1.6em}
.muted{color:#777}"""


def _write(path: Path, text: str) -> Path:
    from .._util import atomic_path

    with atomic_path(path) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")
    return path


def notebook_html(notebook: str | os.PathLike, output: str | os.PathLike) -> Path:
    """Render an executed notebook as a standalone HTML file (nbconvert, lab template)."""
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(str(notebook), as_version=4)
    for cell in nb.cells:  # HoloViews leaves display_data without data (comm placeholders)
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.outputs
                            if o.get("output_type") not in ("display_data", "execute_result")
                            or o.get("data")]
    # nbconvert warns about every figure without alt text (and fills one in): not news
    quiet = logging.getLogger(f"{__name__}.nbconvert")
    quiet.setLevel(logging.ERROR)
    body, _ = HTMLExporter(template_name="lab", log=quiet).from_notebook_node(nb)
    return _write(Path(output), body)


def _link(run_dir: Path, path: Path, text: str | None = None) -> str:
    rel = path.relative_to(run_dir).as_posix()
    return f'<a href="{html.escape(rel)}">{html.escape(text or rel)}</a>'


def write_index(run_dir: str | os.PathLike, state: Mapping[str, Mapping],
                steps: Sequence[str], title: str | None = None) -> Path:
    """Write ``<run_dir>/index.html`` for the steps of a run; return its path.

    Parameters
    ----------
    run_dir
        The run folder (``notebooks/``, ``reports/``, ``figures/``, ``table4.csv`` ...).
    state
        ``pipeline_state.json``: ``{step: {"seconds", "finished"}}``.
    steps
        The pipeline's steps in order (steps not run yet are listed as such).
    """
    import pandas as pd

    run_dir = Path(run_dir)
    name = title or run_dir.name
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
             f"<title>glacierkit run {html.escape(name)}</title><style>{_CSS}</style></head>"
             f"<body><h1>glacierkit run <code>{html.escape(name)}</code></h1>",
             f"<p class='muted'>{html.escape(str(run_dir))}</p>", "<h2>Steps</h2>",
             "<table><tr><th>step</th><th>seconds</th><th>finished</th><th>report</th>"
             "<th>notebook</th></tr>"]
    total = 0.0
    for step in steps:
        s = state.get(step, {})
        total += float(s.get("seconds") or 0)
        report = run_dir / REPORT_DIR / f"{step}.html"
        nb = run_dir / "notebooks" / f"{step}.ipynb"
        parts.append(
            f"<tr><td>{html.escape(step)}</td><td>{s.get('seconds', '')}</td>"
            f"<td>{html.escape(str(s.get('finished', 'not run')))}</td>"
            f"<td>{_link(run_dir, report, 'HTML') if report.is_file() else ''}</td>"
            f"<td>{_link(run_dir, nb, '.ipynb') if nb.is_file() else ''}</td></tr>")
    parts.append(f"<tr><th>total</th><th>{total:.0f}</th><th></th><th></th><th></th></tr>"
                 "</table>")
    table = run_dir / "table4.csv"  # notebook 05 (glacierkit.evaluate)
    if table.is_file():
        df = pd.read_csv(table, keep_default_na=False)
        parts += ["<h2>U-Net against NDSI on the test scenes (pooled, %)</h2>",
                  df.to_html(index=False, border=0, escape=True),
                  "<p class='muted'>Per scene: comparison.csv; provenance: metrics.json.</p>"]
    conditions = run_dir / "conditions" / "conditions_summary.csv"  # notebook 05
    if conditions.is_file():
        df = pd.read_csv(conditions).round(3)
        parts += ["<h2>Across conditions: top of atmosphere, offsets, pixel sizes (KC)</h2>",
                  df.to_html(index=False, border=0, escape=True),
                  "<p class='muted'>margin: the model's KC minus NDSI's at the learned "
                  "threshold, pooled over the scenes of the condition (the bar: at least "
                  "-0.02). Per scene: conditions/conditions.csv.</p>"]
    figures = sorted((run_dir / "figures").glob("*.png")) if (run_dir / "figures").is_dir() else []
    key = [f for k in KEY_FIGURES for f in figures if f.stem == k]
    if key:
        parts.append("<h2>Key figures</h2>")
        for f in key:
            rel = html.escape(f.relative_to(run_dir).as_posix())
            parts.append(f"<h3>{html.escape(f.stem)}</h3><a href='{rel}'>"
                         f"<img src='{rel}' alt='{html.escape(f.stem)}'></a>")
    others = [f for f in figures if f not in key]
    files = [p for p in sorted(run_dir.iterdir()) if p.is_file() and p.name != "index.html"
             and not p.name.startswith(".")]
    if others or files:
        parts.append("<h2>Other figures and files</h2><ul>")
        parts += [f"<li>{_link(run_dir, p)}</li>" for p in [*others, *files]]
        parts.append("</ul>")
    parts.append("</body></html>")
    return _write(run_dir / "index.html", "\n".join(parts) + "\n")
