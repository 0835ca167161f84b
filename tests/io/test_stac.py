"""STAC search and load against a real STAC API on 127.0.0.1 (``rustac serve``) whose
assets are COGs served with HTTP range requests: pystac-client, odc-stac and GDAL run for
real (``tests/stac_local.py`` builds the items from Athabasca's sample scenes)."""

import warnings

import numpy as np
import pandas as pd
import pytest
import rasterio
from stac_local import L8_ID, OUTLINES, QA_WINDOW, S2_CLEAR_ID, S2_CLOUDY_ID

from glacierkit import open_scene
from glacierkit.exceptions import DataNotFoundError, ObscuredWarning, ParameterError
from glacierkit.io import stac

SAMPLES = {L8_ID: "athabasca/l8-2020-08-16", S2_CLOUDY_ID: "athabasca/s2-2020-09-09",
           S2_CLEAR_ID: "athabasca/s2-2020-09-11"}


def test_search_pages_and_ranks_by_the_clouds_over_the_glacier(local_stac):
    """One item per page (paging runs), ranked by the glacier area seen clearly: the item
    with the lowest scene cloud cover has a cloud on the glacier and comes last."""
    found = stac.search(api=local_stac.url, outlines=OUTLINES, dates="2020-08-01/2020-09-30",
                        page_size=1)
    t = found.table
    assert list(t["id"]) == [S2_CLEAR_ID, S2_CLOUDY_ID, L8_ID] or \
        list(t["id"])[0] == S2_CLEAR_ID
    assert t["glacier_clear_pct"].is_monotonic_decreasing
    assert t.loc[t["id"] == S2_CLOUDY_ID, "scene_cloud_pct"].item() == t["scene_cloud_pct"].min()
    assert t.loc[0, "glacier_obscured_pct"] < 2 < t.loc[1, "glacier_obscured_pct"]
    assert (t["glacier_covered_pct"] == 100).all() and set(t["level"]) == {"surface"}
    assert found.hrefs(1) == [local_stac.item_url(S2_CLEAR_ID)]


def test_search_filters_dates_collections_and_scene_cloud_cover(local_stac, tmp_path):
    ids = lambda **kw: set(stac.search(api=local_stac.url, outlines=OUTLINES, rank=False,  # noqa: E731
                                       **kw).table["id"])
    assert ids(dates="2020-09-01/2020-09-30") == {S2_CLEAR_ID, S2_CLOUDY_ID}
    assert ids(collections=["landsat-c2-l2"]) == {L8_ID}
    assert ids(max_cloud=20) == {L8_ID, S2_CLOUDY_ID}  # the server has no filter: done here
    nothing = stac.search(api=local_stac.url, bbox=(10.0, 46.0, 10.1, 46.1))
    assert nothing.items == [] and nothing.table.empty
    with pytest.raises(ParameterError, match="outlines"):
        stac.search(api=local_stac.url, rgi_ids=["RGI60-02.00001"])
    assert len(stac.search(api=local_stac.url, bbox=(-117.30, 52.16, -117.25, 52.20)).items) == 3
    # an RGI-style file of two glaciers, Athabasca and one 2 degrees east: the RGIIds pick
    from shapely.affinity import translate

    from glacierkit.labels import read_outlines

    one = read_outlines(OUTLINES).to_crs(4326)[["geometry"]]
    far = one.assign(RGIId="RGI60-02.00002",
                     geometry=one.geometry.map(lambda g: translate(g, xoff=2.0)))
    rgi = pd.concat([one.assign(RGIId="RGI60-02.00001"), far], ignore_index=True)
    rgi.to_file(tmp_path / "rgi.gpkg")
    pick = lambda i: set(stac.search(api=local_stac.url, outlines=tmp_path / "rgi.gpkg",  # noqa: E731
                                     rgi_ids=[i], rank=False).table["id"])
    assert pick("RGI60-02.00001") == {S2_CLEAR_ID, S2_CLOUDY_ID, L8_ID}
    assert pick("RGI60-02.00002") == set()
    import pystac

    found = stac.search(api=local_stac.url, outlines=OUTLINES, rank=False)
    saved = pystac.ItemCollection.from_file(str(found.to_json(tmp_path / "items.json")))
    assert [i.id for i in saved] == list(found.table["id"])


