"""Fault suite, pipelines: bad pipeline files, stale steps, relative paths, stale files.

Rule for every case: a correct run, or a GlacierKitError (CLI: exit 2, one line naming the
value and the fix); never a traceback or a half-written file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import write_notebook
from glacierkit.exceptions import GlacierKitError, ParameterError
from glacierkit.pipeline import load_pipeline, run_pipeline


@pytest.fixture
def notebooks(tmp_path):
    """a_first writes a.txt; b_second copies it into b.txt (so it depends on a_first);
    c_read reads a relative path."""
    nb_dir = tmp_path / "nbs"
    nb_dir.mkdir()
    write_notebook(nb_dir / "a_first.ipynb", """
# %% tags=["parameters"]
output_dir: str = "out"  # where to write
count: int = 1  # how many

# %%
from pathlib import Path
Path(output_dir).mkdir(parents=True, exist_ok=True)
(Path(output_dir) / 'a.txt').write_text(str(count))
""")
    write_notebook(nb_dir / "b_second.ipynb", """
# %% tags=["parameters"]
output_dir: str = "out"  # where to write

# %%
from pathlib import Path
(Path(output_dir) / 'b.txt').write_text('b' + (Path(output_dir) / 'a.txt').read_text())
""")
    write_notebook(nb_dir / "c_read.ipynb", """
# %% tags=["parameters"]
output_dir: str = "out"  # where to write
source: str = ""  # a file to copy

