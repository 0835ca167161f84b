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
# # 03 · NDSI threshold: histogram, Table 4, Otsu, and a live slider
#
# The classical baseline: **NDSI = (green − SWIR1) / (green + SWIR1)**, and a pixel is glacier
# where NDSI is **strictly greater** than a threshold. This notebook
#
# 1. shows the NDSI histogram with its two peaks and the valley between them (as the paper);
# 2. sweeps thresholds exactly, in one pass over the pixels, and prints the paper's Table 4
#    (thresholds 0 … 0.7) for the training and the test scenes;
# 3. plots MA / FA / OA / KC against the threshold and gives the automatic Otsu threshold;
# 4. **learns one threshold on the training scenes** and applies it to the test scenes, next to
#    each scene's *oracle* (its best threshold found with its own labels: an upper bound for
#    NDSI, not a result);
# 5. maps the errors (TP, FP, FN) and counts the water pixels that NDSI calls glacier;
# 6. ends with a slider that updates the error map and the exact metrics live.
#
# The learned threshold is saved to `ndsi/threshold.json` for the evaluation notebook.
# Thresholds are compared in float32, like the NDSI itself: threshold 0.3 means
# `ndsi > float32(0.3)`.

# %% tags=["parameters"]
train_scenes: list = ["alps-s2/aletsch", "alps-s2/fiescher"]  # prepared scenes the threshold is learned on
test_scenes: list = ["alps-s2/morteratsch", "alps-s2/gorner"]  # held-out prepared scenes, never used for choices
grid_start: float = 0.0  # first threshold of the fine grid
grid_stop: float = 0.7  # last threshold of the fine grid
grid_step: float = 0.01  # spacing of the fine grid
metric: str = "KC"  # metric maximised on the training scenes: KC, OA, IoU or F1
ndwi_water: float = 0.3  # pixels with NDWI above this count as open water
slider_scene: str = "alps-s2/aletsch"  # prepared scene shown with the interactive slider
max_pixels: int = 500000  # largest display raster of the slider map (metrics use all pixels)
output_dir: str = "../runs/interactive"  # folder notebook 01 wrote prepared/ to; ndsi/ and figures/ go here too

# %%
from pathlib import Path

import holoviews as hv
import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown, display

import glacierkit as gk
from glacierkit.ndsi import threshold as th
from glacierkit.io import write_table
from glacierkit.plot import histogram_view, save_figure, show_error_map, sweep_view

hv.extension("bokeh", inline=True)  # JavaScript from the installed packages, not a CDN
pd.set_option("display.precision", 3)
gk.pipeline.parse_parameters(globals())  # list parameters given as text (papermill -p) are read as YAML

# %%
output_dir = Path(output_dir)
figures, tables = output_dir / "figures", output_dir / "ndsi"
fine, paper = th.fine_grid(grid_start, grid_stop, grid_step), th.paper_grid()
scenes = list(dict.fromkeys([*train_scenes, *test_scenes]))
gk.prep.ensure_prepared(output_dir, [*scenes, slider_scene])  # notebook 01 prepares them; this makes the notebook run alone
data = {name: gk.prep.load_prepared(output_dir, name) for name in scenes}
ndsi = {name: gk.indices.ndsi(scene) for name, (scene, _) in data.items()}
labels = {name: lab for name, (_, lab) in data.items()}
pd.DataFrame({"scene": scenes, "split": ["train" if s in train_scenes else "test" for s in scenes],
              "pixels": [ndsi[s].size for s in scenes]})

# %% [markdown]
# ## The NDSI histogram: two peaks and a valley
#
# Glacier ice and snow form the high-NDSI peak, rock, vegetation and shadow the low one. The
# paper places the threshold in the valley between them. The bars are split by the RGI labels;
# the red triangles mark the peaks and the dashed line the valley. Otsu's threshold (green) is
# computed from the same histogram, without labels. A scene that is almost all glacier (Gorner)
# has only one peak, and then no valley. Hover over the bars for the counts; the same view
# is saved as `figures/03_ndsi_histograms.png`.

# %%
hists = {name: th.histogram(ndsi[name], labels[name]) for name in scenes}
summary = th.histogram_summary(hists)
histograms = gk.plot.grid([histogram_view(h, marks={"Otsu": th.otsu(h)}, title=name)
                          for name, h in hists.items()], cols=2)
save_figure(histograms, figures / "03_ndsi_histograms.png")
display(summary)
histograms

# %% [markdown]
# ## Table 4: the paper's thresholds on the training and the test scenes
#
# One exact pass per scene gives every row (`glacierkit.ndsi.sweep`). `pooled` adds the
# counts of the scenes before computing the metrics. The KC table at the end puts the
# scenes side by side.

# %%
table4_train = th.sweep_scenes({n: (ndsi[n], labels[n]) for n in train_scenes}, paper,
                                pooled="pooled train")