def test_open_item_loads_reflectance_by_role_lazily_with_the_right_scaling(local_stac):
    """Each item style (Earth Search Landsat with raster:bands; Sentinel-2 with the -1000
    offset of baseline 05.00; Planetary-Computer-style band keys without raster:bands) gives
    back the sample's reflectance, on its grid, as a Dask-backed scene."""
    for ident, sample in SAMPLES.items():
        scene = stac.open_item(local_stac.item_url(ident), outlines=OUTLINES, clouds=False)
        assert scene.chunks is not None  # lazy
        ref = open_scene(sample)
        assert list(scene.role.values) == ["blue", "green", "red", "nir", "swir1", "swir2"]
        assert scene.attrs["level"] == "surface" and scene.attrs["scene_id"] == ident
        assert scene.attrs["date"] == ref.attrs["date"] and scene.rio.crs == ref.rio.crs
        sub = scene.sel(x=ref.x, y=ref.y)  # the item's grid, not a resampled one
        got, want = sub.values, ref.values
        ok = np.isfinite(want) & (want >= 0)  # unsigned DNs cannot hold negative values
        assert np.array_equal(np.isnan(got[ok]), np.isnan(want[ok]))
        np.testing.assert_allclose(got[ok], want[ok], atol=1.01e-4)  # 0 is stored as DN 1
    assert stac.item_scene_info(stac.get_item(local_stac.item_url(S2_CLEAR_ID)))[
        "roles"]["nir"]["band"] == "B8A"


def test_open_item_makes_the_real_qa_clouds_nodata_and_records_the_share(local_stac,
                                                                        sample_data):
    url = local_stac.item_url(L8_ID)
    with pytest.warns(ObscuredWarning, match="glacier area"):
        scene = stac.open_item(url, outlines=OUTLINES)
    ref = open_scene(SAMPLES[L8_ID])
    sub = scene.sel(x=ref.x, y=ref.y).values
    r0, c0 = QA_WINDOW
    with rasterio.open(sample_data.fetch_product("landsat8-qa")) as src:
        qa = src.read(1, window=rasterio.windows.Window(c0, r0, ref.sizes["x"], ref.sizes["y"]))
    hidden = ((qa >> 1) & 0b1111) > 0
    assert np.isnan(sub[:, hidden]).all()
    assert np.isfinite(sub[:, ~hidden & np.isfinite(ref.values).all(axis=0)]).all()
    assert 0.2 < scene.attrs["obscured_glacier_fraction"] < 0.4
    assert scene.attrs["cloud_layer"].endswith("_QA_PIXEL.TIF")
    # the same through open_scene, as notebooks and the batch runner name scenes
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ObscuredWarning)
        same = open_scene(url)
    assert same.attrs["scene_id"] == L8_ID and same.attrs["cloud_mask"] == scene.attrs[
        "cloud_mask"]


def test_item_ids_are_looked_up_and_unknown_ones_name_the_fix(local_stac):
    item = stac.get_item(S2_CLEAR_ID, api=local_stac.url)
    assert item.id == S2_CLEAR_ID and item.collection_id == "sentinel-2-l2a"
    with pytest.raises(DataNotFoundError, match="glacierkit search"):
        stac.get_item("S2A_11UMT_20990101_0_L2A", api=local_stac.url)
    assert stac.is_item(local_stac.item_url(L8_ID))
    assert not stac.is_item("https://example.org/scene.tif") and not stac.is_item("alps-s2/x")


