"""open_scene, qa_masks and write_raster on synthetic files with planted values and on the mirror."""

import math

import numpy as np
import pytest
import rasterio
from affine import Affine

from conftest import assert_same_grid
from glacierkit import data
from glacierkit.exceptions import (
    AllNodataError,
    BandCountError,
    CorruptFileError,
    DataNotFoundError,
    GlacierKitError,
    MissingCRSError,
    NotGeoreferencedError,
    UnknownBandError,
    UnknownSensorError,
)
from glacierkit.io import open_scene, qa_masks, read_mtl, write_raster

TRANSFORM = Affine(30, 0, 500_000, 0, -30, 4_000_000)


def _write(path, arrays, crs="EPSG:32645", transform=TRANSFORM, nodata=None, descriptions=None,
           dtype=None):
    arrays = np.asarray(arrays)
    if arrays.ndim == 2:
        arrays = arrays[None]
    profile = {"driver": "GTiff", "height": arrays.shape[1], "width": arrays.shape[2],
               "count": arrays.shape[0], "dtype": dtype or arrays.dtype.name}
    if crs:
        profile.update(crs=crs, transform=transform)
    if nodata is not None:
        profile["nodata"] = nodata
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(arrays)
        for i, d in enumerate(descriptions or [], start=1):
            dst.set_band_description(i, d)
    return path


MTL_L2 = """GROUP = LANDSAT_METADATA_FILE
  GROUP = PRODUCT_CONTENTS
    LANDSAT_PRODUCT_ID = "LC08_L2SP_140041_20200101_20200202_02_T1"
    PROCESSING_LEVEL = "{level}"
{files}
  END_GROUP = PRODUCT_CONTENTS
  GROUP = IMAGE_ATTRIBUTES
    SPACECRAFT_ID = "LANDSAT_8"
    DATE_ACQUIRED = 2020-01-01
    SUN_ELEVATION = 30.0
  END_GROUP = IMAGE_ATTRIBUTES
  GROUP = PROJECTION_ATTRIBUTES
    MAP_PROJECTION = "UTM"
    UTM_ZONE = 45
    GRID_CELL_SIZE_REFLECTIVE = 30.00
    REFLECTIVE_LINES = 4
    REFLECTIVE_SAMPLES = 5
    CORNER_UL_PROJECTION_X_PRODUCT = 500015.000
    CORNER_UL_PROJECTION_Y_PRODUCT = 3999985.000
  END_GROUP = PROJECTION_ATTRIBUTES
  GROUP = LEVEL2_SURFACE_REFLECTANCE_PARAMETERS
{l2}
  END_GROUP = LEVEL2_SURFACE_REFLECTANCE_PARAMETERS
  GROUP = LEVEL1_RADIOMETRIC_RESCALING
{l1}
  END_GROUP = LEVEL1_RADIOMETRIC_RESCALING
END_GROUP = LANDSAT_METADATA_FILE
END
"""


def _landsat_product(folder, level="L2SP", georef=True):
    folder.mkdir()
    pid = "LC08_L2SP_140041_20200101_20200202_02_T1"
    files, l2, l1 = [], [], []
    for b in range(2, 8):
        dn = np.full((4, 5), 10000 + 1000 * b, dtype="uint16")
        dn[0, 0] = 0  # fill
        name = f"{pid}_SR_B{b}.TIF"
        _write(folder / name, dn, crs="EPSG:32645" if georef else None, nodata=0 if georef else None)
        files.append(f'    FILE_NAME_BAND_{b} = "{name}"')
        l2 += [f"    REFLECTANCE_MULT_BAND_{b} = 2.75e-05", f"    REFLECTANCE_ADD_BAND_{b} = -0.2"]
        l1 += [f"    REFLECTANCE_MULT_BAND_{b} = 2.0000E-05", f"    REFLECTANCE_ADD_BAND_{b} = -0.100000"]
    mtl = folder / f"{pid}_MTL.txt"
    mtl.write_text(MTL_L2.format(level=level, files="\n".join(files), l2="\n".join(l2),
                                 l1="\n".join(l1)))
    return folder, mtl


