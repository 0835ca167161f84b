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
# # 05 · Evaluation: Deep U-Net against NDSI on unseen scenes
#
# The answer to the paper's question, measured honestly: on the **test scenes** (never used
# for training or for picking any threshold) we compare
#
# - the **Deep U-Net** (by default the committed pretrained model, `models/unet_alps_s2.keras`,
#   trained by notebook 04 on the training scenes only);
# - **NDSI with the threshold learned on the training scenes** (notebook 03's
#   `ndsi/threshold.json`, or learned here with the same rule if notebook 03 has not run);
# - **NDSI with each test scene's own best threshold**: an *oracle*, picked with the test
#   labels, so an upper bound for NDSI and not a result.
#
# All three are scored on the same pixels. Pooled metrics come from summed confusion counts,
# with 95% confidence intervals from a spatial block bootstrap. The table follows the paper's
# Table 4 (MA, FA, OA, KC in %) with IoU, F1 and the glacier-area error added; the paper's own
# numbers (a different area, sensor and labels) are shown for reference only.
#
# Outputs in `output_dir`: `metrics.json` and `comparison.csv` (with provenance), `table4.csv`,
# `failures.csv`, `areas.csv`, `glacier_areas.csv`, and per scene under `predictions/<scene>/`
# the probability and mask as cloud-optimized GeoTIFFs and the outlines as a GeoPackage.
# The section "Another region" scores the same methods on Athabasca Glacier (Canada) and
# writes `other_region/cross_region.csv`, its per-surface table and the predictions; the
# section "Across conditions" scores them again on top-of-atmosphere, offset and resampled
# versions of the scenes, as users' files come, and writes `conditions/`.

# %% tags=["parameters"]
model_path: str = "models/unet_alps_s2.keras"  # trained model with its json sidecar; the committed pretrained model by default
test_scenes: list = ["alps-s2/morteratsch", "alps-s2/gorner"]  # labelled scenes neither method was tuned on
train_scenes: list = ["alps-s2/aletsch", "alps-s2/fiescher"]  # scenes the NDSI threshold is learned on if notebook 03 has not run
unlabelled_scenes: list = ["alps-s2/merdeglace"]  # scenes mapped without scoring
metric: str = "KC"  # metric that picks the NDSI thresholds
tta: bool = False  # average the 8 flips and rotations of the U-Net input, 8 times slower
overlap: float = None  # overlap of the prediction windows in [0, 1); None means the default plan of glacierkit predict, 0.5 half-overlapping windows (the setting before)
n_boot: int = 1000  # bootstrap draws for the 95 percent confidence intervals
interactive_map: bool = True  # a leafmap map of composite and outlines; False keeps static figures only
other_region: str = "athabasca"  # another region scored like the test scenes (all its dates); empty skips it
other_region_mask: str = "known-truth"  # its pixels that count: known-truth, inside or outline
conditions: list = ["toa moderate", "toa moderate + offset"]  # benchmark conditions of users' scenes (gk.evaluate.CONDITIONS; make run: all ten, a few minutes); [] skips them
output_dir: str = "../runs/interactive"  # notebook 01 output folder; results are written here

# %%
from pathlib import Path

import holoviews as hv
import matplotlib.pyplot as plt
import pandas as pd

import glacierkit as gk
from glacierkit.evaluate import UNET
from glacierkit.plot import error_view, glacier_table_view, methods_error_grid, save_figure, show_composite

hv.extension("bokeh", inline=True)  # interactive views; JavaScript from the installed packages
gk.pipeline.parse_parameters(globals())  # list parameters given as text (papermill -p) are read as YAML

# %%
output_dir = Path(output_dir)
figures = output_dir / "figures"
figures.mkdir(parents=True, exist_ok=True)
model_path = gk.unet.resolve_model_path(model_path)
result = gk.evaluate.compare_methods(output_dir, model_path, test_scenes, train_scenes,
                                     metric=metric, tta=tta, overlap=overlap, n_boot=n_boot)
pd.Series({"model": model_path.name,
           "NDSI threshold learned on " + ", ".join(result.thresholds["ndsi_learned_on"]):
               result.thresholds["ndsi_learned"],
           **{f"NDSI oracle on {s}": t for s, t in result.thresholds["ndsi_oracle"].items()},
           "U-Net probability threshold": result.thresholds["unet"]}, name="value").to_frame()

# %% [markdown]
# ## The comparison, in the paper's Table 4 layout
#
# Pooled over the test scenes, in %. MA = missed alarm FN/(TP+FN), FA = false alarm
# FP/(TP+FP), OA = overall accuracy, KC = Cohen's kappa. The confidence intervals come from
# resampling 32 × 32-pixel blocks within each scene. The last rows are the paper's numbers,
# for reference only.

