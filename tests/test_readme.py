"""The README, tried as written.

Every shell command in the README's ``bash`` blocks that runs on the sample data is run here
exactly as written (continuation lines joined, comments kept), in order, with bash, in a
scratch copy of the checkout (its ``.venv`` a link to this one's; ``.venv/bin`` first on the
PATH, as with the environment activated) and without TensorFlow's quieting variables. Each
must succeed and print nothing on stderr that is not glacierkit's own (a progress bar, a
``glacierkit:`` line). The commands that are not run are listed with the reason, and the
two lists must cover the README exactly, so a new command cannot slip through untested.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest
import rasterio

from conftest import (
    PAPERMILL_LINES,
    ROOT,
    assert_views_can_render,
    foreign_stderr_lines,
    holoviews_outputs,
    notebook_stderr,
    path_reprs,
)

pytestmark = [pytest.mark.slow, pytest.mark.notebook]

#: Commands not run here, and why.
NOT_RUN = {
    "make run": "the whole pipeline, training included (6-20 min on 2 cores)",
    "make lab": "starts JupyterLab and waits for a person (tests/notebooks/"
                "test_browser_slider.py drives JupyterLab)",
    "make test": "the test suite itself",
    ".venv/bin/glacierkit run pipelines/sample.yml --name sample": "what make run runs",
    "glacierkit run pipelines/sample.yml --scenes-file scenes.txt --workers 4":
        "needs your list of scenes (scenes.txt)",
    "glacierkit run pipelines/sample.yml --scenes-file scenes.txt --cluster tcp://10.0.0.5:8786":
        "needs your list of scenes and a Dask scheduler",
    "make test                      # the whole suite (what CI runs)": "the test suite itself",
    '.venv/bin/pytest -m "not browser"   # skip the JupyterLab/Chromium test locally':
        "the test suite itself",
    "make lint                      # ruff": "a linter, not a sample-data command",
    # "Find and map a glacier": a STAC API, which these machines cannot reach; the same
    # commands run as written against a real one on 127.0.0.1 in
    # tests/pipeline/test_readme_stac.py
    "glacierkit search --glaciers athabasca --dates 2020-08-01/2020-09-30 --json "
    "runs/athabasca-stac/items.json": "STAC (tests/pipeline/test_readme_stac.py)",
    "glacierkit predict models/unet_alps_s2.keras runs/athabasca-item --stac "
    "S2A_11UMT_20200911_0_L2A --glaciers athabasca --outlines":
        "STAC (tests/pipeline/test_readme_stac.py)",
    "glacierkit search --glaciers athabasca --dates 2020-08-01/2020-09-30 --predict "
    "models/unet_alps_s2.keras runs/athabasca-stac --top 1": "STAC (tests/pipeline/test_readme_stac.py)",
    '.venv/bin/python tests/stac_local.py        # prints "STAC API: http://127.0.0.1:PORT ..."; '
    "Ctrl-C stops it": "serves until stopped (tests/pipeline/test_readme_stac.py runs it)",
    ".venv/bin/glacierkit search --api http://127.0.0.1:PORT --glaciers athabasca --predict "
    "models/unet_alps_s2.keras runs/local-stac": "PORT is what the server printed "
                                                 "(tests/pipeline/test_readme_stac.py)",
}


def readme_commands(text: str) -> list[str]:
    """The commands of the README's ``bash`` blocks, one per line (``\\`` joined)."""
    commands = []
    for block in re.findall(r"^ *```bash\n(.*?)^ *```", text, flags=re.S | re.M):
        joined = re.sub(r"\\\n\s*", "", block)
        commands += [line.strip() for line in joined.splitlines() if line.strip()]
    return commands


def _key(command: str) -> str:
    """A command without its trailing comment, for the NOT_RUN lookup."""
    return command if command in NOT_RUN else command.split("  #")[0].strip()


def test_readme_commands_are_run_or_excused():
    commands = readme_commands((ROOT / "README.md").read_text())
    excused = {_key(c) for c in commands if _key(c) in NOT_RUN}
    assert excused == set(NOT_RUN), f"NOT_RUN names commands the README lost: {set(NOT_RUN) - excused}"
    assert len([c for c in commands if _key(c) not in NOT_RUN]) >= 6, commands


