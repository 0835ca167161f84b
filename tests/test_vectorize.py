"""Outlines from masks, GeoPackage output, and comparison with reference outlines."""

from __future__ import annotations

import math

import geopandas as gpd
import numpy as np
import pytest
import xarray as xr
from affine import Affine
from shapely.geometry import Point, box

from glacierkit.exceptions import NoOverlapError, ParameterError
from glacierkit.vectorize import (
    boundary_distances,
    compare_outlines,
    mask_to_polygons,
    write_outlines,
)

RES = 30.0
X0, Y0 = 400_000.0, 5_100_000.0
PX_KM2 = RES * RES / 1e6
CRS = "EPSG:32632"


def grid(values: np.ndarray) -> xr.DataArray:
    h, w = values.shape
    da = xr.DataArray(values, dims=("y", "x"),
                      coords={"y": Y0 - RES * (np.arange(h) + 0.5),
                              "x": X0 + RES * (np.arange(w) + 0.5)})
    return da.rio.write_crs(CRS).rio.write_transform(Affine(RES, 0, X0, 0, -RES, Y0))


def pixel_box(r0: int, r1: int, c0: int, c1: int):
    """The polygon covering rows r0..r1-1 and columns c0..c1-1 exactly."""
    return box(X0 + c0 * RES, Y0 - r1 * RES, X0 + c1 * RES, Y0 - r0 * RES)


def planted_mask() -> xr.DataArray:
    m = np.zeros((100, 120), dtype="uint8")
    m[10:30, 10:30] = 1  # 400 px
    m[50:80, 60:90] = 1
    m[60:65, 70:75] = 0  # a 25-px nunatak: 875 px
    m[5:7, 100:102] = 1  # 4 px
    m[90:95, 100:110] = 255  # nodata
    return grid(m)


def test_polygons_have_exact_areas_and_holes():
    gdf = mask_to_polygons(planted_mask())
    assert list(gdf["id"]) == [1, 2, 3]
    np.testing.assert_allclose(gdf["area_km2"], [875 * PX_KM2, 400 * PX_KM2, 4 * PX_KM2])
    assert gdf.crs == CRS
    assert len(gdf.geometry.iloc[0].interiors) == 1  # the nunatak stays a hole
    assert gdf.geometry.iloc[1].equals(pixel_box(10, 30, 10, 30))
    assert gdf.geometry.is_valid.all()


def test_min_area_and_probability_input():
    mask = planted_mask()
    kept = mask_to_polygons(mask, min_area_km2=0.01)
    assert len(kept) == 2 and kept["area_km2"].min() == pytest.approx(400 * PX_KM2)
    prob = xr.where(mask == 255, np.nan, mask * 0.8 + 0.1).astype("float32")
    prob = prob.rio.write_crs(CRS).rio.write_transform(mask.rio.transform())
    from_prob = mask_to_polygons(prob, threshold=0.5, min_area_km2=0.01)
    np.testing.assert_allclose(from_prob["area_km2"], kept["area_km2"])
    assert mask_to_polygons(prob, threshold=0.95).empty
    with pytest.raises(ParameterError):
        mask_to_polygons(mask, min_area_km2=-1)


def test_simplify_straightens_staircases():
    yy, xx = np.mgrid[:80, :80]
    disc = grid(((yy - 40) ** 2 + (xx - 40) ** 2 < 30**2).astype("uint8"))
    raw = mask_to_polygons(disc).geometry.iloc[0]
    simple = mask_to_polygons(disc, simplify_m=RES)
    assert len(simple.geometry.iloc[0].exterior.coords) < len(raw.exterior.coords) / 3
    assert simple["area_km2"].iloc[0] == pytest.approx(raw.area / 1e6, rel=0.03)


def test_geopackage_roundtrip(tmp_path):
    gdf = mask_to_polygons(planted_mask())
    path = write_outlines(gdf, tmp_path / "out" / "outlines.gpkg")
    back = gpd.read_file(path)
    assert back.crs == CRS
    np.testing.assert_allclose(back["area_km2"], gdf["area_km2"])
    np.testing.assert_allclose(back.area / 1e6, gdf["area_km2"])
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["outlines.gpkg"]
    empty = mask_to_polygons(grid(np.zeros((10, 10), dtype="uint8")))
    assert gpd.read_file(write_outlines(empty, tmp_path / "empty.gpkg")).empty
    with pytest.raises(ParameterError, match="gpkg"):
        write_outlines(gdf, tmp_path / "x.shp")


