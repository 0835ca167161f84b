"""``glacierkit predict --stac`` against the local STAC API: the clouds of the item's own
cloud layer (the real QA_PIXEL bits) are nodata in every file, and said on one line."""

import numpy as np
import rasterio
from stac_local import L8_ID, QA_WINDOW

from conftest import save_untrained_model
from glacierkit import open_scene
from glacierkit.pipeline.cli import main


def test_predict_a_stac_item_masks_its_clouds_in_every_output(local_stac, tmp_path, capsys,
                                                              sample_data):
    model = save_untrained_model(tmp_path)
    out = tmp_path / "pred"
    rc = main(["predict", str(model), str(out), "--stac", local_stac.item_url(L8_ID),
               "--glaciers", "athabasca", "--outlines", "--tta", "-q",
               "--threshold", "0.01"])  # glacier wherever there is data: outlines everywhere
    assert rc == 0
    err = capsys.readouterr().err
    warned = [line for line in err.splitlines() if "of the glacier area" in line]
    assert len(warned) == 1 and warned[0].startswith("glacierkit: warning:")
    ref = open_scene("athabasca/l8-2020-08-16")
    r0, c0 = QA_WINDOW
    with rasterio.open(sample_data.fetch_product("landsat8-qa")) as src:
        qa = src.read(1, window=rasterio.windows.Window(c0, r0, ref.sizes["x"], ref.sizes["y"]))
    hidden = ((qa >> 1) & 0b1111) > 0
    for name in ("mask", "probability", "confidence"):
        with rasterio.open(out / f"{name}.tif") as src:
            tags = src.tags()
            values = src.read(1)
            # the sample's grid inside the loaded one (one pixel more on each side)
            row, col = src.index(float(ref.x[0]), float(ref.y[0]))
        window = values[row: row + ref.sizes["y"], col: col + ref.sizes["x"]]
        assert (window[hidden] == 255).all()
        assert (window[~hidden & np.isfinite(ref.values).all(axis=0)] != 255).all()
    assert tags["level"] == "surface" and tags["scene_id"] == L8_ID
    assert tags["cloud_mask"].startswith("Landsat QA_PIXEL")
    assert 0.2 < float(tags["obscured_glacier_fraction"]) < 0.4
    assert tags["source"] == local_stac.item_url(L8_ID)
    import geopandas as gpd
    from rasterio.features import rasterize

    outlines = gpd.read_file(out / "outlines.gpkg")
    assert outlines.crs.to_epsg() == 32611 and len(outlines)
    # the outlines (the glacier polygons of the mask) cover no cloud, shadow or cirrus pixel
    covered = rasterize(outlines.geometry, out_shape=(ref.sizes["y"], ref.sizes["x"]),
                        transform=ref.rio.transform(), all_touched=False) == 1
    assert covered.any() and not (covered & hidden).any()