def test_landsat_l2sp_folder_scaling_roles_and_fill(tmp_path):
    folder, mtl = _landsat_product(tmp_path / "prod")
    for source in (folder, mtl):
        scene = open_scene(source)
        assert scene.dims == ("band", "y", "x") and scene.dtype == np.float32
        assert list(scene.band.values) == ["B2", "B3", "B4", "B5", "B6", "B7"]
        assert list(scene.role.values) == ["blue", "green", "red", "nir", "swir1", "swir2"]
        assert scene.attrs["sensor"] == "landsat8" and scene.attrs["date"] == "2020-01-01"
        assert scene.attrs["scene_id"].startswith("LC08_L2SP")
        # planted DN 10000 + 1000*b -> reflectance DN * 2.75e-5 - 0.2
        swir1 = scene.sel(band="B6").values
        assert swir1[1, 1] == pytest.approx(16000 * 2.75e-5 - 0.2, abs=1e-6)
        assert np.isnan(scene.values[:, 0, 0]).all()  # fill -> NaN
        assert scene.rio.crs.to_epsg() == 32645
    sel = open_scene(folder, bands=("swir1", "nir", "blue"))
    assert list(sel.band.values) == ["B6", "B5", "B2"]


def test_landsat_l1_uses_mtl_rescaling_with_sun_elevation(tmp_path):
    folder, _ = _landsat_product(tmp_path / "prod", level="L1TP")
    scene = open_scene(folder)
    assert scene.attrs["product"] == "l1"
    expected = (13000 * 2.0e-5 - 0.1) / math.sin(math.radians(30.0))
    assert scene.sel(band="B3").values[2, 3] == pytest.approx(expected, rel=1e-5)


def test_landsat_crop_without_georef_uses_mtl_corners(tmp_path):
    folder, _ = _landsat_product(tmp_path / "prod", georef=False)
    scene = open_scene(folder)
    assert scene.rio.crs.to_epsg() == 32645
    # MTL corners are pixel centres: UL corner = centre - half a pixel
    assert tuple(scene.rio.transform())[:6] == (30, 0, 500_000, 0, -30, 4_000_000)


def test_multiband_geotiff_with_descriptions(tmp_path):
    arr = np.stack([np.full((6, 7), v, "uint16") for v in (1000, 2000, 3000)])
    path = _write(tmp_path / "s.tif", arr, descriptions=["B3", "B6", "B5"])
    scene = open_scene(path, sensor="landsat8")
    assert list(scene.role.values) == ["green", "swir1", "nir"]
    assert scene.values[0, 0, 0] == pytest.approx(1000 * 2.75e-5 - 0.2, abs=1e-6)
    # float files are taken as reflectance already; role-named descriptions need no sensor
    fpath = _write(tmp_path / "f.tif", arr.astype("float32") / 1e4,
                   descriptions=["green", "swir1", "nir"])
    f = open_scene(fpath)
    assert list(f.role.values) == ["green", "swir1", "nir"] and f.attrs["sensor"] == "generic"
    assert f.values[1, 2, 2] == pytest.approx(0.2)


def test_multiband_without_descriptions_needs_band_names(tmp_path):
    arr = np.ones((3, 4, 4), "uint16")
    path = _write(tmp_path / "s.tif", arr)
    with pytest.raises(BandCountError, match="band_names"):
        open_scene(path, sensor="landsat8")
    with pytest.raises(BandCountError, match="3 bands but 2 band names"):
        open_scene(path, sensor="landsat8", band_names=["B3", "B6"])
    ok = open_scene(path, sensor="landsat8", band_names=["B3", "B6", "B5"])
    assert list(ok.role.values) == ["green", "swir1", "nir"]


