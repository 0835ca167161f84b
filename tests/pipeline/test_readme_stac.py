"""The README's "Find and map a glacier" commands, run exactly as written against the local
STAC API: search, load, predict and outlines, in the order a user types them, with the
committed model."""

import json
import os
import re
import shlex
import signal
import subprocess
import sys

import geopandas as gpd
import pytest
from stac_local import S2_CLEAR_ID

from conftest import ROOT, save_untrained_model
from glacierkit.pipeline.cli import main

MODEL = ROOT / "models" / "unet_alps_s2.keras"


def _blocks() -> list[list[str]]:
    """The section's bash blocks, each as its command lines (comments dropped)."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Find and map a glacier", 1)[1].split("\n## ", 1)[0]
    return [[line.split("  #")[0].strip() for line in block.splitlines()
             if line.strip() and not line.startswith("#")]
            for block in re.findall(r"```bash\n(.*?)```", section, re.S)]


def _workdir(tmp_path):
    """A fresh folder that looks like a clone after ``make setup``: the committed model,
    the tests and the virtual environment, and nothing else (no runs/)."""
    work = tmp_path / "clone"
    work.mkdir()
    for name in ("models", "tests"):
        (work / name).symlink_to(ROOT / name)
    (work / ".venv").symlink_to(sys.prefix)
    return work


def _glacier_km2(folder) -> float:
    outlines = gpd.read_file(folder / "outlines.gpkg")
    return float(outlines.to_crs(32611).area.sum() / 1e6)


@pytest.mark.skipif(not MODEL.is_file(), reason="the committed model is not there")
def test_readme_find_and_map_commands_run_as_written(local_stac, tmp_path, monkeypatch,
                                                      capsys):
    commands = _blocks()[0]
    assert [c.split()[:2] for c in commands] == [["glacierkit", "search"],
                                                 ["glacierkit", "predict"],
                                                 ["glacierkit", "search"]]
    assert not any("--api" in c for c in commands)  # the default API: the environment's
    monkeypatch.setenv("GLACIERKIT_STAC_API", local_stac.url)
    monkeypatch.chdir(_workdir(tmp_path))
    for command in commands:
        assert main(shlex.split(command)[1:]) == 0, command
    out = capsys.readouterr().out
    listing = json.loads(open("runs/athabasca-stac/items.json").read())
    assert listing["features"][0]["id"] == S2_CLEAR_ID  # the clearest view of the glacier
    assert out.splitlines()[1].split()[0] == S2_CLEAR_ID
    areas = []
    for folder in ("runs/athabasca-item", f"runs/athabasca-stac/{S2_CLEAR_ID}"):
        assert {p.name for p in (tmp_path / "clone" / folder).glob("*.tif")} == {
            "probability.tif", "mask.tif"}
        areas.append(_glacier_km2(tmp_path / "clone" / folder))
    # the committed model maps Athabasca's ice: about 15 km² inside the 1984 outline's
    # 16.1, more with the glaciers around it in the loaded area (the outlines + 300 m)
    assert 12 < areas[0] < 40 and areas[0] == pytest.approx(areas[1], rel=1e-6)
    assert "clouds:" in out  # what the cloud mask did, on one line


@pytest.mark.skipif(not MODEL.is_file(), reason="the committed model is not there")
def test_readme_local_api_by_hand_from_a_fresh_folder(sample_data, tmp_path):
    """The README's by-hand block: serve the local API (tests/stac_local.py), then the one
    command (search, load, predict, outlines) with the PORT it printed, as subprocesses."""
    serve, command = _blocks()[1]
    assert serve.startswith(".venv/bin/python tests/stac_local.py")
    assert "PORT" in command and "--predict" in command
    work = _workdir(tmp_path)
    env = {**os.environ, "TMPDIR": str(tmp_path), "PYTHONUNBUFFERED": "1"}
    env.pop("GLACIERKIT_STAC_API", None)
    server = subprocess.Popen(shlex.split(serve), cwd=work, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        line = server.stdout.readline()  # printed once both servers accept connections
        m = re.match(r"STAC API: http://127\.0\.0\.1:(\d+)", line)
        assert m, (line, server.stderr.read() if server.poll() is not None else "")
        args = shlex.split(command.replace("PORT", m.group(1)))
        done = subprocess.run(args, cwd=work, env=env, capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
    finally:
        server.send_signal(signal.SIGTERM)  # stac_local.py stops both its servers
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
    assert server.returncode == 0
    folder = work / "runs" / "local-stac" / S2_CLEAR_ID
    assert {p.name for p in folder.iterdir()} >= {"probability.tif", "mask.tif",
                                                   "outlines.gpkg"}
    assert done.stdout.splitlines()[1].split()[0] == S2_CLEAR_ID
    assert "clouds:" in done.stdout


def test_predict_takes_a_scene_or_an_item_not_both(local_stac, tmp_path, capsys):
    model = save_untrained_model(tmp_path)
    assert main(["predict", str(model), "alps-s2/gorner", str(tmp_path / "q"), "--stac",
                 S2_CLEAR_ID]) == 2
    assert "either a SCENE" in capsys.readouterr().err
