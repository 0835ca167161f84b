"""Notebook 06 runs headlessly on STAC items of the local API (tiny model): the glacier
change tables, the figures and the files for QGIS."""

import geopandas as gpd
import pandas as pd
import pytest

from conftest import holoviews_outputs, run_notebook, save_untrained_model


@pytest.mark.notebook
def test_notebook_06_maps_stac_dates_against_the_1984_outline(local_stac, tmp_path):
    model = save_untrained_model(tmp_path)
    query = {"api": local_stac.url, "outlines": "athabasca", "dates": "2020-09-01/2020-09-30",
             "top": 2}
    nb = run_notebook("06_change", tmp_path, model_path=str(model), stac_query=query,
                      ndsi_threshold=0.39)
    areas = pd.read_csv(tmp_path / "change" / "change_areas.csv")
    assert list(areas["date"]) == ["1984", "2020-09-09", "2020-09-11"]
    assert areas.loc[0, "area_km2"] == pytest.approx(16.14, abs=0.01)  # the 1984 outline
    flagged = areas.set_index("date")["flag"].fillna("")
    assert "lower bound" in flagged["2020-09-09"] and flagged["2020-09-11"] == ""
    changes = pd.read_csv(tmp_path / "change" / "change.csv")
    assert changes["rate_km2_per_yr"].notna().all() and (changes["years"] > 36).all()
    assert gpd.read_file(tmp_path / "change" / "change.gpkg", layer="outlines").crs.to_epsg() \
        == 32611
    for name in ("06_change.png", "06_outlines.png"):
        assert (tmp_path / "figures" / name).stat().st_size > 10_000
    assert holoviews_outputs(nb)  # the interactive time series
    # ... rendered with the notebook's inline BokehJS: importing hvplot must not load it
    # again from the CDN (offline that load never ends and the view stays blank)
    assert "cdn.bokeh.org" not in nb.read_text()
