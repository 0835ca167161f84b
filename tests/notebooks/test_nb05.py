"""Notebook 05 and the U-Net vs NDSI comparison on the real test scenes."""

import os
import subprocess
import sys
from pathlib import Path

import geopandas as gpd
import pytest
import rasterio

from conftest import (
    PAPERMILL_LINES,
    ROOT,
    assert_views_can_render,
    foreign_stderr_lines,
    holoviews_outputs,
    notebook_outputs,
    notebook_stderr,
    path_reprs,
)
from glacierkit.console import QUIET_ENV
from glacierkit.evaluate import NDSI_LEARNED, NDSI_ORACLE, UNET, compare_methods
from glacierkit.exceptions import DataNotFoundError, ParameterError
from glacierkit.pipeline import NOTEBOOK_DIR
from glacierkit.unet import PRETRAINED, resolve_model_path

MODEL = ROOT / PRETRAINED


@pytest.fixture(scope="module")
def comparison(prepared_alps, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval")
    # reuse the session's prepared scenes
    (out / "prepared").symlink_to(prepared_alps / "prepared")
    return out, compare_methods(out, MODEL, ["alps-s2/morteratsch", "alps-s2/gorner"],
                                ["alps-s2/aletsch", "alps-s2/fiescher"], n_boot=200)


def test_committed_unet_beats_ndsi_with_the_learned_threshold(comparison):
    """The headline claim, measured on the test scenes with the committed model."""
    _, result = comparison
    pooled = result.comparison[result.comparison.scene == "pooled"].set_index("method")
    assert pooled.loc[UNET, "KC"] > pooled.loc[NDSI_LEARNED, "KC"]
    # issue 12: the robust model still beats the per-scene NDSI oracle, pooled KC >= 0.76
    assert pooled.loc[UNET, "KC"] >= 0.76
    assert pooled.loc[UNET, "KC"] > pooled.loc[NDSI_ORACLE, "KC"]
    assert pooled.loc[UNET, "IoU"] > pooled.loc[NDSI_LEARNED, "IoU"]
    # the oracle is at least as good as the learned threshold on its own scenes
    per_scene = result.comparison[result.comparison.scene != "pooled"].set_index(["scene", "method"])
    for scene in ("alps-s2/morteratsch", "alps-s2/gorner"):
        assert per_scene.loc[(scene, NDSI_ORACLE), "KC"] >= per_scene.loc[(scene, NDSI_LEARNED), "KC"]
    # the learned threshold came from the training scenes only
    assert result.thresholds["ndsi_learned_on"] == ["alps-s2/aletsch", "alps-s2/fiescher"]
    # CIs bracket the pooled estimates
    for m in (UNET, NDSI_LEARNED):
        assert pooled.loc[m, "KC_lo"] <= pooled.loc[m, "KC"] <= pooled.loc[m, "KC_hi"]


def test_outputs_are_georeferenced(comparison):
    out, result = comparison
    folder = out / "predictions" / "alps-s2_gorner"
    for name in ("probability.tif", "mask.tif"):
        with rasterio.open(folder / name) as src:
            assert src.crs.to_epsg() == 32632 and src.overviews(1) is not None
    gdf = gpd.read_file(folder / "outlines.gpkg")
    assert gdf.crs.to_epsg() == 32632 and (gdf["area_km2"] > 0).all()
    assert (out / "metrics.json").is_file() and (out / "table4.csv").is_file()
    import json

    clouds = json.loads((out / "metrics.json").read_text())["provenance"]["clouds"]
    assert clouds["alps-s2/gorner"] == {"cloud_mask": "none (no cloud layer)",
                                        "obscured_glacier_fraction": 0.0}
    assert set(result.table4["method"]) >= {UNET, NDSI_LEARNED, NDSI_ORACLE, "paper: Deep U-Net"}


def test_refuses_scoring_on_training_scenes(tmp_path):
    with pytest.raises(ParameterError, match="both train and test"):
        compare_methods(tmp_path, MODEL, ["alps-s2/aletsch"], ["alps-s2/aletsch"])


def test_model_path_resolution(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_model_path(PRETRAINED) == MODEL
    assert resolve_model_path("unet_alps_s2.keras") == MODEL
    with pytest.raises(DataNotFoundError, match="train one with"):
        resolve_model_path("nope.keras")


@pytest.mark.notebook
def test_notebook_05_runs_headless_with_papermill_and_prints_no_library_noise(prepared_alps,
                                                                               tmp_path):
    """As a user runs it: the papermill command line, list parameters as text (-p), the
    interactive map on, and none of the variables that quiet TensorFlow (glacierkit's runner
    sets them for its kernels; here only the notebook's ``import glacierkit`` can)."""
    (tmp_path / "prepared").symlink_to(prepared_alps / "prepared")
    nb = tmp_path / "notebooks" / "05_evaluation.ipynb"
    nb.parent.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in (*QUIET_ENV, "PYTHONWARNINGS")}
    out = subprocess.run(
        [str(Path(sys.executable).with_name("papermill")), str(NOTEBOOK_DIR / nb.name), str(nb),
         "-p", "output_dir", str(tmp_path), "-p", "test_scenes", "[alps-s2/gorner]",
         "-p", "unlabelled_scenes", '["alps-s2/merdeglace"]', "-p", "n_boot", "50",
         "-p", "conditions", '["toa moderate"]', "-p", "interactive_map", "true", "--cwd", str(NOTEBOOK_DIR)],
        capture_output=True, text=True, env=env, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    assert foreign_stderr_lines(out.stderr, tool=PAPERMILL_LINES) == [], out.stderr
    views = holoviews_outputs(nb)
    assert len(views) == 2  # error maps with outlines (error_view), per-glacier table
    assert_views_can_render(nb)
    assert any("leafmap" in str(w) or "Map(" in str(w)
               for w in notebook_outputs(nb, "text/plain"))  # the interactive map was made
    assert path_reprs(nb) == []  # the figures show, not the paths they were saved to
    # a quiet console: no TensorFlow/CUDA lines, the RGI repair note once, as glacierkit's;
    # the domain-shift guard (Athabasca) as glacierkit's lines
    assert notebook_stderr(nb) == []
    notes = [t for t in notebook_outputs(nb, "stderr") if "invalid polygons" in t]
    assert len(notes) == 1 and notes[0].startswith("glacierkit: warning: ")
    assert (tmp_path / "table4.csv").is_file()
    assert (tmp_path / "figures" / "05_error_maps.png").is_file()
    assert (tmp_path / "predictions" / "alps-s2_merdeglace" / "mask.tif").is_file()
    # the other region (Athabasca): its table, error maps, guard, predictions
    other = tmp_path / "other_region"
    assert (other / "cross_region.csv").is_file() and (other / "cross_region.json").is_file()
    assert (tmp_path / "figures" / "05_other_region_errors.png").is_file()
    assert (other / "athabasca_l8-2020-08-16" / "probability.tif").is_file()
    # across conditions: the one asked for, with what the loader did on each scene
    import pandas as pd

    summary = pd.read_csv(tmp_path / "conditions" / "conditions_summary.csv")
    assert list(summary["condition"]) == ["toa moderate"] and summary["scenes"].item() == 5
    levels = pd.read_csv(tmp_path / "conditions" / "conditions_levels.csv")
    assert (levels["level"] == "toa").sum() >= 3  # found from the data, without metadata