def test_set_of_one_band_files_and_dict(tmp_path):
    files = [_write(tmp_path / f"T32TMS_20200701_B{b}.tif", np.full((5, 5), 100 * i + 500, "uint16"),
                    crs="EPSG:32632") for i, b in enumerate(["03", "11", "8A"])]
    scene = open_scene(files, sensor="sentinel2")
    assert list(scene.band.values) == ["B03", "B8A", "B11"]  # table order
    assert list(scene.role.values) == ["green", "nir", "swir1"]
    assert scene.sel(band="B11").values[0, 0] == pytest.approx(600 * 1e-4)
    named = open_scene({"B03": files[0], "B11": files[1]}, sensor="sentinel2")
    assert list(named.role.values) == ["green", "swir1"]
    with pytest.raises(UnknownSensorError, match="pass sensor="):
        open_scene([tmp_path / "T32TMS_20200701_B03.tif"])


def test_bands_of_different_shapes_are_refused(tmp_path):
    a = _write(tmp_path / "LC08_B3.tif", np.ones((5, 5), "uint16"))
    b = _write(tmp_path / "LC08_B6.tif", np.ones((6, 5), "uint16"))
    with pytest.raises(BandCountError, match="Resample"):
        open_scene([a, b])


def test_nodata_value_becomes_nan(tmp_path):
    arr = np.full((2, 4, 4), 5000, "uint16")
    arr[:, 1, 1] = 65535
    path = _write(tmp_path / "s.tif", arr, nodata=65535, descriptions=["B3", "B6"])
    scene = open_scene(path, sensor="landsat8")
    assert np.isnan(scene.values[:, 1, 1]).all() and np.isfinite(scene.values[:, 0, 0]).all()


def test_lazy_with_chunks(tmp_path):
    arr = np.random.default_rng(0).integers(1, 30000, (2, 64, 64)).astype("uint16")
    path = _write(tmp_path / "s.tif", arr, descriptions=["B3", "B6"])
    lazy = open_scene(path, sensor="landsat8", chunks={"y": 16, "x": 16})
    assert lazy.chunks is not None
    eager = open_scene(path, sensor="landsat8", chunks=False)
    assert eager.chunks is None
    np.testing.assert_array_equal(lazy.values, eager.values)


def test_error_missing_file(tmp_path):
    with pytest.raises(DataNotFoundError, match="not found"):
        open_scene(tmp_path / "nope.tif")
    with pytest.raises(DataNotFoundError, match="Sample scenes"):
        open_scene("alps-s2/nowhere")


def test_error_missing_crs(tmp_path):
    path = _write(tmp_path / "s.tif", np.ones((2, 4, 4), "uint16"), crs=None,
                  descriptions=["B3", "B6"])
    with pytest.raises(MissingCRSError, match="write_crs"):
        open_scene(path, sensor="landsat8")


def test_error_all_nodata(tmp_path):
    path = _write(tmp_path / "s.tif", np.zeros((2, 4, 4), "uint16"), descriptions=["B3", "B6"])
    with pytest.raises(AllNodataError, match="no valid pixel"):
        open_scene(path, sensor="landsat8")


def test_error_corrupt_and_truncated_files(tmp_path):
    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"this is not a tiff at all" * 10)
    with pytest.raises(CorruptFileError, match="corrupt"):
        open_scene(bad, sensor="landsat8")
    good = _write(tmp_path / "good.tif", np.arange(2 * 200 * 200, dtype="uint16").reshape(2, 200, 200),
                  descriptions=["B3", "B6"])
    truncated = tmp_path / "trunc.tif"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CorruptFileError):
        open_scene(truncated, sensor="landsat8")


def test_error_unknown_role(tmp_path):
    path = _write(tmp_path / "s.tif", np.ones((2, 4, 4), "uint16"), descriptions=["B3", "B6"])
    with pytest.raises(UnknownBandError, match="'nir'.*B5"):
        open_scene(path, sensor="landsat8", bands=("nir",))


