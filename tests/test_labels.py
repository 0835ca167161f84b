import geopandas as gpd
import numpy as np
import pytest
from shapely.geometry import box

from conftest import assert_same_grid
from glacierkit.exceptions import GlacierKitError, MissingCRSError, NoOverlapError
from glacierkit.io import open_scene
from glacierkit.labels import align_raster, rasterize_outlines


def _outline_in_wgs84(scene, x0, y0, x1, y1, rgi_id="RGI60-15.00001"):
    """A rectangle given in the scene's metres, handed over in EPSG:4326."""
    gdf = gpd.GeoDataFrame({"RGIId": [rgi_id]}, geometry=[box(x0, y0, x1, y1)], crs=scene.rio.crs)
    return gdf.to_crs("EPSG:4326")


def test_reprojected_outline_burns_the_planted_pixels(synthetic_scene):
    scene, _ = synthetic_scene  # 30 m pixels from (400000, 5100000), 48 x 64
    # pixel-centre rule: a box from x=400000+30*10 to +30*20 covers columns 10..19 exactly
    x0, x1 = 400_000 + 300, 400_000 + 600
    y1, y0 = 5_100_000 - 300, 5_100_000 - 900
    gdf = _outline_in_wgs84(scene, x0 + 1, y0 + 1, x1 - 1, y1 - 1)
    mask = rasterize_outlines(gdf, like=scene)
    assert mask.dtype == np.uint8 and mask.dims == ("y", "x")
    assert_same_grid(mask, scene)
    expected = np.zeros((64, 48), np.uint8)
    expected[10:30, 10:20] = 1
    np.testing.assert_array_equal(mask.values, expected)
    # shifted by 2/3 of a pixel: centres give 10 columns, all_touched 11
    shifted = _outline_in_wgs84(scene, x0 + 20, y0 + 1, x1 + 20, y1 - 1)
    centre = rasterize_outlines(shifted, like=scene)
    touched = rasterize_outlines(shifted, like=scene, all_touched=True)
    assert centre.values.sum(axis=1).max() == 10
    assert touched.values.sum(axis=1).max() == 11


def test_subset_by_id(synthetic_scene):
    scene, _ = synthetic_scene
    a = _outline_in_wgs84(scene, 400_000, 5_099_000, 400_300, 5_099_900, "A")
    b = _outline_in_wgs84(scene, 401_000, 5_099_000, 401_300, 5_099_900, "B")
    both = gpd.GeoDataFrame(gpd.pd.concat([a, b]), crs=a.crs)
    only_b = rasterize_outlines(both, like=scene, ids=["B"])
    assert only_b.values[:, :20].sum() == 0 and only_b.values.sum() > 0
    with pytest.raises(GlacierKitError, match="not in the outlines"):
        rasterize_outlines(both, like=scene, ids=["C"])


def test_non_overlapping_outlines_are_an_error(synthetic_scene):
    scene, _ = synthetic_scene
    far = _outline_in_wgs84(scene, 600_000, 4_000_000, 601_000, 4_001_000)
    with pytest.raises(NoOverlapError, match="overlaps the scene"):
        rasterize_outlines(far, like=scene)


def test_outlines_without_crs(synthetic_scene):
    scene, _ = synthetic_scene
    gdf = gpd.GeoDataFrame(geometry=[box(0, 0, 1, 1)])
    with pytest.raises(MissingCRSError, match="set_crs"):
        rasterize_outlines(gdf, like=scene)


def test_outlines_from_file(tmp_path, synthetic_scene):
    scene, _ = synthetic_scene
    gdf = _outline_in_wgs84(scene, 400_000, 5_099_000, 400_300, 5_099_900)
    path = tmp_path / "outlines.gpkg"
    gdf.to_file(path)
    assert rasterize_outlines(path, like=scene).values.sum() > 0


def test_raster_labels_are_aligned_nearest(synthetic_scene):
    scene, _ = synthetic_scene
    coarse = scene.isel(band=0).drop_vars(["band", "role"]).coarsen(x=2, y=2).mean()
    coarse = coarse.rio.write_crs(scene.rio.crs)
    coarse = coarse.rio.write_transform(coarse.rio.transform(recalc=True))
    lab = (coarse > 0.5).astype("uint8").rio.write_crs(scene.rio.crs)
    aligned = align_raster(lab, like=scene)
    assert_same_grid(aligned, scene)
    # nearest neighbour: each coarse pixel becomes a 2 x 2 block, values stay 0/1
    np.testing.assert_array_equal(aligned.values, np.repeat(np.repeat(lab.values, 2, 0), 2, 1))


@pytest.mark.parametrize("name,centre,touched", [
    ("aletsch", 0.6352, 0.6617), ("fiescher", 0.5725, 0.5995),
    ("gorner", 0.9387, 0.9483), ("morteratsch", 0.5584, 0.5882),
])
def test_alps_glacier_fractions_match_the_data_readme(name, centre, touched, sample_data):
    scene = open_scene(f"alps-s2/{name}")
    assert float(rasterize_outlines("alps-s2", like=scene).mean()) == pytest.approx(centre, abs=5e-5)
    assert float(rasterize_outlines("alps-s2", like=scene, all_touched=True).mean()) == \
        pytest.approx(touched, abs=5e-5)


def test_lazy_rasterization_equals_the_eager_one(sample_data):
    scene = open_scene("alps-s2/aletsch", chunks={"y": 128, "x": 96})
    lazy = rasterize_outlines("alps-s2", like=scene)
    assert lazy.chunks is not None
    eager = rasterize_outlines("alps-s2", like=scene.compute())
    assert eager.chunks is None
    np.testing.assert_array_equal(lazy.values, eager.values)
    touched = rasterize_outlines("alps-s2", like=scene, all_touched=True, chunks=100)
    np.testing.assert_array_equal(
        touched.values, rasterize_outlines("alps-s2", like=scene.compute(), all_touched=True).values)
