"""Spectral indices: formulas on planted values, NaN safety, grid/CRS/attrs kept, dask."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from conftest import assert_same_grid, make_scene
from glacierkit import indices
from glacierkit.exceptions import UnknownBandError

ROLES = ("blue", "green", "red", "nir", "swir1", "swir2")


def planted(values: dict[str, list[float]]):
    """A 1 x n scene whose bands hold the given values (other roles 0.1)."""
    scene, _ = make_scene(height=1, width=len(next(iter(values.values()))))
    data = np.full(scene.shape, 0.1, dtype="float32")
    for role, vals in values.items():
        data[ROLES.index(role), 0, :] = vals
    return scene.copy(data=data)


def test_ndsi_formula_on_planted_values():
    scene = planted({"green": [0.8, 0.2, 0.5], "swir1": [0.2, 0.8, 0.5]})
    out = indices.ndsi(scene)
    np.testing.assert_allclose(out.values[0], [0.6, -0.6, 0.0], atol=1e-7)
    assert out.dtype == np.float32 and out.dims == ("y", "x") and out.name == "ndsi"


def test_ndwi_and_red_swir_ratio_on_planted_values():
    scene = planted({"green": [0.6, 0.3], "nir": [0.2, 0.3], "red": [0.9, 0.2],
                     "swir1": [0.3, 0.1]})
    np.testing.assert_allclose(indices.ndwi(scene).values[0], [0.5, 0.0], atol=1e-7)
    np.testing.assert_allclose(indices.red_swir_ratio(scene).values[0], [3.0, 2.0], rtol=1e-6)
    np.testing.assert_allclose(indices.band_ratio(scene, "nir", "green").values[0],
                               [1 / 3, 1.0], rtol=1e-6)


def test_zero_denominators_and_nan_inputs_give_nan_without_warnings():
    scene = planted({"green": [0.0, np.nan, 0.3, -0.2], "swir1": [0.0, 0.2, np.nan, 0.2],
                     "red": [0.1, 0.1, 0.1, 0.1]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ndsi = indices.ndsi(scene).values[0]
        ratio = indices.red_swir_ratio(scene).values[0]
    assert np.isnan(ndsi).tolist() == [True, True, True, True]  # 0/0, NaN, NaN, x/0
    assert np.isnan(ratio).tolist() == [True, False, True, False]


def test_grid_crs_and_attrs_are_kept(synthetic_scene):
    scene, _ = synthetic_scene
    for func in (indices.ndsi, indices.ndwi, indices.red_swir_ratio):
        out = func(scene)
        assert_same_grid(out, scene)
        assert out.attrs["sensor"] == scene.attrs["sensor"]
        assert out.attrs["scene_id"] == "synthetic"
        assert "formula" in out.attrs and out.attrs["long_name"]
        assert "band" not in out.coords and "role" not in out.coords
    assert scene.sizes["band"] == 6  # the input is not modified


def test_planted_glacier_lake_and_rock(synthetic_scene):
    scene, glacier = synthetic_scene
    ndsi = indices.ndsi(scene).values
    ndwi = indices.ndwi(scene).values
    lake = ndwi > 0.3
    assert lake.sum() == 36 and not (lake & glacier).any()
    assert (ndsi[glacier] > 0.7).all() and (ndsi[~glacier & ~lake] < 0).all()
    assert (ndsi[lake] > 0.4).all()  # water looks like snow to NDSI
    assert np.median(indices.red_swir_ratio(scene).values[glacier]) > 2.0


@pytest.mark.parametrize("sensor", ["landsat8", "landsat7", "sentinel2"])
def test_indices_follow_roles_on_every_sensor(sensor):
    scene, glacier = make_scene(sensor=sensor)
    ndsi = indices.ndsi(scene).values
    assert ndsi[glacier].mean() > 0.7 and ndsi[~glacier].mean() < 0.0


def test_dask_stays_lazy_and_equals_numpy(synthetic_scene):
    scene, _ = synthetic_scene
    lazy = scene.chunk({"band": 1, "y": 16, "x": 16})
    for func in (indices.ndsi, indices.ndwi, indices.red_swir_ratio):
        out = func(lazy)
        assert out.chunks is not None
        np.testing.assert_array_equal(out.compute().values, func(scene).values)


def test_missing_band_names_valid_roles():
    scene, _ = make_scene()
    with pytest.raises(UnknownBandError, match="swir1"):
        indices.ndsi(scene.isel(band=[0, 1, 2, 3]))
    with pytest.raises(UnknownBandError, match="Valid roles"):
        indices.band_ratio(scene, "red", "thermal")


def test_ndsi_on_real_aletsch_matches_the_definition(sample_data):
    from glacierkit.io import open_scene

    scene = open_scene("alps-s2/aletsch")
    out = indices.ndsi(scene)
    g = scene.sel(band="B03").values.astype("float64")
    s = scene.sel(band="B11").values.astype("float64")
    with np.errstate(divide="ignore", invalid="ignore"):
        ref = (g - s) / (g + s)
    np.testing.assert_allclose(out.values, ref, atol=2e-7)
    finite = out.values[np.isfinite(out.values)]
    assert finite.min() >= -1 and finite.max() <= 1


def test_compiled_normalized_difference_is_bit_identical_to_the_expression():
    import xarray as xr

    from glacierkit import _kernels

    rng = np.random.default_rng(0)
    a = xr.DataArray(rng.uniform(-0.2, 1, (211, 190)).astype("float32"), dims=("y", "x"))
    b = xr.DataArray(rng.uniform(-0.2, 1, (211, 190)).astype("float32"), dims=("y", "x"))
    a[0, :10] = b[0, :10] = 0  # 0 / 0
    a[1, :10] = np.nan
    b[2, :10] = -a[2, :10]  # x / 0
    a[3, :3] = np.inf
    den = a + b
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        expected = ((a - b) / den.where(den != 0)).clip(-1, 1).values
        got = indices.normalized_difference(a, b)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got.values, expected)  # NaN positions included
    # small arrays take the NumPy expression, large ones the compiled kernel: the same bits
    assert a.size < indices.COMPILED_FROM_PIXELS
    np.testing.assert_array_equal(_kernels.nd_values(a.values, b.values), expected)
    big = rng.uniform(0, 1, 3_000_000).astype("float32")  # the threaded path
    np.testing.assert_array_equal(_kernels.nd_values(big, big[::-1]),
                                  ((big - big[::-1]) / (big + big[::-1])).astype("float32"))
    assert np.nanmax(np.abs(expected)) == 1  # a negative band puts the ratio outside: clipped
    lazy = indices.normalized_difference(a.chunk(50), b.chunk(70))
    assert lazy.chunks is not None
    np.testing.assert_array_equal(lazy.values, expected)


def test_negative_reflectance_is_clipped_by_one_rule_everywhere():
    """Index values never leave [-1, 1]; the index, the fused sweep and the U-Net's input
    channel apply the same clip (README and glacierkit.indices: negative reflectance)."""
    import xarray as xr

    from glacierkit.ndsi import threshold as th
    from glacierkit.unet.features import EXTRA_CHANNELS

    scene, _ = make_scene(height=4, width=5)
    green = np.array([0.3, 0.01, -0.02, -0.01, 0.3], dtype="float32")
    swir1 = np.array([-0.01, -0.02, 0.01, -0.02, 0.1], dtype="float32")
    expected = np.array([1, -1, 1, -1 / 3, 0.5], dtype="float32")  # clip(3/0.29 ...), -1/3 as is
    data = scene.values.copy()
    roles = list(scene["role"].values)
    data[roles.index("green"), 0, :] = green
    data[roles.index("swir1"), 0, :] = swir1
    scene = scene.copy(data=data)
    out = indices.ndsi(scene)
    np.testing.assert_allclose(out.values[0], expected, rtol=1e-6)
    finite = out.values[np.isfinite(out.values)]
    assert finite.min() >= -1 and finite.max() <= 1
    np.testing.assert_array_equal(EXTRA_CHANNELS["ndsi"](scene).values, out.values)
    labels = xr.zeros_like(out, dtype="float32")
    grid = th.fine_grid(0, 0.7, 0.1)
    table = th.sweep(out, labels, grid)
    fused = th.sweep_scene(scene, labels, grid)  # the index computed inside the counting pass
    np.testing.assert_array_equal(fused[["TP", "FP", "FN", "TN"]].values,
                                  table[["TP", "FP", "FN", "TN"]].values)
    assert indices.positive_bands(scene, "green", "swir1").values[0].tolist() == [
        False, False, False, False, True]


def test_landsat_sample_ndsi_stays_in_range(sample_data):
    from glacierkit.io import open_scene

    scene = open_scene("landsat8-l2sp")
    out = indices.ndsi(scene).values
    negative = (indices.positive_bands(scene, "green", "swir1").values == 0) & np.isfinite(out)
    assert negative.sum() == 436  # the pixels the issue found at -1,470 ... 51
    assert np.nanmin(out) == -1 and np.nanmax(out) == 1
