"""The pipeline runner and notebook 01, executed headlessly with papermill."""

import json

import pytest
import yaml

from conftest import ROOT, run_notebook, write_notebook
from glacierkit.exceptions import ParameterError, StepFailed
from glacierkit.pipeline import KERNEL_NAME, check_parameters, load_pipeline, run_pipeline


@pytest.fixture
def tiny_notebooks(tmp_path):
    nb_dir = tmp_path / "nbs"
    nb_dir.mkdir()
    write_notebook(nb_dir / "a_first.ipynb", """
# %% tags=["parameters"]
output_dir: str = "out"  # where to write
count: int = 1  # how many

# %%
from pathlib import Path
Path(output_dir).mkdir(parents=True, exist_ok=True)
p = Path(output_dir) / 'a.txt'
p.write_text(str(count) + (p.read_text() if p.exists() else ''))
import warnings
warnings.warn("planted warning", UserWarning)
""")
    write_notebook(nb_dir / "b_second.ipynb", """
# %% tags=["parameters"]
output_dir: str = "out"  # where to write
fail: bool = False  # raise an error

# %%
if fail:
    raise ValueError('planted failure')
""")
    return nb_dir


def _cfg(nb_dir, out, **steps):
    return {"name": "t", "notebook_dir": str(nb_dir), "shared": {"output_dir": str(out)},
            "steps": steps or {"a_first": {"count": 3}, "b_second": {}}}


def test_runner_runs_in_order_and_resumes(tiny_notebooks, tmp_path):
    out = tmp_path / "run"
    cfg = _cfg(tiny_notebooks, out)
    messages = []
    run_pipeline(cfg, echo=messages.append)
    assert (out / "a.txt").read_text() == "3"
    assert (out / "notebooks" / "a_first.ipynb").is_file()
    assert (out / "notebooks" / "b_second.ipynb").is_file()
    state = json.loads((out / "pipeline_state.json").read_text())
    assert list(state) == ["a_first", "b_second"]
    assert (out / "summary.md").is_file()
    # second run: both steps skipped, nothing re-executed
    messages.clear()
    run_pipeline(cfg, echo=messages.append)
    assert sum("skipped" in m for m in messages) == 2
    assert (out / "a.txt").read_text() == "3"
    # --force runs again; changed parameters run again
    run_pipeline(cfg, force=True, only=["a_first"], echo=messages.append)
    assert (out / "a.txt").read_text() == "33"
    run_pipeline(cfg, overrides={"a_first": {"count": 5}}, echo=messages.append)
    assert (out / "a.txt").read_text() == "533"


def test_runner_refuses_typos_before_running_anything(tiny_notebooks, tmp_path):
    cfg = _cfg(tiny_notebooks, tmp_path / "run", a_first={"cuont": 2}, b_second={})
    with pytest.raises(ParameterError, match="Unknown parameter 'cuont'.*Did you mean 'count'"):
        run_pipeline(cfg, echo=lambda m: None)
    assert not (tmp_path / "run" / "notebooks").exists()


def test_runner_refuses_unused_shared_keys_and_unknown_steps(tiny_notebooks, tmp_path):
    cfg = _cfg(tiny_notebooks, tmp_path / "run")
    cfg["shared"]["treshold"] = 0.3
    with pytest.raises(ParameterError, match="treshold"):
        run_pipeline(cfg, echo=lambda m: None)
    cfg = _cfg(tiny_notebooks, tmp_path / "run", c_third={})
    with pytest.raises(ParameterError, match="no notebook"):
        run_pipeline(cfg, echo=lambda m: None)


def test_failed_step_stops_the_run_and_shows_the_error(tiny_notebooks, tmp_path):
    out = tmp_path / "run"
    cfg = _cfg(tiny_notebooks, out, a_first={}, b_second={"fail": True})
    with pytest.raises(StepFailed, match="ValueError: planted failure"):
        run_pipeline(cfg, echo=lambda m: None)
    assert (out / "notebooks" / "b_second.failed.ipynb").is_file()
    assert not (out / "notebooks" / "b_second.ipynb").exists()
    state = json.loads((out / "pipeline_state.json").read_text())
    assert "a_first" in state and "b_second" not in state


def test_load_pipeline_validates(tmp_path):
    p = tmp_path / "p.yml"
    p.write_text(yaml.safe_dump({"name": "x", "stepz": {}}))
    with pytest.raises(ParameterError, match="stepz"):
        load_pipeline(p)


def test_cli_reports_errors_without_traceback(tmp_path, capsys):
    from glacierkit.pipeline import main

    assert main(["run", str(tmp_path / "missing.yml")]) == 2
    assert "Pipeline file not found" in capsys.readouterr().err


def test_every_notebook_has_documented_parameters_and_no_outputs():
    import nbformat

    from glacierkit.pipeline import notebook_parameters

    notebooks = sorted((ROOT / "notebooks").glob("*.ipynb"))
    assert notebooks
    for path in notebooks:
        nb = nbformat.read(path, as_version=4)
        assert nb.metadata["kernelspec"]["name"] == KERNEL_NAME == "glacierkit"
        assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), path
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, path
        lines = [ln for ln in tagged[0].source.splitlines() if ln.strip()]
        declared = notebook_parameters(path)
        assert len(declared) == len(lines), f"{path.name}: a parameter line papermill cannot parse"
        assert all(p["help"] for p in declared.values()), f"{path.name}: parameter without comment"
        assert "output_dir" in declared