def test_error_bare_jpeg2000(tmp_path, sample_data):
    src = data.fetch(next(k for k in data.registry() if k.endswith("Gorner/3.jp2")))
    copy = tmp_path / "3.jp2"
    copy.write_bytes(src.read_bytes())
    with pytest.raises(NotGeoreferencedError, match="no sample registry entry"):
        open_scene(copy, sensor="sentinel2")


def test_inputs_are_not_modified(tmp_path):
    folder, _ = _landsat_product(tmp_path / "prod")
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in folder.iterdir()}
    open_scene(folder).load()
    after = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in folder.iterdir()}
    assert before == after


# ---------------------------------------------------------------- real mirror files
ALPS = {"aletsch": ((419960, 5154020), (600, 500)), "fiescher": ((429960, 5156020), (500, 300)),
        "gorner": ((410360, 5094020), (150, 150)), "morteratsch": ((569980, 5140020), (150, 150)),
        "merdeglace": ((338560, 5087220), (270, 270))}


@pytest.mark.parametrize("name", list(ALPS))
def test_alps_crops_are_placed_from_the_registry(name, sample_data):
    scene = open_scene(f"alps-s2/{name}")
    (x0, y0), shape = ALPS[name]
    assert scene.sizes["band"] == 9 and (scene.sizes["y"], scene.sizes["x"]) == shape
    assert scene.rio.crs.to_epsg() == 32632
    assert tuple(scene.rio.transform())[:6] == (20, 0, x0, 0, -20, y0)
    assert list(scene.band.values) == ["B02", "B03", "B04", "B05", "B06", "B07", "B8A", "B11", "B12"]
    assert list(scene.role.values)[:3] == ["blue", "green", "red"]
    assert scene.sel(band="B8A").role.item() == "nir"
    # values are reflectance 0..~1.5 (DN * 1e-4, no -1000 offset before baseline 04.00)
    assert 0 <= float(scene.min()) and float(scene.max()) < 2


def test_alps_values_are_the_jp2_dns_times_1e4(sample_data):
    rel = next(k for k in data.registry() if k.endswith("Aletsch/11.jp2"))
    with rasterio.open(data.fetch(rel)) as src:
        dn = src.read(1)
    scene = open_scene("alps-s2/aletsch", bands=("swir1",))
    np.testing.assert_allclose(scene.values[0], dn * 1e-4, rtol=1e-6)


def test_real_l2sp_crop_with_mtl(sample_data):
    scene = open_scene("landsat8-l2sp")
    folder = data.fetch_product("landsat8-l2sp")
    mtl = read_mtl(next(folder.glob("*_MTL.txt")))
    assert mtl["LEVEL2_SURFACE_REFLECTANCE_PARAMETERS"]["REFLECTANCE_MULT_BAND_6"] == 2.75e-05
    assert list(scene.band.values) == ["B2", "B3", "B4", "B5", "B6", "B7"]
    assert scene.rio.crs.to_epsg() == 32623 and scene.shape == (6, 300, 400)
    assert scene.rio.transform().c == 583485.0 and scene.rio.transform().f == -2222685.0
    with rasterio.open(next(folder.glob("*_SR_B6.TIF"))) as src:
        dn = src.read(1).astype("float64")
    expected = np.where(dn == 0, np.nan, dn * 2.75e-5 - 0.2)
    np.testing.assert_allclose(scene.sel(band="B6").values, expected, rtol=1e-5, atol=1e-6)


def test_everest_landsat7_sample(sample_data):
    scene = open_scene("everest-l7")
    assert list(scene.role.values) == ["blue", "green", "red", "nir"]
    assert scene.attrs["sensor"] == "landsat7" and scene.rio.crs.to_epsg() == 32645
    assert scene.shape == (4, 655, 800)


