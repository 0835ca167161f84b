"""Processing level and unstated offsets: from the metadata, from the data, by the user; the
dark-object correction; Sentinel-2 band names; what prediction does with a TOA scene."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import xarray as xr

from conftest import ROOT, make_scene, save_untrained_model
from glacierkit.evaluate.conditions import simulate_toa
from glacierkit.exceptions import ParameterError, ReflectanceRangeError
from glacierkit.io import open_scene, write_raster
from glacierkit.io.level import (
    ATMOSPHERE,
    check_level,
    detect_level,
    detect_offset,
    guess_product,
    path_reflectance,
    to_surface,
)

S2_NAMES = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10",
            "B11", "B12"]


def _shadowed(seed=0, height=80, width=64):
    """A synthetic surface-reflectance scene with a patch of dark shadowed rock (the
    pixels that give a top-of-atmosphere scene away)."""
    scene, glacier = make_scene(height, width, seed=seed)
    data = scene.values.copy()
    dark = {"blue": 0.015, "green": 0.02, "red": 0.025, "nir": 0.03, "swir1": 0.035,
            "swir2": 0.03}
    roles = [str(r) for r in scene.role.values]
    for i, r in enumerate(roles):
        data[i, -10:, -12:] = dark[r]
    scene = scene.copy(data=data)
    scene.attrs = {k: v for k, v in scene.attrs.items() if k not in ("product", "offset_check")}
    return scene, glacier


def _bare(scene):
    """A scene as a file that says nothing about its product or level."""
    out = scene.copy()
    out.attrs = {"sensor": scene.attrs["sensor"], "scene_id": "bare"}
    return out


# --------------------------------------------------------------------------- metadata
@pytest.mark.parametrize("text, product", [
    ("S2B_MSIL1C_20230801T102559_N0509_R108_T32TMS_20230801T123203", "l1c"),
    ("S2A_MSIL2A_20200720T103031_N0214_R108_T32TMS", "l2a"),
    ("LC08_L1TP_140041_20200101_20200113_02_T1", "l1"),
    ("LC08_L2SP_140041_20200101_20200202_02_T1", "l2sp"),
    ("export_L1C_2023.tif", "l1c"),
    ("athabasca_B03_20200911.tif", None),
])
def test_product_from_names(text, product):
    assert guess_product(text) == product


def test_level_from_the_mtl_and_the_registry(sample_data):
    l2 = open_scene("landsat8-l2sp")
    assert l2.attrs["level"] == "surface" and "PROCESSING_LEVEL L2SP" in l2.attrs["level_from"]
    alps = open_scene("alps-s2/aletsch")
    assert (alps.attrs["level"], alps.attrs["level_from"]) == ("surface", "the sample registry")


def test_level_from_a_landsat_l1_product(tmp_path):
    from test_io import _landsat_product

    _, mtl = _landsat_product(tmp_path / "l1", level="L1TP")
    scene = open_scene(mtl)
    assert scene.attrs["level"] == "toa" and "L1TP" in scene.attrs["level_from"]


def test_level_from_a_sentinel2_product_name(tmp_path):
    scene, _ = _shadowed()
    path = write_raster(scene, tmp_path / "S2A_MSIL1C_20230801_N0509_T32TMS.tif",
                        tags={"sensor": "sentinel2"})
    opened = open_scene(path)
    assert opened.attrs["level"] == "toa" and "file name" in opened.attrs["level_from"]


def test_level_given_wins_and_bad_values_are_named(tmp_path):
    scene, _ = _shadowed()
    assert open_scene(scene, level="toa").attrs["level"] == "toa"
    assert open_scene(scene, level="SR").attrs["level"] == "surface"
    with pytest.raises(ParameterError, match="level='boa2'.*'surface'.*'toa'"):
        check_level("boa2")


# --------------------------------------------------------------------------- data
def test_level_from_the_data():
    """Without metadata: the dark shadowed rock stays dark at surface reflectance and is
    lifted in the blue at top of atmosphere."""
    scene, _ = _shadowed()
    sr = open_scene(_bare(scene))
    assert sr.attrs["level"] == "surface" and sr.attrs["level_from"].startswith("data:")
    for haze in (0.3, 1.0):
        toa = open_scene(_bare(simulate_toa(scene, haze, seed=1)))
        assert toa.attrs["level"] == "toa", (haze, toa.attrs["level_from"])
        assert "path_reflectance" in toa.attrs
    # the rule needs the dark pixels: a scene whose darkest pixels are bright rock at top
    # of atmosphere cannot be told apart (it is then treated as surface reflectance)
    bright, _ = make_scene(60, 48)
    level, why = detect_level(simulate_toa(bright.isel(y=slice(30, 60), x=slice(30, 48)), 0.1))
    assert level == "surface" and "darkest pixels" in why


def test_dark_object_correction_recovers_surface_reflectance():
    scene, _ = _shadowed()
    toa = simulate_toa(scene, 0.6, seed=3)
    back = to_surface(toa, path_reflectance(toa))
    roles = [str(r) for r in scene.role.values]
    dark = (slice(-10, None), slice(-12, None))  # the shadowed rock, where haze matters
    for i, role in enumerate(roles):
        err = np.abs(back.values[i] - scene.values[i])
        before = np.abs(toa.values[i] - scene.values[i])
        # bright surfaces keep a few % of transmittance error; dark ones lose the haze
        assert np.median(err) < 0.03, role
        if role in ("blue", "green"):
            assert np.median(err[dark]) < 0.3 * np.median(before[dark]), role
    # the correction stays in the plausible range even where no pixel is dark
    bright, _ = make_scene(60, 48)
    p = path_reflectance(bright.isel(x=slice(30, 48)))
    assert all(ATMOSPHERE[r][0] <= v <= ATMOSPHERE[r][1] for r, v in p.items())
    assert toa.values.min() >= 0 and scene.attrs == _shadowed()[0].attrs  # inputs intact


# --------------------------------------------------------------------------- offsets
def _s2_export(path, scene, offset: int):
    """``scene`` as an Earth Engine style Sentinel-2 export: 13 uint16 bands named
    B01...B12/B8A, DN = 10000 reflectance + offset, no tag but the names."""
    roles = [str(r) for r in scene.role.values]
    by_role = dict(zip(roles, scene.values, strict=True))
    fill = {"B01": "blue", "B02": "blue", "B03": "green", "B04": "red", "B05": "red",
            "B06": "nir", "B07": "nir", "B08": "nir", "B8A": "nir", "B09": "nir",
            "B10": "swir1", "B11": "swir1", "B12": "swir2"}
    dn = np.stack([np.clip(np.rint(by_role[fill[b]] * 10_000) + offset, 1, 65535)
                   for b in S2_NAMES]).astype("uint16")
    profile = {"driver": "GTiff", "height": dn.shape[1], "width": dn.shape[2], "count": 13,
               "dtype": "uint16", "crs": scene.rio.crs, "transform": scene.rio.transform(),
               "nodata": 0}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(dn)
        for i, name in enumerate(S2_NAMES, start=1):
            dst.set_band_description(i, name)
    return path


def test_sentinel2_band_names_open_without_sensor(tmp_path):
    scene, _ = _shadowed()
    opened = open_scene(_s2_export(tmp_path / "export.tif", scene, 0))
    assert opened.attrs["sensor"] == "sentinel2" and opened.sizes["band"] == 13
    assert opened.sel(band="B8A").role.item() == "nir"
    np.testing.assert_allclose(opened.sel(band="B03").values, scene.values[1], atol=1e-4)


def test_an_untagged_top_of_atmosphere_export_is_judged_from_its_data(tmp_path):
    """An Earth Engine L1C export says nothing about its product: the sensor's default
    product (L2A, used for the DN scaling) must not count as a stated level."""
    scene, _ = _shadowed()
    toa = open_scene(_s2_export(tmp_path / "export_a.tif", simulate_toa(scene, 0.7, seed=2), 0))
    assert toa.attrs["product_assumed"] and toa.attrs["level"] == "toa", toa.attrs["level_from"]
    assert toa.attrs["level_from"].startswith("data:") and "path_reflectance" in toa.attrs
    # with its offset too (an L1C export of 2023): the offset first, then the level
    both = open_scene(_s2_export(tmp_path / "export_b.tif", simulate_toa(scene, 0.7, seed=2),
                                 1000))
    assert both.attrs["offset_check"].startswith("-0.1 removed") and both.attrs["level"] == "toa"
    # a stated product still wins over the data
    stated = open_scene(tmp_path / "export_a.tif", product="l2a")
    assert stated.attrs["level"] == "surface" and "product_assumed" not in stated.attrs


def test_unstated_baseline_offset_is_removed_with_a_warning(tmp_path, caplog):
    scene, _ = _shadowed()
    path = _s2_export(tmp_path / "export_2023.tif", scene, 1000)
    with caplog.at_level("WARNING"):
        opened = open_scene(path)
    assert "+1000 DN" in caplog.text and "baseline='04.00'" in caplog.text
    np.testing.assert_allclose(opened.sel(band="B03").values, scene.values[1], atol=1e-4)
    assert opened.attrs["processing_baseline"].startswith("04.00 (detected")
    # stated, it is applied without guessing; a stated older baseline is trusted
    stated = open_scene(path, baseline="04.00")
    np.testing.assert_allclose(stated.sel(band="B03").values, scene.values[1], atol=1e-4)
    old = open_scene(path, baseline="03.01")
    np.testing.assert_allclose(old.sel(band="B03").values, scene.values[1] + 0.1, atol=1e-4)
    # the same file without the offset is read as it is
    plain = open_scene(_s2_export(tmp_path / "export_2020.tif", scene, 0))
    assert plain.attrs["offset_check"] == "no offset in the data"


def test_an_offset_in_another_scene_is_refused_with_the_fix():
    scene, _ = _shadowed()
    bright = (scene + 0.1).assign_attrs(scene.attrs)
    with pytest.raises(ReflectanceRangeError, match=r"offset=-0.1 \(--offset -0.1\)"):
        open_scene(bright)
    present, reason = detect_offset(scene)
    assert not present and "limit 0.07" in reason


# --------------------------------------------------------------------------- prediction
def test_prediction_corrects_a_toa_scene_and_says_so(tmp_path):
    from glacierkit.unet import predict_scene, read_sidecar

    model = save_untrained_model(tmp_path)
    assert read_sidecar(model).get("level", "surface") == "surface"
    scene, _ = _shadowed()
    toa = open_scene(_bare(simulate_toa(scene, 0.8, seed=2)))
    kw = {"window": 32, "progress": False, "guard": False}
    corrected = predict_scene(model, toa, **kw)
    raw = predict_scene(model, toa, level_correction=False, **kw)
    surface = predict_scene(model, open_scene(scene, level="surface"), **kw)
    assert corrected.attrs["level"] == "toa"
    assert corrected.attrs["level_correction"].startswith("dark-object subtraction")
    assert raw.attrs["level_correction"].startswith("none")
    # the corrected map is much closer to the surface-reflectance map than the raw one
    d_corr = np.nanmean(np.abs(corrected.values - surface.values))
    d_raw = np.nanmean(np.abs(raw.values - surface.values))
    assert d_corr < 0.5 * d_raw


def test_written_files_record_the_level(tmp_path):
    from glacierkit.unet import predict_to_files

    model = save_untrained_model(tmp_path)
    scene, _ = _shadowed()
    toa = open_scene(_bare(simulate_toa(scene, 0.8, seed=2)))
    written = predict_to_files(model, toa, tmp_path / "out", window=32, progress=False,
                               guard=False)
    with rasterio.open(written.paths["probability"]) as src:
        tags = src.tags()
    assert tags["level"] == "toa" and tags["level_from"].startswith("data:")
    assert tags["level_correction"].startswith("dark-object subtraction")


def test_committed_model_sidecar_is_surface_reflectance():
    from glacierkit.unet import read_sidecar

    sidecar = read_sidecar(ROOT / "models" / "unet_alps_s2.keras")
    assert sidecar.get("level", "surface") == "surface"


def test_to_surface_keeps_lazy_scenes_lazy():
    scene, _ = _shadowed()
    lazy = simulate_toa(scene, 0.5).chunk({"band": 1, "y": 40, "x": -1})
    out = to_surface(lazy, {"blue": 0.08, "green": 0.05})
    assert out.chunks is not None
    assert isinstance(out, xr.DataArray) and out.attrs["level"] == "surface"