def reference_outlines() -> gpd.GeoDataFrame:
    geoms = [pixel_box(10, 30, 10, 30),  # G1: 400 px
             pixel_box(50, 70, 50, 80),  # G2: 600 px
             pixel_box(-10, 10, 85, 95),  # G4: half outside the scene, 100 px inside
             pixel_box(300, 310, 300, 310)]  # G3: outside the scene
    ids = ["RGI60-11.00001", "RGI60-11.00002", "RGI60-11.00004", "RGI60-11.00003"]
    # given in EPSG:4326 like RGI, to check the reprojection
    return gpd.GeoDataFrame({"RGIId": ids}, geometry=geoms, crs=CRS).to_crs("EPSG:4326")


def predicted_mask() -> xr.DataArray:
    m = np.zeros((100, 100), dtype="uint8")
    m[10:30, 10:30] = 1  # G1 exactly
    m[50:70, 50:75] = 1  # G2 missing its 5 rightmost columns: 500 px inside
    m[50:70, 80:82] = 1  # 40 px just outside G2 (30 and 60 m away)
    m[90:95, 5:10] = 1  # 25 px far from any glacier
    return grid(m)


def test_compare_outlines_planted_numbers():
    summary, table = compare_outlines(predicted_mask(), reference_outlines(),
                                      neighbourhood_m=100)
    assert list(table["RGIId"]) == ["RGI60-11.00002", "RGI60-11.00001", "RGI60-11.00004"]
    t = table.set_index("RGIId")
    np.testing.assert_allclose(t["ref_area_km2"], np.array([600, 400, 100]) * PX_KM2)
    np.testing.assert_allclose(t["mapped_inside_km2"], np.array([500, 400, 0]) * PX_KM2)
    np.testing.assert_allclose(t["mapped_km2"], np.array([540, 400, 0]) * PX_KM2)
    np.testing.assert_allclose(t["area_difference_pct"], [-10.0, 0.0, -100.0])
    np.testing.assert_allclose(t["inside_fraction"], [500 / 600, 1.0, 0.0])
    assert list(t["complete"]) == [True, True, False]
    assert t.loc["RGI60-11.00001", "boundary_distance_m"] == 0
    assert np.isfinite(t.loc["RGI60-11.00004", "boundary_distance_m"])
    assert summary["reference_area_km2"] == pytest.approx(1100 * PX_KM2)
    assert summary["mapped_area_km2"] == pytest.approx(965 * PX_KM2)
    assert summary["area_difference_pct"] == pytest.approx(100 * (965 - 1100) / 1100)
    assert summary["mapped_in_reference_km2"] == pytest.approx(900 * PX_KM2)
    assert summary["n_glaciers"] == 3 and summary["n_complete"] == 2
    assert summary["pixel_area_m2"] == pytest.approx(900)
    # without a neighbourhood only the pixels inside count
    _, inside_only = compare_outlines(predicted_mask(), reference_outlines(), neighbourhood_m=0)
    np.testing.assert_allclose(inside_only["mapped_km2"], inside_only["mapped_inside_km2"])
    # predicted polygons on the same grid give the same numbers as the mask
    polys = mask_to_polygons(predicted_mask())
    s2, t2 = compare_outlines(polys, reference_outlines(), like=predicted_mask())
    assert s2 == pytest.approx(summary, nan_ok=True)
    np.testing.assert_allclose(t2["mapped_km2"], table["mapped_km2"])


def test_compare_excludes_nodata_and_invalid():
    prob = predicted_mask().astype("float32")
    prob = prob.where(~((prob.y < Y0 - 10 * RES) & (prob.y > Y0 - 15 * RES)))  # rows 10..14
    prob = prob.rio.write_crs(CRS).rio.write_transform(predicted_mask().rio.transform())
    summary, t = compare_outlines(prob, reference_outlines())
    t = t.set_index("RGIId")
    assert t.loc["RGI60-11.00001", "ref_area_km2"] == pytest.approx(300 * PX_KM2)
    assert t.loc["RGI60-11.00001", "area_difference_pct"] == pytest.approx(0)
    assert t.loc["RGI60-11.00001", "boundary_distance_m"] == 0  # no boundary along nodata
    assert summary["reference_area_km2"] == pytest.approx(1000 * PX_KM2)