def test_qa_pixel_decoding_on_the_real_file(sample_data):
    path = data.fetch_product("landsat8-qa")
    masks = qa_masks(path)
    assert set(masks.data_vars) == {"fill", "dilated_cloud", "cirrus", "cloud", "cloud_shadow",
                                    "snow", "clear", "water"}
    window = rasterio.windows.Window(3000, 3000, 256, 256)
    with rasterio.open(path) as src:
        raw = src.read(1, window=window)
        corner = src.read(1, window=rasterio.windows.Window(0, 0, 1, 1))[0, 0]
    sub = masks.isel(y=slice(3000, 3256), x=slice(3000, 3256))
    for name, bit in (("fill", 0), ("cloud", 3), ("snow", 5), ("clear", 6), ("water", 7)):
        np.testing.assert_array_equal(sub[name].values, (raw >> bit) & 1 == 1)
    # the scene corner is outside the Landsat footprint: fill (QA value 1)
    assert corner == 1 and bool(masks["fill"].values[0, 0])
    # clear and cloud are exclusive; the Everest scene has snow
    assert not (masks["clear"] & masks["cloud"]).any()
    assert int(masks["snow"].sum()) > 0
    assert masks.rio.crs.to_epsg() == 32645


def test_qa_masks_on_planted_bits():
    import xarray as xr

    values = np.array([[1, 1 << 3, 1 << 5], [1 << 6, 1 << 7, (1 << 3) | (1 << 4)]], "uint16")
    qa = xr.DataArray(values, dims=("y", "x")).rio.write_crs("EPSG:32645")
    m = qa_masks(qa)
    assert m["fill"].values.tolist() == [[True, False, False], [False, False, False]]
    assert m["cloud"].values.tolist() == [[False, True, False], [False, False, True]]
    assert m["cloud_shadow"].values.tolist() == [[False, False, False], [False, False, True]]
    assert m["water"].values[1, 1] and m["snow"].values[0, 2] and m["clear"].values[1, 0]
    with pytest.raises(GlacierKitError, match="integers"):
        qa_masks(qa.astype("float32"))


# ---------------------------------------------------------------- writing
def test_write_raster_cog_roundtrip(tmp_path, synthetic_scene):
    scene, _ = synthetic_scene
    scene = scene.copy()
    scene[:, 0, 0] = np.nan
    out = write_raster(scene, tmp_path / "out" / "scene.tif", tags={"sensor": "landsat8"})
    with rasterio.open(out) as src:
        assert src.crs.to_epsg() == 32632 and src.count == 6
        assert src.descriptions == tuple(scene.band.values)
        assert src.profile.get("tiled") or src.block_shapes[0][0] < src.height
        assert src.tags()["sensor"] == "landsat8"
    back = open_scene(out)
    assert list(back.role.values) == list(scene.role.values)
    assert_same_grid(back, scene)
    np.testing.assert_allclose(back.values, scene.values, equal_nan=True)
    assert not [p for p in out.parent.iterdir() if p.name != "scene.tif"]  # no temp files left
    assert out.stat().st_mode & 0o044  # readable by others, not mkstemp's 0600


def test_write_raster_has_overviews(tmp_path):
    from conftest import make_scene

    big, _ = make_scene(height=1100, width=1000)
    out = write_raster(big.isel(band=[0]), tmp_path / "big.tif")
    with rasterio.open(out) as src:
        assert len(src.overviews(1)) >= 1
    # as the README says: overviews only when larger than 512 px (one COG block)
    small, _ = make_scene(height=300, width=400)
    with rasterio.open(write_raster(small.isel(band=[0]), tmp_path / "small.tif")) as src:
        assert src.overviews(1) == []


def test_write_raster_is_atomic_on_failure(tmp_path, synthetic_scene, monkeypatch):
    scene, _ = synthetic_scene
    target = tmp_path / "scene.tif"
    write_raster(scene, target)
    before = target.read_bytes()

    import rasterio.shutil

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(rasterio.shutil, "copy", boom)
    with pytest.raises(RuntimeError):
        write_raster(scene * 2, target)
    assert target.read_bytes() == before  # the old file is intact
    assert [p.name for p in tmp_path.iterdir()] == ["scene.tif"]


