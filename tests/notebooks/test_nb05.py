"""Notebook 05 and the U-Net vs NDSI comparison on the real test scenes."""

import geopandas as gpd
import pytest
import rasterio

from conftest import (
    ROOT,
    assert_views_can_render,
    holoviews_outputs,
    notebook_outputs,
    notebook_stderr,
    run_notebook,
)
from glacierkit.evaluate import NDSI_LEARNED, NDSI_ORACLE, UNET
from glacierkit.evaluate import compare_methods
from glacierkit.exceptions import DataNotFoundError, ParameterError
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
def test_notebook_05_runs_headless(prepared_alps, tmp_path, monkeypatch):
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)  # glacierkit quiets the kernel
    (tmp_path / "prepared").symlink_to(prepared_alps / "prepared")
    nb = run_notebook("05_evaluation", tmp_path, test_scenes=["alps-s2/gorner"],
                      unlabelled_scenes=["alps-s2/merdeglace"], n_boot=50, interactive_map=False)
    views = holoviews_outputs(nb)
    assert len(views) == 2  # error maps with outlines (error_view), per-glacier table
    assert_views_can_render(nb)
    # a quiet console: no TensorFlow/CUDA lines, the RGI repair note once, as glacierkit's
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