def test_boundary_distance_of_a_grown_square():
    ref = np.zeros((100, 100), dtype=bool)
    ref[40:60, 40:60] = True
    pred = np.zeros_like(ref)
    pred[39:61, 39:61] = True  # one pixel bigger all round
    valid = np.ones_like(ref)
    d = boundary_distances(pred, ref, valid, (RES, RES))
    assert d["ref_to_pred"] == pytest.approx(RES)
    assert d["pred_to_ref"] == pytest.approx((80 + 4 * math.sqrt(2)) / 84 * RES)
    assert d["mean"] == pytest.approx((80 + 4 * math.sqrt(2) + 76) / 160 * RES)
    assert d["median"] == pytest.approx(RES)
    same = boundary_distances(ref, ref, valid, (RES, RES))
    assert same["mean"] == 0
    edge = np.zeros_like(ref)
    edge[:, :10] = True  # touching the scene edge: only column 9 is a boundary
    assert boundary_distances(edge, edge, valid, (RES, RES))["mean"] == 0
    assert math.isnan(boundary_distances(np.zeros_like(ref), ref, valid, (RES, RES))["mean"])


def test_no_overlap_is_an_error():
    far = gpd.GeoDataFrame({"RGIId": ["x"]}, geometry=[Point(0, 0).buffer(1)], crs=CRS)
    with pytest.raises(NoOverlapError, match="overlaps"):
        compare_outlines(predicted_mask(), far)


def test_area_in_a_geographic_crs():
    """Outlines of a lat/lon mask get their area from the local UTM zone."""
    m = np.zeros((20, 20), dtype="uint8")
    m[5:15, 5:15] = 1
    d = 0.001  # degrees per pixel
    da = xr.DataArray(m, dims=("y", "x"), coords={"y": 46.0 - d * (np.arange(20) + 0.5),
                                                  "x": 8.0 + d * (np.arange(20) + 0.5)})
    da = da.rio.write_crs("EPSG:4326").rio.write_transform(Affine(d, 0, 8.0, 0, -d, 46.0))
    gdf = mask_to_polygons(da)
    lat = math.radians(46.0 - 0.01)
    expected = (10 * d * 111.32 * math.cos(lat)) * (10 * d * 111.15)
    assert gdf.crs == "EPSG:4326"
    assert gdf["area_km2"].iloc[0] == pytest.approx(expected, rel=0.01)


def test_real_outlines_against_themselves(sample_data):
    """RGI outlines burned on the Aletsch sample compare perfectly with themselves, and an
    NDSI map gets finite, per-glacier numbers."""
    from glacierkit.indices import ndsi
    from glacierkit.io import open_scene
    from glacierkit.labels import rasterize_outlines

    scene = open_scene("alps-s2/aletsch")
    labels = rasterize_outlines("alps-s2", like=scene)
    summary, table = compare_outlines(labels, "alps-s2")
    assert summary["n_glaciers"] > 3 and summary["n_complete"] < summary["n_glaciers"]
    assert summary["area_difference_pct"] == 0 and summary["mean_distance_m"] == 0
    assert summary["reference_area_km2"] == pytest.approx(float(labels.sum()) * 400 / 1e6)
    assert (table["area_difference_pct"] == 0).all()
    assert table["RGIId"].str.startswith("RGI50-11.").all()
    index = ndsi(scene)
    guess = (index > 0.4).astype("uint8").where(index.notnull(), 255).astype("uint8")
    guess = guess.rio.write_crs(scene.rio.crs).rio.write_transform(scene.rio.transform())
    s2, t2 = compare_outlines(guess, "alps-s2")
    assert 0 < s2["mean_distance_m"] < 2000 and np.isfinite(s2["area_difference_pct"])
    assert len(t2) == len(table)
