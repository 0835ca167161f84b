# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     notebook_metadata_filter: -jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python (glacierkit)
#     language: python
#     name: glacierkit
# ---

# %% [markdown]
# # 06 · Glacier change through time
#
# The paper's aim is monitoring: how much ice is left, and how fast it goes. Here one region
# is mapped on several dates, by the U-Net and by NDSI, and each glacier's area is measured
# **inside its reference outline** (the glacier's extent at `reference_date`), so ice of
# neighbouring glaciers never counts and a retreat shows as a loss.
#
# By default: **Athabasca Glacier** (Canadian Rockies) on its three 2020 dates (Landsat 8 on
# 2020-08-16, Sentinel-2 on 2020-09-09 and 2020-09-11) against its **1984** outline. With
# `stac_query` the dates come from a STAC API instead (`glacierkit.stac.search`), any years.
#
# The uncertainty of each area (`glacierkit.change`): a buffer of ±1 pixel on the outline
# (half the area difference of the map grown and shrunk by a pixel, the usual practice; edges
# where ice continues past the outline, divides, do not move), and half the disagreement
# between the U-Net and NDSI, added in quadrature. The change from the reference adds the
# reference's own buffer uncertainty. Pixels without a clear view (cloud, shadow, cirrus or no
# data) are nodata; a glacier more than 20 % obscured on a date is flagged, its area a lower
# bound.
#
# Outputs in `output_dir/change/`: `change_areas.csv` and `change.csv` (with each glacier's
# centroid in lon/lat for QGIS), `change.gpkg` (layers `outlines`: the outlines by date and
# the reference; `glaciers`: the reference polygons with their change) and `change.json`.

# %% tags=["parameters"]
model_path: str = "models/unet_alps_s2.keras"  # trained model with its json sidecar; the committed pretrained model by default
region: str = "athabasca"  # sample region whose dates and outline are used when scenes and outlines are empty
scenes: list = []  # scenes to map: sample names, files or STAC item URLs; empty means the region's dates
outlines: str = ""  # reference outlines to measure within (file or sample name); empty means the region's outline
reference_date: str = "1984"  # date of the reference outlines, YYYY-MM-DD, or YYYY when only the year is known (mid-year)
id_column: str = "RGIId"  # glacier id column of the outlines; outlines without it are numbered
stac_query: dict = {}  # map STAC items instead: keyword arguments of glacierkit.stac.search plus top (items to map)
ndsi_threshold: float = -1.0  # NDSI cut-off of the second method; negative means the threshold learned on train_scenes (notebook 03)
train_scenes: list = ["alps-s2/aletsch", "alps-s2/fiescher"]  # where the NDSI threshold is learned if notebook 03 has not run
buffer_px: int = 1  # outline buffer in pixels for the area uncertainty
output_dir: str = "../runs/interactive"  # results go to output_dir/change and figures to output_dir/figures

# %%
from pathlib import Path

import holoviews as hv

import glacierkit as gk
from glacierkit.plot import save_figure

hv.extension("bokeh", inline=True)  # interactive views; JavaScript from the installed packages

# %%
output_dir = Path(output_dir)
figures = output_dir / "figures"
figures.mkdir(parents=True, exist_ok=True)
model_path = gk.unet.resolve_model_path(model_path)
reg = gk.data.regions.get_region(region)
dates = gk.stac.query_scenes(stac_query) or scenes or list(reg.scenes)
reference = outlines or reg.outlines
threshold = ndsi_threshold if ndsi_threshold >= 0 else gk.ndsi.threshold.learned_threshold(
    output_dir, train_scenes)["threshold"]
change = gk.change.glacier_change(dates, reference, model_path, ndsi_threshold=threshold,
                                  reference_date=reference_date, id_column=id_column,
                                  buffer_px=buffer_px)
print(f"NDSI threshold {threshold:g}; U-Net threshold {change.params['unet_threshold']:g}")

# %% [markdown]
# ## Area per glacier and date
#
# `area_km2` is the U-Net's, `sigma_km2` its uncertainty (from `sigma_buffer_km2` and
# `sigma_methods_km2`), `area_ndsi_km2` the NDSI map's; `obscured_fraction` the share of the
# reference area without a clear view on that date; `in_training_domain` the U-Net's
# domain-shift guard (`glacierkit.unet.guard`).

# %%
cols = ["glacier", "date", "sensor", "area_km2", "sigma_buffer_km2", "sigma_methods_km2",
        "sigma_km2", "area_ndsi_km2", "obscured_fraction", "in_training_domain", "flag"]
change.areas[cols].round(3)

# %% [markdown]
# ## Change from the reference
#
# `dA_km2 ± sigma_dA_km2` (the two dates' sigmas in quadrature), in % of the reference area,
# and per year for dates at least a year apart.

# %%
change.changes[["glacier", "date", "years", "reference_area_km2", "area_km2", "dA_km2",
                "sigma_dA_km2", "dA_pct", "rate_km2_per_yr", "sigma_rate_km2_per_yr",
                "flag"]].round(3)

# %% [markdown]
# ## Through time
#
# Left, the whole record; right, the mapped dates alone. Dates of one season should agree
# within their uncertainty: their spread is an honest check of it.

# %%
save_figure(change.figure(), figures / "06_change.png")
change.view()

# %% [markdown]
# ## The outlines by date
#
# The reference outline (dashed) and each date's U-Net outline inside it, over the 6-5-2
# composite of the last date.

# %%
save_figure(gk.change.outline_figure(change), figures / "06_outlines.png")

# %% [markdown]
# The tables and outlines, georeferenced (drag `change/change.gpkg` into QGIS; add the CSVs
# as delimited text with `lon`/`lat` in EPSG:4326):

# %%
{kind: str(path) for kind, path in change.write(output_dir / "change").items()}