table4_test = th.sweep_scenes({n: (ndsi[n], labels[n]) for n in test_scenes}, paper,
                               pooled="pooled test")
write_table(table4_train, tables / "table4_train.csv")
write_table(table4_test, tables / "table4_test.csv")
display(Markdown("**Training scenes**"), table4_train)
display(Markdown("**Test scenes**"), table4_test)
pd.concat([table4_train, table4_test]).pivot_table(index="threshold", columns="scene", values="KC")

# %% [markdown]
# ## MA, FA, OA and KC against the threshold (fine grid)
#
# Missed alarms rise and false alarms fall as the threshold goes up; kappa peaks in between.

# %%
tables_fine = {n: th.sweep(ndsi[n], labels[n], fine) for n in scenes}  # one exact pass per scene
fine_train = th.stack({n: tables_fine[n] for n in train_scenes}, pooled="pooled train")
fine_test = th.stack({n: tables_fine[n] for n in test_scenes}, pooled="pooled test")
write_table(fine_train, tables / "sweep_fine_train.csv")
write_table(fine_test, tables / "sweep_fine_test.csv")
curves = pd.concat([fine_train, fine_test])
names = list(dict.fromkeys(curves["scene"]))
sweep_curves = hv.Layout([sweep_view(curves[curves.scene == name], title=name)
                          for name in names]).cols(3)
save_figure(sweep_curves, figures / "03_ndsi_curves.png")
sweep_curves

# %% [markdown]
# ## Otsu's automatic threshold
#
# Otsu needs no labels, so it may be computed on any scene, the test scenes included. Here it
# is scored against the labels.

# %%
otsu_scores = pd.concat([th.sweep(ndsi[n], labels[n], [summary.set_index("scene").otsu[n]])
                         .assign(scene=n) for n in scenes], ignore_index=True)
write_table(otsu_scores, tables / "otsu.csv")
otsu_scores[["scene", *th.COLUMNS]]

# %% [markdown]
# ## Learned on the training scenes, applied to the test scenes
#
# The threshold that maximises the chosen metric on the **pooled training scenes** is applied
# unchanged to every scene. The rows marked `oracle` use each scene's own labels to pick its
# best threshold: they show how much a per-scene choice would gain, and they are not a fair
# result for the test scenes.

# %%
learned = th.learn(tables_fine, train_scenes, metric, output_dir,
                   grid=[grid_start, grid_stop, grid_step],
                   otsu=summary.set_index("scene").otsu.to_dict())["threshold"]
result = th.learned_vs_oracle(tables_fine, train_scenes, test_scenes, metric=metric)
write_table(result, tables / "learned_vs_oracle.csv")
display(Markdown(f"Threshold learned on {', '.join(train_scenes)}: **NDSI > {learned:.2f}** "
                 f"(best pooled {metric}), saved to `{output_dir / th.LEARNED_FILE}`."))
result

# %% [markdown]
# ## Where NDSI is wrong: error maps at the learned threshold
#
# Blue: glacier found (TP). Red: called glacier but not in the outlines (FP). Yellow: glacier
# missed (FN). Light grey: correct non-glacier (TN). The RGI outlines date from around 2003,
# while the images are from 2020: part of the red is seasonal snow, and part of the yellow is
# retreated ice. The table counts open-water pixels (NDWI above `ndwi_water`) that NDSI calls
# glacier: water has a high NDSI too.

# %%
fig, axes = plt.subplots(1, len(scenes), figsize=(4.5 * len(scenes), 4.8), squeeze=False)
for ax, name in zip(axes[0], scenes):
    show_error_map(ndsi[name], labels[name], learned, ax=ax, title=f"{name}  NDSI > {learned:.2f}")
fig.tight_layout()
save_figure(fig, figures / "03_ndsi_error_maps.png")
water = pd.DataFrame([{"scene": n, **th.water_as_glacier(
    ndsi[n], gk.indices.ndwi(data[n][0]) > ndwi_water, learned, labels[n])} for n in scenes])
write_table(water, tables / "water_called_glacier.csv")
water

# %% [markdown]
# ## Slide the threshold
#
# Move the slider: the map and the metrics follow. The metrics are exact for the whole scene
# (they come from the one-pass histogram); the map shows a display raster of at most
# `max_pixels` pixels. The slider starts at the learned threshold. In a headless run (papermill,
# CI) the widget is not live: the static figure after it shows the same view at the learned
# threshold.

# %%
slider_data, slider_labels = gk.prep.load_prepared(output_dir, slider_scene)
slider_index = gk.indices.ndsi(slider_data)
explorer = gk.ndsi.ThresholdExplorer(slider_index, slider_labels, fine, threshold=learned,
                                       max_pixels=max_pixels, title=slider_scene)
explorer

# %%
fig = explorer.static_figure(slider_index, slider_labels, learned)
saved = save_figure(fig, figures / "03_ndsi_slider_static.png")  # the figure shows below
