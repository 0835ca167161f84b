"""QGIS styles written beside the prediction rasters."""

import xml.etree.ElementTree as ET

import numpy as np
import pytest
import rasterio

from conftest import make_scene


@pytest.fixture
def probability():
    scene, glacier = make_scene(height=40, width=30)
    prob = scene.isel(band=0, drop=True).copy(data=np.where(glacier, 0.9, 0.1).astype("float32"))
    prob[:3] = np.nan
    return prob.assign_coords(confidence=(("y", "x"), np.full(prob.shape, 0.75, "float32")))


def _renderer(path):
    root = ET.parse(path).getroot()
    assert root.tag == "qgis"
    return root.find("pipe/rasterrenderer")


@pytest.mark.parametrize("dtype", ["uint8", "float32"])
def test_prediction_layers_get_styles_matching_their_encoding(probability, tmp_path, dtype):
    from glacierkit.unet import write_prediction

    out = tmp_path / "pred"
    paths = write_prediction(probability, out, threshold=0.5, probability_dtype=dtype)
    assert sorted(p.name for p in out.iterdir()) == [
        "confidence.qml", "confidence.tif", "mask.qml", "mask.tif", "probability.qml",
        "probability.tif"]  # no temporary file left
    for kind in ("probability", "confidence"):
        r = _renderer(paths[kind].with_suffix(".qml"))
        assert r.get("type") == "singlebandpseudocolor"
        values = [float(i.get("value")) for i in r.iter("item")]
        with rasterio.open(paths[kind]) as src:
            data = src.read(1, masked=True).astype("float64") * src.scales[0] + src.offsets[0]
        # the ramp spans the file's values in the units QGIS shows (scale applied)
        assert values[0] <= data.min() and data.max() <= values[-1] <= 1.0
    r = _renderer(paths["mask"].with_suffix(".qml"))
    assert r.get("type") == "paletted"
    entries = {int(e.get("value")): e.get("label") for e in r.iter("paletteEntry")}
    with rasterio.open(paths["mask"]) as src:
        values = set(np.unique(src.read(1))) - {src.nodata}
    assert set(entries) == values == {0, 1} and entries[1] == "glacier"


def test_unknown_style_is_a_clear_error():
    from glacierkit.exceptions import ParameterError
    from glacierkit.qgis import raster_style

    with pytest.raises(ParameterError, match="'probability'"):
        raster_style("probabilty")