def test_write_raster_refuses_missing_crs(tmp_path, synthetic_scene):
    scene, _ = synthetic_scene
    import xarray as xr

    bare = xr.DataArray(scene.values, dims=scene.dims)
    with pytest.raises(MissingCRSError):
        write_raster(bare, tmp_path / "x.tif")


# --------------------------------------------------------------------------- tar products
def test_landsat_product_tar_opens_in_place(sample_data, tmp_path):
    """The product as EarthExplorer delivers it, .tar.gz or .tar, opens like its folder,
    lazily too, and nothing is unpacked next to it."""
    import tarfile

    from glacierkit import slug
    from glacierkit.io import is_archive

    folder_scene = open_scene("landsat8-l2sp")
    archive = data.fetch_product("landsat8-l2sp", unpack=False)
    assert archive.name.endswith(".tar.gz") and is_archive(archive)
    plain = tmp_path / "LC08_L2SP_218074_20190114_20200829_02_T1.tar"
    with tarfile.open(archive) as src, tarfile.open(plain, "w") as dst:  # EarthExplorer: .tar
        for member in src.getmembers():
            dst.addfile(member, src.extractfile(member))
    before = sorted(p.name for p in tmp_path.iterdir())
    for source in (archive, plain, str(plain)):
        scene = open_scene(source)
        np.testing.assert_array_equal(scene.values, folder_scene.values)
        assert scene.rio.crs == folder_scene.rio.crs
        assert scene.rio.transform() == folder_scene.rio.transform()
        assert scene.attrs["scene_id"] == folder_scene.attrs["scene_id"]
    lazy = open_scene(plain, chunks={"band": 1, "y": 100, "x": -1})
    assert lazy.chunks is not None
    np.testing.assert_array_equal(lazy.values, folder_scene.values)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing unpacked
    assert slug(str(plain)) == "LC08_L2SP_218074_20190114_20200829_02_T1"


def test_tar_without_mtl_or_truncated_is_one_clear_error(tmp_path):
    import tarfile

    from glacierkit.exceptions import GlacierKitError

    notes = tmp_path / "notes.txt"
    notes.write_text("not a product")
    no_mtl = tmp_path / "other.tar"
    with tarfile.open(no_mtl, "w") as tar:
        tar.add(notes, arcname="notes.txt")
    with pytest.raises(DataNotFoundError, match="holds no _MTL.txt"):
        open_scene(no_mtl)
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(b"\x1f\x8b\x08\x00" + b"\x00" * 40)
    with pytest.raises(GlacierKitError, match="damaged or truncated"):
        open_scene(cut)


def test_notebook_01_and_a_batch_scene_take_the_tar(sample_data, tmp_path):
    """The pipeline's two ways into a scene: preparing it (notebook 01) and a batch task."""
    from conftest import save_untrained_model
    from glacierkit.pipeline import process_scene
    from glacierkit.prep import load_prepared, prepare_scenes

    archive = str(data.fetch_product("landsat8-l2sp", unpack=False))
    table = prepare_scenes([archive], tmp_path / "prep")
    assert table["scene"].tolist() == [archive]
    scene, _ = load_prepared(tmp_path / "prep", archive)
    assert scene.shape == (6, 300, 400) and scene.rio.crs.to_epsg() == 32623
    model = save_untrained_model(tmp_path / "model")
    record = process_scene(archive, model, tmp_path / "run", outlines=False)
    assert record["shape"] == [300, 400] and record["crs"] == "EPSG:32623"
    assert (tmp_path / "run" / "scenes" / "LC08_L2SP_218074_20190114_20200829_02_T1-cropped"
            / "mask.tif").is_file()
