"""The README's "Find and map a glacier" commands, run against the local STAC API: search,
load, predict and outlines, in the order a user types them."""

import json
import re
import shlex

from stac_local import S2_CLEAR_ID

from conftest import ROOT, save_untrained_model
from glacierkit.pipeline.cli import main


def _commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Find and map a glacier", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [line for line in block.splitlines() if line.startswith("glacierkit ")]


def test_readme_find_and_map_commands_run_against_a_local_stac_api(local_stac, tmp_path,
                                                                   capsys):
    commands = _commands()
    assert [c.split()[1] for c in commands] == ["search", "predict", "search"]
    # the same commands, pointed at the local API, writing under tmp_path, with the tiny
    # test model in place of the committed one (its predictions are tested elsewhere)
    model = save_untrained_model(tmp_path)
    for command in commands:
        args = shlex.split(command)[1:]
        args = [local_stac.url if a == "earth-search" else a for a in args]
        args = [str(tmp_path / a) if a.startswith("runs/") else a for a in args]
        args = [str(model) if a == "models/unet_alps_s2.keras" else a for a in args]
        assert main(args) == 0, command
    out = capsys.readouterr().out
    listing = json.loads((tmp_path / "runs/athabasca-stac/items.json").read_text())
    assert listing["features"][0]["id"] == S2_CLEAR_ID  # the clearest view of the glacier
    assert out.splitlines()[1].split()[0] == S2_CLEAR_ID
    for folder in (tmp_path / "runs/athabasca-item", tmp_path / "runs/athabasca-stac" /
                   S2_CLEAR_ID):
        assert {p.name for p in folder.glob("*.tif")} == {"probability.tif", "mask.tif"}
        assert (folder / "outlines.gpkg").is_file()
    assert "clouds:" in out  # what the cloud mask did, on one line


def test_predict_takes_a_scene_or_an_item_not_both(local_stac, tmp_path, capsys):
    model = save_untrained_model(tmp_path)
    assert main(["predict", str(model), "alps-s2/gorner", str(tmp_path / "q"), "--stac",
                 S2_CLEAR_ID]) == 2
    assert "either a SCENE" in capsys.readouterr().err