def test_a_stac_item_is_a_scene_name_for_notebook_01(local_stac, tmp_path):
    """prepare_scenes (notebook 01, its stac_query) takes item URLs like any scene name; the
    prepared file keeps the level and the cloud record, and load_prepared reads them back."""
    from glacierkit import slug
    from glacierkit.prep import load_prepared, prepare_scenes

    urls = stac.query_scenes({"api": local_stac.url, "outlines": OUTLINES,
                              "collections": ["sentinel-2-l2a"], "top": 1})
    assert urls == [local_stac.item_url(S2_CLEAR_ID)] and slug(urls[0]) == S2_CLEAR_ID
    table = prepare_scenes(urls, tmp_path, outlines=OUTLINES)
    assert table.loc[0, "slug"] == S2_CLEAR_ID and table.loc[0, "glacier_fraction"] > 0.3
    scene, labels = load_prepared(tmp_path, urls[0])
    assert scene.attrs["level"] == "surface"
    assert scene.attrs["cloud_mask"].startswith("Sentinel-2 SCL")
    assert 0.05 < scene.attrs["obscured_fraction"] < 0.15
    # what notebook 05 puts in metrics.json for a prepared test scene (compare_methods):
    # the cloud record and the obscured share of the glacier area. The clouds of the clear
    # date lie on rock; those of the cloudy date on the glacier.
    from glacierkit.evaluate.compare import _obscured_share
    from glacierkit.io.clouds import cloud_summary, obscured_glacier_fraction
    from glacierkit.prep import scene_outlines

    assert _obscured_share(scene, labels, None) < 0.05
    cloudy = local_stac.item_url(S2_CLOUDY_ID)
    prepare_scenes([cloudy], tmp_path, outlines=OUTLINES)
    scene, labels = load_prepared(tmp_path, cloudy)
    assert cloud_summary(scene.attrs)["cloud_mask"].startswith("Sentinel-2 SCL")
    share = _obscured_share(scene, labels, None)  # as recorded when the mask was applied
    assert 0.2 < share < 0.6
    # without the record: over the outlines (the labels are nodata under the clouds, so
    # they cannot tell; they would say 0)
    del scene.attrs["obscured_glacier_fraction"]
    reference = scene_outlines(cloudy, OUTLINES, like=scene)
    assert _obscured_share(scene, labels, reference) == pytest.approx(share, abs=0.02)
    assert obscured_glacier_fraction(scene, labels) < 0.05


def _item(ident, collection, platform, assets):
    import pystac

    return pystac.Item.from_dict({
        "type": "Feature", "stac_version": "1.0.0", "id": ident, "collection": collection,
        "geometry": None, "properties": {"datetime": "1984-08-20T18:00:00Z",
                                          "platform": platform}, "links": [],
        "assets": {k: {"href": f"https://example.org/{ident}_{k}.TIF"} for k in assets}})


def test_item_sensor_level_and_roles_from_metadata():
    """Landsat 5 (the 1980s), Level-1 collections and unknown platforms, without a server."""
    keys = ["blue", "green", "red", "nir08", "swir16", "swir22", "qa_pixel"]
    info = stac.item_scene_info(_item("LT05_L2SP_045024_19840820_02_T1", "landsat-c2-l2",
                                      "landsat-5", keys))
    assert (info["sensor"], info["product"], info["level"]) == ("landsat5", "l2sp", "surface")
    assert {r: v["band"] for r, v in info["roles"].items()} == {
        "blue": "B1", "green": "B2", "red": "B3", "nir": "B4", "swir1": "B5", "swir2": "B7"}
    assert info["roles"]["swir1"]["scaling"] == {"scale": 2.75e-05, "offset": -0.2,
                                                 "nodata": 0}
    assert info["cloud"] == ("qa_pixel", "qa_pixel")
    l1_item = _item("LC08_L1TP_045024_20200816_02_T1", "landsat-c2-l1", "LANDSAT_8", keys)
    l1_item.properties["view:sun_elevation"] = 30.0  # TOA reflectance / sin(30) = x 2
    l1 = stac.item_scene_info(l1_item)
    assert (l1["sensor"], l1["level"]) == ("landsat8", "toa")
    assert l1["roles"]["red"]["scaling"]["scale"] == pytest.approx(2 * 2e-5)
    with pytest.raises(Exception, match="platform 'modis'"):
        stac.item_scene_info(_item("MOD09", "modis-09a1", "modis", keys))


def test_endpoints_and_planetary_computer_signing(monkeypatch):
    """Names and URLs of the live APIs, the environment's default, and Planetary Computer's
    URL signing chosen for its host only (the signing itself needs its token service)."""
    import planetary_computer

    monkeypatch.delenv(stac.API_ENV, raising=False)
    assert stac._api_url(None) == stac.EARTH_SEARCH
    assert stac._api_url("planetary-computer") == stac.PLANETARY_COMPUTER
    monkeypatch.setenv(stac.API_ENV, "planetary-computer")
    assert stac._api_url(None) == stac.PLANETARY_COMPUTER
    assert stac._api_url("http://127.0.0.1:9/") == "http://127.0.0.1:9"
    assert stac._signer(stac.PLANETARY_COMPUTER, "auto") is planetary_computer.sign_inplace
    assert stac._signer(stac.EARTH_SEARCH, "auto") is None
    assert stac._signer(stac.PLANETARY_COMPUTER, False) is None
    assert stac._signer("http://127.0.0.1:9", True) is planetary_computer.sign_inplace
