"""Clouds and their shadows are nodata: Landsat QA_PIXEL (the real file of the sample data)
and Sentinel-2 SCL (synthetic, every class planted)."""

import shutil
import warnings

import numpy as np
import pytest
import rasterio
import xarray as xr
from affine import Affine

from conftest import make_scene
from glacierkit.exceptions import ObscuredWarning, ParameterError
from glacierkit.io import mask_clouds, obscured, obscured_glacier_fraction, open_scene, scl_masks

#: A window of the real QA_PIXEL file with clouds, shadows and cirrus (see stac_local.py).
WINDOW = rasterio.windows.Window(1505, 1845, 96, 80)


def _obscured_bits(raw: np.ndarray) -> np.ndarray:
    """The test's own decoding: dilated cloud, cirrus, cloud, cloud shadow (bits 1-4)."""
    return ((raw >> 1) & 0b1111) > 0


def _scene_on(transform, shape, crs):
    scene, _ = make_scene(*shape, crs=crs, res=transform.a, x0=transform.c, y0=transform.f)
    return scene


def test_real_qa_pixel_makes_every_obscured_pixel_nodata(sample_data):
    """The full-scene QA_PIXEL file is cut to the scene and decoded: NaN in every band
    exactly where its bits say cloud, dilated cloud, cirrus or cloud shadow."""
    path = sample_data.fetch_product("landsat8-qa")
    with rasterio.open(path) as src:
        raw = src.read(1, window=WINDOW)
        transform, crs = src.window_transform(WINDOW), src.crs.to_string()
    expected = _obscured_bits(raw)
    assert 0.1 < expected.mean() < 0.9  # a window with clouds and clear ground
    scene = _scene_on(transform, raw.shape, crs)
    before = scene.values.copy()
    masked = open_scene(scene, clouds=path)
    np.testing.assert_array_equal(np.isnan(masked.values).all(axis=0), expected)
    assert not np.isnan(masked.values[:, ~expected]).any()
    np.testing.assert_array_equal(scene.values, before)  # the input is not modified
    assert masked.attrs["cloud_mask"].startswith("Landsat QA_PIXEL")
    assert masked.attrs["obscured_fraction"] == pytest.approx(expected.mean(), abs=1e-4)
    assert masked.attrs["cloud_layer"] == str(path)


def test_qa_pixel_in_a_landsat_product_folder_is_used_by_default(sample_data, tmp_path):
    """A Landsat product folder with its QA_PIXEL file: clouds are nodata without asking;
    clouds=False keeps them."""
    folder = tmp_path / "product"
    shutil.copytree(sample_data.fetch_product("landsat8-l2sp"), folder)
    mtl = next(folder.glob("*_MTL.txt"))
    band = next(folder.glob("*_SR_B2.TIF"))
    with rasterio.open(band) as src:
        profile, shape = src.profile, (src.height, src.width)
    with rasterio.open(sample_data.fetch_product("landsat8-qa")) as src:
        qa = src.read(1, window=rasterio.windows.Window(1505, 1845, shape[1], shape[0]))
    profile.update(dtype="uint16", nodata=None, count=1)
    qa_path = folder / mtl.name.replace("_MTL.txt", "_QA_PIXEL.TIF")
    with rasterio.open(qa_path, "w", **profile) as dst:
        dst.write(qa, 1)
    clear = open_scene(folder, clouds=False)
    masked = open_scene(folder)
    hidden = _obscured_bits(qa)
    assert np.isnan(masked.values[:, hidden]).all()
    np.testing.assert_array_equal(np.isnan(masked.values[:, ~hidden]),
                                  np.isnan(clear.values[:, ~hidden]))
    assert not np.isnan(clear.values[:, hidden]).all()
    assert "cloud_mask" not in clear.attrs and masked.attrs["cloud_layer"] == str(qa_path)


def _scl_layer(scene, res: float = 60.0) -> xr.DataArray:
    """Every SCL class, each on a row of 60 m pixels, over the scene's area."""
    t = scene.rio.transform()
    ny, nx = (scene.sizes["y"] + 1) // 2, (scene.sizes["x"] + 1) // 2
    values = (np.arange(ny)[:, None] % 12 + np.zeros(nx, int)).astype("uint8")
    da = xr.DataArray(values, dims=("y", "x"), name="SCL",
                      coords={"y": t.f - res * (np.arange(ny) + 0.5),
                              "x": t.c + res * (np.arange(nx) + 0.5)})
    return da.rio.write_crs(scene.rio.crs).rio.write_transform(Affine(res, 0, t.c, 0, -res, t.f))


def test_synthetic_scl_masks_cloud_shadow_and_cirrus_but_not_snow():
    scene, _ = make_scene(48, 40, sensor="sentinel2")
    scl = _scl_layer(scene)
    masks = scl_masks(scl)
    assert bool(masks["snow"].values[11, 0]) and bool(masks["cloud_high_probability"][9, 0])
    hit, has_data = obscured(scl)
    rows = np.arange(scl.sizes["y"]) % 12
    np.testing.assert_array_equal(hit.values[:, 0], np.isin(rows, [3, 8, 9, 10]))
    np.testing.assert_array_equal(has_data.values[:, 0], rows != 0)
    masked = mask_clouds(scene, scl)  # 60 m classes on the 30 m scene, nearest neighbour
    fine_rows = (np.arange(scene.sizes["y"]) // 2) % 12
    expected = np.isin(fine_rows, [3, 8, 9, 10])[:, None] & np.ones(scene.sizes["x"], bool)
    np.testing.assert_array_equal(np.isnan(masked.values).all(axis=0), expected)
    assert masked.attrs["cloud_mask"].startswith("Sentinel-2 SCL")
    snow = fine_rows == 11
    assert np.isfinite(masked.values[:, snow]).all()


def test_obscured_share_of_the_glacier_area_and_one_line_warning():
    """The planted glacier is the left half; a cloud over a quarter of it, then over most."""
    scene, glacier = make_scene(40, 40)
    labels = xr.DataArray(glacier.astype("uint8"), dims=("y", "x"))
    qa = np.full(glacier.shape, 1 << 6, dtype="uint16")  # clear
    qa[:10, :20] = 1 << 3  # cloud over a quarter of the glacier
    layer = xr.DataArray(qa, dims=("y", "x"), name="QA_PIXEL")
    with warnings.catch_warnings():
        warnings.simplefilter("error", ObscuredWarning)  # 25 % > 20 %: must warn
        with pytest.raises(ObscuredWarning) as info:
            mask_clouds(scene, layer, outlines=labels)
    message = str(info.value)
    assert "\n" not in message and "25%" in message and "glacier area" in message
    with warnings.catch_warnings():
        warnings.simplefilter("error", ObscuredWarning)
        masked = mask_clouds(scene, layer, outlines=labels, limit=0.3)
    assert masked.attrs["obscured_glacier_fraction"] == 0.25
    assert masked.attrs["obscured_fraction"] == pytest.approx(200 / 1600)
    assert obscured_glacier_fraction(masked, labels) == pytest.approx(0.25)


def test_unknown_cloud_layers_are_refused_with_the_fix():
    scene, _ = make_scene(16, 16)
    layer = xr.DataArray(np.zeros((16, 16), "uint16"), dims=("y", "x"), name="mask")
    with pytest.raises(ParameterError, match="kind='qa_pixel' or kind='scl'"):
        mask_clouds(scene, layer)
    with pytest.raises(ParameterError, match="integer"):
        mask_clouds(scene, layer.astype("float32"), kind="scl")