# %%
result.table4

# %% [markdown]
# Per scene (fractions, not %):

# %%
cols = ["scene", "method", "MA", "FA", "OA", "KC", "IoU", "F1", "area_error_pct"]
result.comparison[result.comparison.scene != "pooled"][cols].round(3)

# %% [markdown]
# Clouds: the cloud mask each test scene had (Landsat `QA_PIXEL` or Sentinel-2 `SCL`, made
# nodata by `glacierkit.io.clouds`) and the share of its labelled glacier area without a valid
# value (cloud, shadow, cirrus or no data), as recorded in `metrics.json`. The Alpine sample
# crops come without a cloud layer and are clear.

# %%
pd.DataFrame(result.provenance["clouds"]).T

# %% [markdown]
# ## Error maps
#
# Blue: glacier found (TP); red: false glacier (FP); yellow: missed glacier (FN).

# %%
fig = methods_error_grid(result.maps, result.thresholds)
save_figure(fig, figures / "05_error_maps.png");

# %% [markdown]
# To pan and zoom, with the RGI outlines (magenta) and the U-Net's outlines (cyan) to hover; the two
# maps of a scene pan and zoom together:

# %%
views = []
for name in test_scenes:
    m = result.maps[name]
    layers = {"RGI outlines": m["reference"], "U-Net outlines": m["outlines"]}
    views += [error_view(m["probability"], m["labels"], result.thresholds["unet"], outlines=layers,
                         title=f"{name}: {UNET}", scene_name=name),
              error_view(m["ndsi"], m["labels"], result.thresholds["ndsi_learned"], outlines=layers,
                         title=f"{name}: NDSI > {result.thresholds['ndsi_learned']:g}", scene_name=name)]
hv.Layout(views).cols(2)

# %% [markdown]
# ## Where each method fails
#
# Pixels of each surface class (heuristic masks, documented in
# `glacierkit.evaluate.surface_classes`: water, cast shadow, cloud, and debris = labelled
# glacier with NDSI below 0.2, so NDSI at any higher threshold misses all of it by
# construction) that each method gets wrong, in % of the class.

# %%
result.failures.pivot_table(index=["surface", "method"], values=["pixels", "FP % of class", "FN % of class"],
                            aggfunc={"pixels": "sum", "FP % of class": "mean", "FN % of class": "mean"}).round(1)

# %% [markdown]
# ## Glacier areas against the reference outlines
#
# Total mapped area against the RGI outlines, and boundary distances in metres; then per
# glacier (RGIId). RGI dates from about 2003 and the images from 2020, so part of every
# difference is real glacier change. The per-glacier table sorts by any column.

# %%
result.areas.round(3)

# %%
glacier_table_view(result.glaciers.sort_values("ref_area_km2", ascending=False))

# %% [markdown]
# ## Map
#
# Interactive (leafmap) when `interactive_map` is on: the composite, the RGI outlines and the
# U-Net outlines; otherwise, and always in the saved figure, a static view.

# %%
name = test_scenes[0]
m = result.maps[name]
reference, predicted = m["reference"], m["outlines"]
fig, ax = plt.subplots(figsize=(7, 7))
show_composite(m["scene"], outlines={"RGI outlines": reference, "U-Net outlines": predicted}, ax=ax,
               title=f"{name}: RGI outlines and the U-Net's")
save_figure(fig, figures / "05_outlines.png")
gk.plot.leaflet_map(m["scene"], {"RGI outlines": reference, "U-Net outlines": predicted}) if interactive_map else None

# %% [markdown]
# ## Another region
#
# The test scenes share a Sentinel-2 tile and a month with the training scenes, so they
# cannot show whether the U-Net generalizes. Here the same three methods map **Athabasca
# Glacier** (Canadian Rockies): Landsat 8 OLI on 2020-08-16 and Sentinel-2 on 2020-09-09
# and 2020-09-11, at 30 m, a region, sensor and resolution the U-Net never saw.
#
# Its outline is **partial** (the glacier and part of the Columbia Icefield; the rest of the
# ice is not labelled), so the default `known-truth` mask scores only pixels whose truth is
# known: glacier inside the outline, and *clear rock* outside it (NDSI < 0.2 on all three
# dates). That mask favours NDSI, which cannot call clear rock glacier by construction, so
# the table shows each method's **rock false-alarm rate** beside kappa. `inside` scores
# misses only; `outline` treats all unlabelled ice as non-glacier (biased, for comparison).
# The outline dates from 1984: part of "inside" has since melted out, which every method
# counts as a miss.

# %%
other = None  # every cell of this part is skipped when other_region is empty
if other_region:
    other = gk.evaluate.cross_region(model_path, other_region,
                                     ndsi_threshold=result.thresholds["ndsi_learned"],
                                     mask=other_region_mask, tta=tta, overlap=overlap,
                                     output_dir=output_dir / "other_region")
