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
# # 04 · Deep U-Net training
#
# Train the paper's Deep U-Net on the prepared training scenes (notebook 01's `output_dir`):
#
# 1. cut the scenes into tiles, drop tiles with no data, optionally drop tiles with little
#    glacier (the paper's balancing);
# 2. hold out a **spatially separate validation block** of every scene: no validation pixel
#    lies inside a training tile, and a gap separates the two;
# 3. train with the 8 flips/rotations drawn on the fly, keep the epoch with the best
#    validation accuracy (the paper's rule), and log validation IoU and kappa;
# 4. save `model/unet.keras` with its sidecar `model/unet.json` (bands by role,
#    normalization, patch size, scenes, config, metrics): prediction needs nothing else.
#
# **Presets.** The defaults use `preset="cpu"`: the paper's design with 4 pooling steps and
# 16 base filters (1.9 M parameters), which trains in a few minutes on 2 CPU cores. The
# paper's own network is `preset="paper"` (5 pooling steps, 64 base filters, 124 M
# parameters) and wants a GPU: set `preset="paper"`, `extra=[]`, `prior=""`, `lakes=0`,
# `shadows=0`, `glacier_free=[]`, `optimizer="adadelta"`, `lr_schedule="constant"` for the paper's recipe.
#
# **Inputs and recipe.** The paper's SWIR1-NIR-blue bands plus NDSI and NDWI as extra
# channels. The defaults are the committed model's recipe, chosen for regions the model has
# never seen (`models/README.md` compares the recipes): the network corrects the NDSI
# threshold rule instead of replacing it (`prior="ndsi"`), a glacier-free tropical Landsat 8
# scene teaches what is *not* glacier on another sensor, synthetic lakes teach that water
# (NDSI's classic false alarm) is not glacier. `shadows` (synthetic cast shadows, labels
# unchanged) is available but not in the committed recipe. The paper's network and inputs:
# `prior=""`, `extra=[]`, `lakes=0`, `shadows=0`, `glacier_free=[]` (and `preset="paper"`
# on a GPU).
# A GPU is used automatically, with mixed precision, and several GPUs train under
# `MirroredStrategy`.
#
# **Generalization.** `photometric`, `resolutions`, `normalization`, `prior` and
# `glacier_free` are the recipe options compared in `models/README.md` (on Athabasca, a
# region the model never saw); the committed model's recipe is in its sidecar's `config`.
# `max_addition` bounds what the network may add to the NDSI prior (removing glacier stays
# free): chosen by the worst condition of `glacierkit.evaluate.conditions` (top of
# atmosphere, offsets, pixel sizes), where an unbounded network called haze-lifted dark
# rock glacier. `haze` simulates top-of-atmosphere tiles in training.
#
# **Adapt to a new region.** `init_model` fine-tunes a pretrained model on your own
# prepared scenes and outlines (keep its bands and extras; use a small `learning_rate`,
# e.g. 0.0001, and few `epochs`). Pixels labelled unknown (255) count in neither loss nor
# scores. See "Map a new region" in the README.
#
# **Interrupted?** Run the notebook again with the same parameters: training continues from
# the last completed epoch (`model/checkpoints/`). Raise `epochs` to train longer.

# %% tags=["parameters"]
scenes: list = ["alps-s2/aletsch", "alps-s2/fiescher"]  # prepared training scenes; never the test scenes
bands: list = ["swir1", "nir", "blue"]  # input bands by role in channel order, the paper 6-5-2
extra: list = ["ndsi", "ndwi"]  # extra index channels after the bands; [] gives the paper inputs
preset: str = "cpu"  # cpu trains in minutes on 2 cores; paper is the 124 M parameter network for a GPU
depth: int = 0  # pooling steps; 0 means the preset value
base_filters: int = 0  # filters of the first level; 0 means the preset value
patch_size: int = 128  # tile size in pixels, a multiple of 2 to the power depth
stride: int = 32  # step between training tiles in pixels
max_nan_fraction: float = 0.1  # drop tiles with a larger no-data fraction
min_glacier_fraction: float = 0.0  # the paper balancing: drop tiles with less glacier than this
val_fraction: float = 0.2  # fraction of each scene held out as the validation block
val_gap: int = 128  # pixels between the validation block and the nearest training tile
val_side: str = "bottom"  # side of each scene for the validation block: bottom, top, left, right
split: str = "blocked"  # blocked is spatial; random is the paper split and leaks
batch_size: int = 8  # tiles per training step, the paper uses 8
epochs: int = 30  # total epochs; run again with more to continue training
optimizer: str = "adam"  # adam, or adadelta as in the paper
learning_rate: float = 0.0  # 0 means the default, 0.001 for adam and 1.0 for adadelta
lr_schedule: str = "cosine"  # cosine decays to 0 over the epochs; constant as in the paper
loss: str = "bce"  # bce as in the paper, dice or focal
photometric: float = 0.0  # photometric augmentation strength in reflectance space, 0 is off
lakes: float = 0.3  # share of training tiles given a synthetic lake labelled not glacier, 0 is off
shadows: float = 0.0  # share of training tiles given a synthetic cast shadow, labels unchanged, 0 is off
haze: float = 0.0  # share of training tiles given a simulated atmosphere (top of atmosphere or over-corrected), 0 is off
max_addition: float = 6.0  # with a prior, the most logits the network may add towards glacier; 0 is unbounded
resolutions: list = []  # resolution augmentation, smallest and largest pixel size in metres, e.g. [10, 30]; [] is off
normalization: str = "global"  # global, or scene to divide the bands by the scene band medians
prior: str = "ndsi"  # ndsi makes the network correct the NDSI threshold rule instead of replacing it; empty is the paper network
glacier_free: list = ["landsat8-l2sp"]  # scenes known to hold no glacier, all labelled 0; the tropical Landsat 8 sample by default
init_model: str = ""  # a pretrained model to fine-tune, e.g. models/unet_alps_s2.keras; empty trains from scratch
seed: int = 42  # seeds the weights, tile order and augmentation
strategy: str = "auto"  # auto uses MirroredStrategy with several GPUs; none, mirrored or multiworker
output_dir: str = "../runs/interactive"  # notebook 01 output folder; the model goes to model/ in it