def test_sample_pipeline_names_real_parameters():
    cfg = load_pipeline(ROOT / "pipelines" / "sample.yml")
    for step, values in cfg["steps"].items():
        check_parameters(ROOT / "notebooks" / f"{step}.ipynb", values)


@pytest.mark.notebook
def test_notebook_01_fails_clearly_on_outlines_elsewhere(tmp_path, sample_data):
    """Notebook 01 on the sample scenes (COGs, labels, no labels in France, the composites)
    runs in tests/test_readme.py, as the README's `glacierkit run ... --only 01_data_prep`."""
    with pytest.raises(StepFailed, match="NoOverlapError"):
        run_notebook("01_data_prep", tmp_path / "bad", scenes=["alps-s2/morteratsch"],
                     outlines="everest-l7")


def test_missing_kernel_is_a_clear_error():
    from glacierkit.exceptions import KernelNotFoundError
    from glacierkit.pipeline import check_kernel

    check_kernel()  # make setup / Binder's postBuild registered it
    with pytest.raises(KernelNotFoundError, match="ipykernel install --sys-prefix --name nope-gk"):
        check_kernel("nope-gk")


def test_run_writes_html_reports_and_an_index(tiny_notebooks, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = tmp_path / "run"
    (out / "figures").mkdir(parents=True)
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    fig.savefig(out / "figures" / "05_error_maps.png")
    fig.savefig(out / "figures" / "99_extra.png")
    (out / "table4.csv").write_text("method,KC\nDeep U-Net,82.8\nNDSI <0.39>,69.7\n")
    messages = []
    run_pipeline(_cfg(tiny_notebooks, out), echo=messages.append)
    # one line per step with its time, and the report's path last
    steps = [m for m in messages if m.startswith("  ") and not m.startswith("    ")]
    assert [m.split()[0] for m in steps] == ["a_first", "b_second"]
    assert all(m.rstrip().endswith(" s") for m in steps)
    assert messages[-1] == f"Report: {out / 'index.html'}"
    assert [m.strip() for m in messages if "Warning" in m] == ["UserWarning: planted warning"]
    report = (out / "reports" / "a_first.html").read_text()
    assert "<html" in report and "# where to write" in report  # the notebook, rendered
    index = (out / "index.html").read_text()
    for text in ("a_first", "b_second", 'href="reports/a_first.html"', "Deep U-Net", "82.8",
                 "NDSI &lt;0.39&gt;", "src='figures/05_error_maps.png'", "figures/99_extra.png"):
        assert text in index, text
    assert not list(out.rglob("*.tmp"))


def test_bench_runner_still_runs():
    """bench/runner.py (a trivial notebook through the runner) ends with its ratio line."""
    import re
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "runner.py"), "--repeats", "1"],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert re.fullmatch(r"runner_overhead_s: \d+\.\d\d", proc.stdout.strip().splitlines()[-1])


def test_text_parameters_from_papermill_are_read_as_yaml():
    """papermill -p passes text; the notebooks read the text of a list, number or flag."""
    from glacierkit.pipeline import parse_parameters

    ns = {"__annotations__": {"scenes": list, "n": int, "t": float, "flag": bool, "name": str,
                              "extra": list},
          "scenes": '["alps-s2/aletsch", alps-s2/gorner]', "n": "3", "t": "1", "flag": "true",
          "name": "[not parsed]", "extra": "alps-s2/gorner"}
    parse_parameters(ns)
    assert ns["scenes"] == ["alps-s2/aletsch", "alps-s2/gorner"] and ns["extra"] == ["alps-s2/gorner"]
    assert (ns["n"], ns["t"], ns["flag"], ns["name"]) == (3, 1.0, True, "[not parsed]")
    assert isinstance(ns["t"], float)
    already = {"__annotations__": {"scenes": list}, "scenes": ["a"]}
    parse_parameters(already)
    assert already["scenes"] == ["a"]
    with pytest.raises(ParameterError, match="Parameter n is declared int"):
        parse_parameters({"__annotations__": {"n": int}, "n": "[1, 2]"})
    with pytest.raises(ParameterError, match="flag"):
        parse_parameters({"__annotations__": {"flag": bool}, "flag": "maybe"})


def test_command_line_help_is_plain_and_complete():
    """The help of glacierkit and of each command: no RST markup, every command described,
    every positional argument explained."""
    import argparse

    from glacierkit.pipeline.cli import build_parser

    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    described = {choice.dest: choice.help for choice in sub._choices_actions}
    assert set(described) == set(sub.choices) == {"run", "fetch-data", "params", "predict",
                                                   "search"}
    assert all(described.values()), described
    for name, command in [("glacierkit", parser), *sub.choices.items()]:
        text = command.format_help()
        assert "``" not in text and ":func:" not in text and ":class:" not in text, name
        assert command.description, f"{name} has no description"
        for action in command._actions:
            if not action.option_strings and not isinstance(action, argparse._SubParsersAction):
                assert action.help, f"{name}: positional {action.dest} has no help"