@pytest.fixture(scope="module")
def checkout(tmp_path_factory):
    """A scratch copy of the checkout (tracked files and models), ``.venv`` linked."""
    repo = tmp_path_factory.mktemp("readme") / "glacierkit"
    shutil.copytree(ROOT, repo, ignore=shutil.ignore_patterns(
        ".venv", ".git", "runs", "__pycache__", "*.egg-info", ".pytest_cache", "bench", "docs"))
    (repo / ".venv").symlink_to(ROOT / ".venv")
    return repo


def test_readme_commands_run_as_written(checkout, sample_data):
    commands = readme_commands((ROOT / "README.md").read_text())
    env = {k: v for k, v in os.environ.items()
           if k not in ("TF_CPP_MIN_LOG_LEVEL", "PYTHONWARNINGS")}
    env["PATH"] = f"{checkout / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    ran = []
    for command in commands:
        if _key(command) in NOT_RUN:
            continue
        out = subprocess.run(["bash", "-c", command], cwd=checkout, env=env, text=True,
                             capture_output=True, timeout=600)
        assert out.returncode == 0, f"{command}\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}"
        noise = foreign_stderr_lines(out.stderr, tool=PAPERMILL_LINES if "papermill" in command
                                     else ())
        assert not noise, f"{command} printed on stderr:\n" + "\n".join(noise)
        ran.append((command, out))
    assert len(ran) >= 6
    outputs = {c: o for c, o in ran}
    # what the commands claim, checked on what they wrote
    runs = checkout / "runs"
    assert not notebook_stderr(runs / "my" / "01.ipynb")  # the cells printed no noise either
    assert (runs / "my" / "prepared" / "alps-s2_gorner_labels.tif").is_file()  # a list, as YAML
    sample = runs / "sample"  # notebook 01 on the five Alps scenes: COGs, labels, composites
    with rasterio.open(sample / "prepared" / "alps-s2_morteratsch_labels.tif") as src:
        assert src.crs.to_epsg() == 32632 and src.nodata == 255
        assert abs((src.read(1) == 1).mean() - 0.5584) < 5e-5
    with rasterio.open(sample / "prepared" / "alps-s2_morteratsch.tif") as src:
        assert src.count == 9 and src.descriptions[-2] == "B11"
    assert not (sample / "prepared" / "alps-s2_merdeglace_labels.tif").exists()  # no RGI in France
    assert (sample / "figures" / "01_composites.png").stat().st_size > 10_000
    nb01 = sample / "notebooks" / "01_data_prep.ipynb"
    assert len(holoviews_outputs(nb01)) == 1  # the interactive composites (map_view)
    assert_views_can_render(nb01)
    assert notebook_stderr(nb01) == []
    assert path_reprs(nb01) == []  # the composites show, not the path they were saved to
    assert (sample / "notebooks" / "01_data_prep.kernel.log").is_file()  # where the README says
    assert (sample / "bands" / "combinations_train.csv").is_file()
    params = next(o for c, o in outputs.items() if " params " in c)
    assert "scenes: list = " in params.stdout and "all_touched: bool = False" in params.stdout
    scene = runs / "my-scene"
    assert {p.name for p in scene.iterdir()} >= {"probability.tif", "mask.tif", "outlines.gpkg"}
    with rasterio.open(scene / "mask.tif") as src:
        assert src.crs.to_epsg() == 32623 and src.shape == (300, 400)
    assert (sample / "scenes.csv").is_file()
    batch = next(o for c, o in outputs.items() if re.search(r"--scenes(\s|$)", c))
    assert batch.stderr.count("100%|") <= 1  # the final progress bar once, not twice
    assert batch.stderr.count("invalid polygons") == 1  # the workers' warnings, once
    table = (sample / "scenes.csv").read_text()
    assert "alps-s2/merdeglace" in table and "alps-s2/gorner" in table
