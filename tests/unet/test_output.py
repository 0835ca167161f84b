"""From a prediction to files: the one path (unet/output.py) the CLI, the batch runner and
the comparisons all take. Encodings, the set committed as a whole, outlines, the model's own
threshold, and refusing to overwrite the input scene."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import xarray as xr

from conftest import make_scene, write_scene
from glacierkit.exceptions import OutputExistsError, ParameterError
from glacierkit.unet import PROBABILITY_SCALE, predict_scene, predict_to_files, write_prediction

WINDOW = 64




def _predict(trained, scene, **kw):
    _, model, spec = trained
    return predict_scene((model, spec), scene, **{"window": WINDOW, "progress": False, **kw})


def test_write_prediction_cogs(trained, tmp_path):
    scene, _ = make_scene(70, 60)
    scene = scene.copy()
    scene[:, :5, :5] = np.nan
    prob = _predict(trained, scene, tta=True)
    paths = write_prediction(prob, tmp_path / "out", threshold=0.5, prefix="s_")
    assert {p.name for p in paths.values()} == {"s_probability.tif", "s_mask.tif",
                                                "s_confidence.tif"}
    with rasterio.open(paths["probability"]) as src:
        v = src.read(1)
        assert src.crs == scene.rio.crs and src.dtypes[0] == "uint8" and src.nodata == 255
        assert src.scales[0] == pytest.approx(1 / PROBABILITY_SCALE)
        assert src.transform.almost_equals(scene.rio.transform())
    ok = np.isfinite(prob.values)
    np.testing.assert_array_equal(v == 255, ~ok)
    assert np.abs(v[ok] / PROBABILITY_SCALE - prob.values[ok]).max() <= 0.5 / PROBABILITY_SCALE + 1e-6
    with rasterio.open(paths["mask"]) as src:
        m = src.read(1)
    np.testing.assert_array_equal(m, np.where(ok, prob.values > 0.5, 255))
    with rasterio.open(paths["confidence"]) as src:
        c = src.read(1)
    assert c[ok].max() <= PROBABILITY_SCALE and (c[~ok] == 255).all()
    float_paths = write_prediction(prob.drop_vars("confidence"), tmp_path / "f",
                                   probability_dtype="float32")
    assert set(float_paths) == {"probability", "mask"}
    back = xr.open_dataarray(float_paths["probability"], engine="rasterio").squeeze()
    np.testing.assert_allclose(back.values, prob.values, equal_nan=True)
    assert not list((tmp_path / "out").glob(".*"))  # no temporary files left



def test_predict_to_files_writes_one_set_with_outlines(trained, tmp_path):
    path, model, spec = trained
    scene = write_scene(tmp_path / "scene.tif", 96, 80, seed=3)
    written = predict_to_files(path, scene, tmp_path / "out", outlines=True, window=WINDOW,
                               progress=False, guard=False)
    assert set(written.paths) == {"probability", "mask", "outlines"}
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["mask.qml", "mask.tif", "outlines.gpkg", "probability.qml",
                     "probability.tif"]  # committed together, no staging left
    polygons = gpd.read_file(written.paths["outlines"])
    with rasterio.open(written.paths["mask"]) as src:
        mask = src.read(1)
        pixel_km2 = abs(src.transform.a * src.transform.e) / 1e6
        assert src.crs == polygons.crs
    # the polygons cover the mask's glacier pixels (small specks below min_area dropped)
    assert polygons["area_km2"].sum() == pytest.approx((mask == 1).sum() * pixel_km2, rel=0.1)
    p = written.probability.values
    np.testing.assert_array_equal(mask, np.where(np.isnan(p), 255, p > 0.5))


def test_predict_to_files_uses_the_models_own_threshold(trained, tmp_path):
    from glacierkit.unet import save_model

    _, model, spec = trained
    path = save_model(model, tmp_path / "m.keras", spec, architecture={"threshold": 0.8})
    scene, _ = make_scene(70, 60, seed=2)
    written = predict_to_files(path, scene, tmp_path / "out", window=WINDOW, progress=False,
                               guard=False)
    with rasterio.open(written.paths["mask"]) as src:
        assert src.tags()["threshold"] == "0.8"
        mask = src.read(1)
    np.testing.assert_array_equal(mask, (written.probability.values > 0.8).astype("uint8"))


def test_predict_to_files_checks_before_predicting(trained, tmp_path):
    path, _, _ = trained
    scene_file = write_scene(tmp_path / "probability.tif", 48, 40)
    before = scene_file.read_bytes()
    with pytest.raises(ParameterError, match="would overwrite or change the scene"):
        predict_to_files(path, scene_file, tmp_path, window=WINDOW, progress=False)
    assert scene_file.read_bytes() == before  # the input is never touched
    with pytest.raises(ParameterError, match="threshold=1.5"):
        predict_to_files(path, scene_file, tmp_path / "x", threshold=1.5)
    out = tmp_path / "out"
    predict_to_files(path, scene_file, out, window=WINDOW, progress=False, guard=False)
    with pytest.raises(OutputExistsError):
        predict_to_files(path, scene_file, out, overwrite=False, window=WINDOW)
