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
# # 01 · Data preparation
#
# Open each scene as reflectance with its bands known by **role** (blue, green, nir, swir1 …),
# burn the glacier outlines onto the scene's exact grid, and write a cloud-optimized GeoTIFF of
# the scene and of its labels. Later notebooks read these files through
# `glacierkit.prep.load_prepared`.
#
# Works unchanged for Landsat 8/9 OLI, Landsat 7 ETM+ and Sentinel-2. To bring your own data,
# set `scenes` to Landsat Collection 2 product folders (or GeoTIFFs) and `outlines` to an RGI
# shapefile or GeoPackage. To find the data instead, give `stac_query`: the scenes of a STAC
# API (Earth Search by default) over your outlines and dates, the clearest views of the glaciers
# first, are loaded by band role with their clouds as nodata (`glacierkit.stac`), e.g.
# `{"outlines": "rgi60_02.shp", "rgi_ids": ["RGI60-02.xxxxx"], "dates": "2020-07-01/2020-09-30", "max_cloud": 50, "top": 2}`
# with `scenes = []`.

# %% tags=["parameters"]
scenes: list = ["alps-s2/aletsch", "alps-s2/fiescher", "alps-s2/morteratsch", "alps-s2/gorner", "alps-s2/merdeglace"]  # sample names, Landsat product folders, _MTL.txt or GeoTIFF paths
outlines: str = ""  # glacier outlines (shp, gpkg, geojson); empty means each sample scene uses its own RGI outlines
sensor: str = ""  # landsat8, landsat9, landsat7 or sentinel2; empty means detect from the files
all_touched: bool = False  # False: a pixel is glacier when its centre is inside an outline
stac_query: dict = {}  # also prepare STAC items: keyword arguments of glacierkit.stac.search plus top (how many, clearest first); their outlines label them
output_dir: str = "../runs/interactive"  # where prepared/ (COGs + manifest.csv) and figures/ go

# %%
from pathlib import Path

import holoviews as hv
import matplotlib.pyplot as plt

import glacierkit as gk
from glacierkit.plot import map_view, save_figure, show_composite

hv.extension("bokeh", inline=True)  # interactive views; JavaScript from the installed packages
gk.pipeline.parse_parameters(globals())  # list parameters given as text (papermill -p) are read as YAML

# %%
output_dir = Path(output_dir)
(output_dir / "figures").mkdir(parents=True, exist_ok=True)
outlines = outlines or stac_query.get("outlines", "")
summary = gk.prep.prepare_scenes([*scenes, *gk.stac.query_scenes(stac_query)], output_dir,
                                 outlines=outlines or None, sensor=sensor or None,
                                 all_touched=all_touched)
summary[["scene", "split", "sensor", "level", "width", "height", "resolution_m", "crs",
         "glacier_fraction", "valid_fraction"]]

# %% [markdown]
# ## The paper's 6-5-2 composite with the outlines
#
# SWIR1–NIR–blue (Landsat 8 OLI bands 6-5-2; Sentinel-2 B11-B8A-B02). Ice and snow are cyan,
# rock brown, vegetation green. Magenta: the outline polygons; yellow: the same outlines as rasterized on the scene's
# grid (pixel centres), i.e. the labels the methods are scored against.

# %%
n = len(summary)
fig, axes = plt.subplots(1, n, figsize=(4 * n, 4.4), squeeze=False)
views = []
for ax, name in zip(axes[0], summary["scene"]):
    scene, labels = gk.prep.load_prepared(output_dir, name)
    polygons = gk.prep.scene_outlines(name, outlines or None, like=scene)
    roles = [r for r in gk.bands.PAPER_BANDS if r in scene.role.values]
    if len(roles) < 3:  # e.g. the Landsat 7 Everest crop has no SWIR band
        roles = list(gk.bands.TRUE_COLOUR)
    show_composite(scene, roles=roles, labels=labels, outlines=polygons, ax=ax,
                   title=f"{name} ({'-'.join(roles)})")
    views.append(map_view(scene, roles=roles, outlines={"RGI outlines": polygons}, title=name))
fig.tight_layout()
save_figure(fig, output_dir / "figures" / "01_composites.png");

# %% [markdown]
# The same composites to pan and zoom (re-sampled to the screen with datashader, so full
# scenes stay fast); hover over an outline for its RGIId, name and area.

# %%
hv.Layout(views).cols(3)

# %% [markdown]
# The prepared files are georeferenced cloud-optimized GeoTIFFs: drag
# `prepared/*.tif` into QGIS to check them against your own layers.

# %%
summary[["scene", "scene_path", "labels_path"]]
