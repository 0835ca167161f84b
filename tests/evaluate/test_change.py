"""Glacier change through time on planted scenes, where every area is known exactly."""

import warnings

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from shapely.geometry import box

from conftest import make_scene
from glacierkit.evaluate.change import area_uncertainty, decimal_year, glacier_change
from glacierkit.exceptions import ObscuredWarning, ParameterError

PX_KM2 = 30 * 30 / 1e6


def test_the_one_pixel_buffer_of_a_square():
    zones = np.zeros((20, 20), "int32")
    zones[2:18, 2:18] = 1
    mask = np.zeros((20, 20), bool)
    mask[5:15, 5:15] = True  # 100 px; grown by one 4-connected step 140, shrunk 64
    counts, half = area_uncertainty(mask, zones, 1, np.ones_like(mask), 1)
    assert counts[1] == 100 and half[1] == (140 - 64) / 2
    # where the zone cuts through the map (a divide), growth beyond it does not count
    zones[:, 10:] = 0
    counts, half = area_uncertainty(mask, zones, 1, np.ones_like(mask), 1)
    assert counts[1] == 50 and half[1] == ((50 + 10 + 5 + 5) - 8 * 4) / 2


def test_decimal_years():
    assert decimal_year("1984") == (1984.5, 0.5)
    assert decimal_year("2020-07-02")[0] == pytest.approx(2020 + 183 / 366)
    with pytest.raises(ParameterError, match="YYYY-MM-DD"):
        decimal_year("summer 1984")


def _retreated(scene, glacier, keep_cols: int, date: str):
    """The planted scene with the glacier only in its first ``keep_cols`` columns."""
    out = scene.copy(deep=True)
    rock = out.isel(x=-1, y=0).values  # a rock pixel's spectrum
    gone = glacier.copy()
    gone[:, :keep_cols] = False
    out.values[:, gone] = rock[:, None]
    out.attrs = {**scene.attrs, "date": date, "scene_id": f"planted {date}"}
    return out


def test_glacier_change_on_planted_dates(trained, tmp_path):
    """Left half glacier in 2018, left third in 2020, a cloud over part of it in 2020:
    NDSI areas exact, U-Net close, changes, rates, flags and the files for QGIS."""
    path, _, _ = trained
    scene, glacier = make_scene(64, 48, seed=5)  # glacier: columns 0-23
    t = scene.rio.transform()
    outline = gpd.GeoDataFrame({"RGIId": ["RGI60-99.00001"]}, crs=scene.rio.crs,
                               geometry=[box(t.c, t.f - 64 * 30, t.c + 24 * 30, t.f)])
    first = _retreated(scene, glacier, 24, "2018-08-01")
    second = _retreated(scene, glacier, 16, "2020-08-01")
    second.values[:, :20, :24] = np.nan  # a cloud: 20 x 24 of the 64 x 24 reference pixels
    with pytest.warns(ObscuredWarning, match="RGI60-99.00001 on 2020-08-01"):
        change = glacier_change([first, second], outline, path, ndsi_threshold=0.4,
                                reference_date="2016-08-01")
    a = change.areas.set_index("date")
    assert a.loc["2016-08-01", "area_km2"] == pytest.approx(64 * 24 * PX_KM2)
    assert a.loc["2018-08-01", "area_ndsi_km2"] == pytest.approx(64 * 24 * PX_KM2)
    assert a.loc["2020-08-01", "area_ndsi_km2"] == pytest.approx((44 * 16) * PX_KM2)
    # the tiny test U-Net is rough at the planted edge; the bookkeeping is what is tested
    assert a.loc["2020-08-01", "area_km2"] == pytest.approx((44 * 16) * PX_KM2, rel=0.2)
    assert a.loc["2020-08-01", "sigma_methods_km2"] == pytest.approx(abs(
        a.loc["2020-08-01", "area_km2"] - a.loc["2020-08-01", "area_ndsi_km2"]) / 2)
    assert a.loc["2020-08-01", "obscured_fraction"] == pytest.approx(20 * 24 / (64 * 24))
    assert "lower bound" in a.loc["2020-08-01", "flag"] and a.loc["2018-08-01", "flag"] == ""
    # the planted glacier fills the reference outline in 2018: its left edge is the image
    # edge, the rest of its edge the outline: sigma_buffer counts the edge pixels that move
    assert a.loc["2018-08-01", "sigma_buffer_km2"] > 0
    assert a.loc["2018-08-01", "sigma_km2"] == pytest.approx(np.hypot(
        a.loc["2018-08-01", "sigma_buffer_km2"], a.loc["2018-08-01", "sigma_methods_km2"]))
    c = change.changes.set_index("date")
    assert c.loc["2020-08-01", "dA_km2"] < c.loc["2018-08-01", "dA_km2"] <= 0.01
    assert c.loc["2020-08-01", "rate_km2_per_yr"] == pytest.approx(
        c.loc["2020-08-01", "dA_km2"] / 4.0, rel=0.01)
    paths = change.write(tmp_path / "change")
    layers = gpd.list_layers(paths["gpkg"])["name"].tolist()
    assert sorted(layers) == ["glaciers", "outlines"]
    mapped = gpd.read_file(paths["gpkg"], layer="outlines")
    assert mapped.crs == scene.rio.crs
    assert set(mapped["date"]) == {"2016-08-01", "2018-08-01", "2020-08-01"}
    table = pd.read_csv(paths["areas"])
    assert {"lon", "lat"} <= set(table) and table["lon"].notna().all()
    assert sorted(p.name for p in (tmp_path / "change").iterdir()) == [
        "change.csv", "change.gpkg", "change.json", "change_areas.csv"]  # no temporaries
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ObscuredWarning)
        with pytest.raises(ParameterError, match="no date"):
            glacier_change([scene], outline, path, ndsi_threshold=0.4, reference_date="2016")