cols = ["scene", "method", "threshold", "MA", "FA", "OA", "KC", "IoU", "rock_FA"]
other.table[cols].round(3) if other else "no other region (other_region is empty)"

# %% [markdown]
# The bar for a model that holds up in a new region: on every date, kappa at least
# NDSI-learned's minus 0.02, and at most 5 % of the clear rock called glacier.

# %%
gk.evaluate.passes(other.table).round(3) if other else None

# %% [markdown]
# What each method does with each surface, in % of the surface's pixels called glacier
# (the unlabelled ice and snow outside the outline are shown, though not scored):

# %%
(other.surfaces.pivot_table(index=["scene", "surface"], columns="method",
                            values="% called glacier") if other else None)

# %% [markdown]
# Error maps on the known pixels (grey: unknown), one row per date:

# %%
if other:
    fig = methods_error_grid(other.maps, other.thresholds, labels=other.labels, row_height=4.2)
    save_figure(fig, figures / "05_other_region_errors.png")

# %% [markdown]
# ## Across conditions: the scenes as users' files come
#
# Users bring top-of-atmosphere scenes (Landsat L1, Sentinel-2 L1C, Earth Engine TOA
# exports), Sentinel-2 files whose +1000 DN offset (processing baseline 04.00) nothing
# states, and other pixel sizes. `glacierkit.evaluate.conditions` rebuilds those conditions
# from the validation blocks of the training scenes and the Athabasca dates (never the test
# scenes): top-of-atmosphere versions with path reflectance and transmittance per band from
# clear to hazy (`glacierkit.io.level.ATMOSPHERE`), the offset in an integer export with
# only Sentinel-2 band names, and 10, 20 and 30 m pixels. Every version is opened as a user's
# file would be, so the level and offset detection and the dark-object correction before
# prediction are part of what is measured. Per condition, pooled over its scenes: the model,
# NDSI at the learned threshold, the NDSI oracle, and the model's KC margin over NDSI. The
# model card (`models/README.md`) chose the recipe by the worst of these margins.

# %%
bench = None
if conditions:
    bench = gk.evaluate.benchmark(model_path, ndsi_threshold=result.thresholds["ndsi_learned"],
                                  conditions=conditions, output_dir=output_dir / "conditions")
bench.summary.round(3) if bench else "no conditions (conditions is empty)"

# %% [markdown]
# What the loader found and did on each scene (level, offset, correction before the model):

# %%
bench.levels[["condition", "scene", "level", "offset", "correction"]] if bench else None

# %% [markdown]
# The labelled pixels of US glaciers (Landsat 8/9 and Sentinel-2 surface reflectance,
# Sentinel-2 top of atmosphere): rock and water must stay non-glacier. In % of each
# surface's pixels called glacier:

# %%
(bench.spectra.pivot_table(index="surface", columns="product",
                           values=["model: % glacier", "NDSI: % glacier"]) if bench else None)

# %% [markdown]
# **The domain-shift guard.** Every prediction compares the scene with the model's training
# data and checks the map's physical sense (`glacierkit.unet.guard`); its findings are in the
# GeoTIFF tags (`other_region/*/probability.tif`). Here, per date:

# %%
gk.unet.guard_table(other.guard) if other else None

# %% [markdown]
# ## An unseen, unlabelled glacier
#
# The U-Net maps scenes without outlines too: here the Mer de Glace (France), which no step
# of the pipeline has seen.

# %%
probabilities = gk.evaluate.predict_unlabelled(output_dir, model_path, unlabelled_scenes, tta=tta,
                                               overlap=overlap)
for name, prob in probabilities.items():
    scene, _ = gk.prep.load_prepared(output_dir, name)
    fig, axes = plt.subplots(1, 2, figsize=(10, 5))
    show_composite(scene, ax=axes[0], title=f"{name}: 6-5-2")
    im = axes[1].imshow(prob.values, extent=gk.plot.extent(prob), cmap="Blues", vmin=0, vmax=1)
    axes[1].set_title("U-Net glacier probability", fontsize=9)
    fig.colorbar(im, ax=axes[1], shrink=0.7)
    axes[1].ticklabel_format(style="plain", useOffset=False)  # metres, as in the composite
    fig.tight_layout()
    save_figure(fig, figures / f"05_unlabelled_{gk.slug(name)}.png")

# %% [markdown]
# Every GeoTIFF and GeoPackage written here carries its CRS: drag `predictions/*/` into QGIS.

# %%
sorted(str(p.relative_to(output_dir)) for p in (output_dir / "predictions").rglob("*") if p.is_file())
