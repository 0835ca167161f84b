import numpy as np
import pytest

from glacierkit.bands import (
    PAPER_BANDS,
    composite,
    get_sensor,
    normalize_band_name,
    select_bands,
    sensor_ids,
)
from glacierkit.exceptions import UnknownBandError, UnknownSensorError


def test_sensor_tables_have_the_paper_roles():
    assert set(sensor_ids()) >= {"landsat8", "landsat9", "landsat7", "sentinel2"}
    expected = {
        "landsat8": ("B6", "B5", "B2"),
        "landsat9": ("B6", "B5", "B2"),
        "landsat7": ("B5", "B4", "B1"),
        "sentinel2": ("B11", "B8A", "B02"),
    }
    for sid, bands in expected.items():
        s = get_sensor(sid)
        assert tuple(s.band_for_role(r) for r in PAPER_BANDS) == bands
        assert s.band_for_role("green") in ("B3", "B2", "B03")
        # wavelengths are ordered sensibly: green < nir < swir1 < swir2
        w = [s.wavelength(s.band_for_role(r)) for r in ("green", "nir", "swir1", "swir2")]
        assert w == sorted(w)


def test_sentinel2_nir_falls_back_to_b08():
    s2 = get_sensor("sentinel2")
    assert s2.band_for_role("nir", available=["B02", "B03", "B8A", "B08"]) == "B8A"
    assert s2.band_for_role("nir", available=["B02", "B03", "B08"]) == "B08"
    assert s2.roles_of(["B02", "B08", "B8A"]) == ["blue", "", "nir"]
    assert s2.roles_of(["B02", "B08"]) == ["blue", "nir"]


def test_scaling_tables():
    assert get_sensor("landsat8").scaling("l2sp") == {"scale": 2.75e-5, "offset": -0.2,
                                                      "nodata": 0}
    s2 = get_sensor("sentinel2")
    assert s2.scaling("l2a", baseline="03.01")["offset"] == 0.0
    assert s2.scaling("l2a", baseline="04.00")["offset"] == pytest.approx(-0.1)
    assert s2.scaling("l2a", baseline="05.09")["offset"] == pytest.approx(-0.1)


def test_aliases_and_unknown_sensor_message():
    assert get_sensor("LC08").id == "landsat8"
    assert get_sensor("S2").id == "sentinel2"
    with pytest.raises(UnknownSensorError, match=r"'modis'.*Valid sensors: \['landsat5', 'landsat7'"):
        get_sensor("modis")


@pytest.mark.parametrize("text,valid,expected", [
    ("3", ["B1", "B3"], "B3"), ("SR_B6", ["B6"], "B6"), ("B03", ["B3"], "B3"),
    ("B3", ["B03"], "B03"), ("b8a", ["B08", "B8A"], "B8A"), ("B8", ["B08", "B8A"], "B08"),
    ("nope", ["B1"], None),
])
def test_normalize_band_name(text, valid, expected):
    assert normalize_band_name(text, valid) == expected


def test_unknown_role_names_valid_ones():
    with pytest.raises(UnknownBandError, match="Valid roles"):
        get_sensor("landsat8").band_for_role("thermal")


def test_select_bands_by_role_and_name(synthetic_scene):
    scene, _ = synthetic_scene
    out = select_bands(scene, ("swir1", "nir", "blue"))
    assert list(out.role.values) == ["swir1", "nir", "blue"]
    assert list(out.band.values) == ["B6", "B5", "B2"]
    assert list(select_bands(scene, ("B3",)).role.values) == ["green"]
    with pytest.raises(UnknownBandError, match="coastal.*not in this scene"):
        select_bands(scene, ("coastal",))


def test_composite_stretch_and_nan(synthetic_scene):
    scene, _ = synthetic_scene
    scene = scene.copy()
    scene[0, 0, 0] = np.nan
    rgb = composite(scene, stretch=(2, 98))
    assert rgb.dims == ("y", "x", "rgb")
    assert list(rgb.rgb.values) == list(PAPER_BANDS)
    assert np.isnan(rgb.values[0, 0]).all()
    finite = rgb.values[np.isfinite(rgb.values)]
    assert finite.min() >= 0 and finite.max() <= 1
    assert rgb.rio.crs == scene.rio.crs