# %%
from pathlib import Path
(Path(output_dir) / 'c.txt').write_text(Path(source).read_text())
""")
    return nb_dir


def _cfg(nb_dir, out, **steps):
    return {"name": "t", "notebook_dir": str(nb_dir), "shared": {"output_dir": str(out)},
            "steps": steps or {"a_first": {"count": 3}, "b_second": {}}}


def _quiet(_message):
    pass


def _one_line_error(err: str) -> str:
    # one error line; warnings (such as the domain-shift guard's) may come before it
    lines = [line for line in err.splitlines()
             if line.strip() and not line.startswith("glacierkit: warning: ")]
    assert len(lines) == 1 and lines[0].startswith("glacierkit: error: "), err
    return lines[0]


# --------------------------------------------------------------------------- item 11
def test_a_step_runs_again_when_an_earlier_step_ran_again(notebooks, tmp_path):
    out = tmp_path / "run"
    cfg = _cfg(notebooks, out)
    run_pipeline(cfg, echo=_quiet)
    assert (out / "b.txt").read_text() == "b3"
    messages = []
    run_pipeline(cfg, echo=messages.append)
    assert sum("skipped" in m for m in messages) == 2
    # a_first alone with other parameters: b_second's input changed, so it is not done
    run_pipeline(cfg, only=["a_first"], overrides={"a_first": {"count": 7}}, echo=_quiet)
    assert (out / "b.txt").read_text() == "b3"
    cfg["steps"]["a_first"]["count"] = 7
    messages.clear()
    run_pipeline(cfg, echo=messages.append)
    assert any("a_first" in m and "skipped" in m for m in messages)
    assert any("b_second" in m and "running" in m for m in messages)
    assert (out / "b.txt").read_text() == "b7"


def test_a_step_whose_outputs_were_deleted_runs_again(notebooks, tmp_path):
    out = tmp_path / "run"
    cfg = _cfg(notebooks, out)
    run_pipeline(cfg, echo=_quiet)
    state = json.loads((out / "pipeline_state.json").read_text())
    assert state["a_first"]["outputs"] == ["a.txt"] and state["b_second"]["outputs"] == ["b.txt"]
    (out / "b.txt").unlink()
    messages = []
    run_pipeline(cfg, echo=messages.append)
    assert any("b_second" in m and "gone" in m for m in messages)
    assert any("a_first" in m and "skipped" in m for m in messages)
    assert (out / "b.txt").read_text() == "b3"


def test_unknown_step_in_set_or_only_says_did_you_mean(notebooks, tmp_path, capsys):
    from glacierkit.pipeline import main

    cfg = _cfg(notebooks, tmp_path / "run")
    with pytest.raises(ParameterError, match="Unknown step 'a_frist'.*Did you mean 'a_first'"):
        run_pipeline(cfg, overrides={"a_frist": {"count": 2}}, echo=_quiet)
    with pytest.raises(ParameterError, match="Did you mean 'b_second'"):
        run_pipeline(cfg, only=["b_secnd"], echo=_quiet)
    assert not (tmp_path / "run").exists()  # refused before running anything
    path = tmp_path / "p.yml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["run", str(path), "--set", "a_frist.count=2"]) == 2
    assert "Did you mean 'a_first'" in _one_line_error(capsys.readouterr().err)
    assert main(["run", str(path), "--set", "a_first.count=[unclosed"]) == 2
    assert "--set" in _one_line_error(capsys.readouterr().err)


def test_corrupt_state_file_reruns_instead_of_crashing(notebooks, tmp_path):
    out = tmp_path / "run"
    cfg = _cfg(notebooks, out)
    run_pipeline(cfg, echo=_quiet)
    (out / "pipeline_state.json").write_text("{not json")
    messages = []
    run_pipeline(cfg, echo=messages.append)
    ran = [m for m in messages if m.rstrip().endswith(" s") and "skipped" not in m]
    assert len(ran) == 2 and not any("skipped" in m for m in messages), messages
    assert json.loads((out / "pipeline_state.json").read_text())["b_second"]["outputs"]


# --------------------------------------------------------------------------- item 18
def test_relative_paths_resolve_against_the_working_directory(notebooks, tmp_path,
                                                              monkeypatch):
    work = tmp_path / "work"
    (work / "data").mkdir(parents=True)
    (work / "data" / "in.txt").write_text("relative ok")
    monkeypatch.chdir(work)
    path = work / "pipeline.yml"
    path.write_text(yaml.safe_dump({
        "name": "rel", "notebook_dir": str(notebooks),
        "shared": {"output_dir": "runs/rel"},
        "steps": {"c_read": {"source": "data/in.txt"}}}))
    run_dir = run_pipeline(load_pipeline(path), echo=_quiet)
    assert run_dir == work / "runs" / "rel"
    assert (run_dir / "c.txt").read_text() == "relative ok"


# --------------------------------------------------------------------------- item 19
def test_stale_running_notebooks_are_removed_and_runs_are_exclusive(notebooks, tmp_path):
    from glacierkit.pipeline.run import _run_lock

    out = tmp_path / "run"
    (out / "notebooks").mkdir(parents=True)
    stale = out / "notebooks" / ".a_first.running.ipynb"
    stale.write_text("{}")
    keep = out / "notebooks" / "notes.ipynb"
    keep.write_text("{}")
    with _run_lock(out):  # another run holds the folder
        with pytest.raises(ParameterError, match="Another glacierkit run"):
            run_pipeline(_cfg(notebooks, out), echo=_quiet)
    assert stale.exists()  # not touched while the other run held the folder
    run_pipeline(_cfg(notebooks, out), echo=_quiet)
    assert not stale.exists() and keep.exists()
    hidden = sorted(p.name for p in out.rglob(".*"))
    assert hidden == [".glacierkit-run.lock"], hidden


# --------------------------------------------------------------------------- bad files
def _pipeline_values():
    scalars = st.none() | st.booleans() | st.integers(-5, 5) | st.floats(allow_nan=True) | \
        st.text(max_size=12)
    return st.recursive(scalars, lambda c: st.lists(c, max_size=3) |
                        st.dictionaries(st.text(max_size=12), c, max_size=3), max_leaves=12)


KEYS = ["name", "shared", "steps", "notebook_dir", "batch", "stepz"]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(doc=st.dictionaries(st.sampled_from(KEYS), _pipeline_values(), max_size=5) |
       _pipeline_values())
def test_fuzzed_pipeline_files_load_or_raise_a_clear_error(doc, tmp_path_factory, monkeypatch):
    """Any YAML document: load_pipeline and run_pipeline either accept it or raise a
    GlacierKitError (never TypeError, KeyError, AttributeError ...)."""
    import glacierkit.pipeline.run as grun

    folder = tmp_path_factory.mktemp("fuzz")
    monkeypatch.setattr(grun, "execute_notebook", _no_execution)
    path = folder / "p.yml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True))
    try:
        cfg = load_pipeline(path)
    except GlacierKitError:
        return
    try:
        run_pipeline(cfg, name="fuzz", echo=_quiet)
    except GlacierKitError:
        pass


def _no_execution(*args, **kwargs):
    raise AssertionError("a fuzzed pipeline file passed every check and would run notebooks")


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(blob=st.binary(max_size=200))
def test_fuzzed_bytes_as_a_pipeline_file(blob, tmp_path_factory):
    path = tmp_path_factory.mktemp("bytes") / "p.yml"
    path.write_bytes(blob)
    try:
        load_pipeline(path)
    except GlacierKitError:
        pass


BAD_FILES = {
    "not a mapping": "- a\n- b\n",
    "bad yaml": "name: [unclosed\n",
    "tabs": "name: x\n\tsteps: {}\n",
    "latin-1 bytes": b"name: caf\xe9\nsteps: {}\n",
    "steps is a list": "name: x\nsteps: [a, b]\n",
    "params are a list": "name: x\nsteps:\n  01_data_prep: [1, 2]\n",
    "name is a number": "name: 12\nsteps:\n  01_data_prep: {}\n",
    "name escapes runs/": "name: ../../elsewhere\nsteps:\n  01_data_prep: {}\n",
    "shared is a list": "name: x\nshared: [1]\nsteps:\n  01_data_prep: {}\n",
    "output_dir is a list": "name: x\nshared: {output_dir: [1]}\nsteps:\n  01_data_prep: {}\n",
    "notebook_dir is a number": "name: x\nnotebook_dir: 3\nsteps:\n  01_data_prep: {}\n",
    "unknown notebook": "name: x\nsteps:\n  01_dataprep: {}\n",
    "typo in a parameter": "name: x\nsteps:\n  01_data_prep: {scenez: []}\n",
    "batch is a list": "name: x\nbatch: [1]\n",
    "batch without model": "name: x\nbatch: {threshold: 0.5}\n",
    "batch threshold out of range": "name: x\nbatch: {model: m.keras, threshold: 2}\n",
    "empty file": "",
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_pipeline_files_give_one_line_errors(case, tmp_path, capsys, monkeypatch):
    from glacierkit.pipeline import main

    monkeypatch.chdir(tmp_path)
    text = BAD_FILES[case]
    path = tmp_path / "p.yml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    args = ["run", str(path)] + (["--scenes"] if "batch" in case else [])
    assert main(args) == 2
    line = _one_line_error(capsys.readouterr().err)
    assert "p.yml" in line or "step" in line.lower() or "parameter" in line.lower(), line
    assert sorted(os.listdir(tmp_path)) == ["p.yml"]  # nothing written


def test_pipeline_file_that_is_a_folder(tmp_path, capsys):
    from glacierkit.pipeline import main

    assert main(["run", str(tmp_path)]) == 2
    assert "is a folder" in _one_line_error(capsys.readouterr().err)


def test_interrupt_prints_one_line(monkeypatch, tmp_path, capsys):
    import glacierkit.pipeline.run as grun
    from glacierkit.pipeline import main

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(grun, "run_pipeline", interrupted)
    (tmp_path / "p.yml").write_text("name: x\nsteps: {a: {}}\n")
    assert main(["run", str(tmp_path / "p.yml")]) == 130
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "interrupted" in err and "Traceback" not in err


def test_notebook_dir_is_documented_as_running_code():
    import glacierkit.pipeline.run as grun

    assert "notebook_dir" in grun.__doc__ and "trust" in grun.__doc__.lower()
    assert Path(grun.__file__).parents[2].joinpath("README.md").read_text().count(
        "notebook_dir") >= 1