# %%
import time
from pathlib import Path

import holoviews as hv
import pandas as pd

import glacierkit as gk
from glacierkit.io import write_table
from glacierkit.plot import save_figure
from glacierkit.unet import TrainConfig

hv.extension("bokeh", inline=True)  # interactive views; JavaScript from the installed packages
gk.pipeline.parse_parameters(globals())  # list parameters given as text (papermill -p) are read as YAML

# %% [markdown]
# ## Configuration
#
# Every setting is validated here; the channel count comes from the band list.

# %%
output_dir = Path(output_dir)
model_dir = output_dir / "model"
(output_dir / "figures").mkdir(parents=True, exist_ok=True)
# the parameters above that are TrainConfig fields; fine-tuning keeps the pretrained model's inputs
config = TrainConfig.from_parameters(globals(), init_model=init_model)
if init_model:
    print(f"fine-tuning {init_model}: inputs {config.channels}, {config.normalization} normalization")
n_params = gk.unet.count_params(config.n_channels, config.model_depth, config.model_filters)
print(f"channels {config.channels}, depth {config.model_depth}, base filters "
      f"{config.model_filters}: {n_params:,} parameters; {config.optimizer} lr {config.lr}")

# %% [markdown]
# ## Tiles: kept, dropped, and the validation blocks
#
# Training tiles come only from the part of each scene away from its validation block.
# Normalization statistics come from the training tiles alone.

# %%
gk.prep.ensure_prepared(output_dir, [*scenes, *glacier_free])  # so the notebook runs alone
init_spec = gk.unet.read_sidecar(gk.unet.resolve_model_path(init_model))["inputs"] if init_model else None  # its statistics
patches = gk.unet.prepare_patches(config, scenes, prepared_dir=output_dir, spec=init_spec,
                                   glacier_free=glacier_free)
summary = patches.summary()
model_dir.mkdir(parents=True, exist_ok=True)
write_table(patches.catalogue, model_dir / "tiles.csv")
summary

# %%
import matplotlib.pyplot as plt

fig, axes = plt.subplots(1, len(patches.scenes), figsize=(5 * len(patches.scenes), 5.5),
                         squeeze=False)
for ax, name in zip(axes[0], patches.scenes):
    scene, labels = gk.prep.load_prepared(output_dir, name)
    gk.plot.show_split(scene, patches, name, labels=labels, ax=ax)
fig.tight_layout()
save_figure(fig, output_dir / "figures" / "04_tiles_split.png");

# %% [markdown]
# Example training tiles (the first three input channels) with their glacier labels, and
# the 8 flips/rotations that augmentation draws from on the fly:

# %%
fig = gk.plot.show_patches(patches, n=6, seed=seed)
save_figure(fig, output_dir / "figures" / "04_example_tiles.png")
fig = gk.plot.show_dihedral(patches, index=0)

# %% [markdown]
# ## Training
#
# One line per epoch: training loss and accuracy, then validation loss, accuracy (the
# checkpoint rule), IoU and kappa on the validation blocks.

# %%
t0 = time.perf_counter()
result = gk.unet.fit(config, patches, model_dir,
                      init_model=gk.unet.resolve_model_path(init_model) if init_model else None)
print(f"{time.perf_counter() - t0:.0f} s; started at epoch {result.initial_epoch}; "
      f"best epoch {result.best_epoch + 1} of {config.epochs}; model: {result.model_path}")

# %% [markdown]
# ## Learning curves
#
# Hover for the values of each epoch; the same view is saved as
# `figures/04_learning_curves.png`.

# %%
curves = gk.plot.history_view(result.history, best_epoch=result.best_epoch)
save_figure(curves, output_dir / "figures" / "04_learning_curves.png")
curves

# %% [markdown]
# ## Validation scores of the saved model
#
# Pixel scores on the validation blocks (each pixel once) at a 0.5 probability threshold:
# missed and false alarms, overall accuracy, kappa, IoU. These blocks were only used to pick
# the epoch; the test scenes are scored in notebook 05.

# %%
per_scene = {**result.metrics["validation_per_scene"], "pooled": result.metrics["validation"]}
scores = pd.DataFrame(per_scene).T[list(gk.metrics.METRICS)].astype(float).round(4)
write_table(scores.rename_axis("scene"), model_dir / "validation_scores.csv", index=True)
scores
